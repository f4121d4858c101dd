"""benchmark.heads.joint: the image geometry of the tasks that compare images with texts (zero-shot
classification, retrieval) against hand-computed sizes, the rules of a task that trains nothing, and
every such task's skip of a backbone without a text tower when a grid is planned."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.backbones import build_backbone
from benchmark.backbones.text import TextTowerError
from benchmark.board.store import Board
from benchmark.grid import BackboneChoice, GridError, GridRequest, run_grid
from benchmark.heads.joint import (
    Geometry,
    check_untrained_cell,
    check_untrained_protocol,
    require_text_tower,
    resolve_geometry,
    untrained_cost,
)
from tasks.registry import all_tasks, get_task, task_packages

ROOT = Path(__file__).resolve().parents[2]
TEXT_TOWER_REQUIREMENT = "benchmark.backbones.text:text_tower_requirement"
TEXT_TASKS = sorted(info.name for info in all_tasks() if info.name in task_packages() and info.requires == TEXT_TOWER_REQUIREMENT)


@pytest.mark.parametrize("cache, input_size, fixed, patch, expected", [
    (256, 224, False, 16, (256, 224, 224)),  # the reference: crop 224 of 256, fed at 224
    (64, 224, False, 16, (64, 56, 48)),  # crop 64 * 224/256 = 56, down to a multiple of the 16-pixel patch
    (100, 224, False, 16, (100, 88, 80)),  # round(87.5) = 88 (half to even), 88 -> 80
    (32, 224, False, None, (32, 28, 28)),  # a CNN keeps the crop
    (256, 299, False, None, (256, 224, 299)),  # a model trained at 299 is fed at 299 * 224/224
    (512, 518, False, 14, (512, 448, 1036)),  # 448 * 518/224 = 1036 = 74 patches of 14
    (32, 32, True, 8, (32, 28, 32)),  # a model that takes only its own size gets it
])
def test_the_crop_and_encoder_input_by_hand(cache: int, input_size: int, fixed: bool, patch: int | None,
                                            expected: tuple[int, int, int]) -> None:
    assert resolve_geometry(cache, input_size, fixed, patch) == Geometry(*expected)


def test_images_too_small_for_the_model_are_refused() -> None:
    with pytest.raises(ValueError, match="prepared images of 1 px are too small for this model"):
        resolve_geometry(1, 224, False, 16)  # crop 1, encoder input 1 -> 0 patches


def test_a_task_that_trains_nothing_takes_one_fraction_no_epochs_and_a_positive_batch() -> None:
    check_untrained_cell("retrieval", "direct", ("direct",), 100)
    with pytest.raises(ValueError, match=r"unknown mode 'cached'; one of \('direct',\)"):
        check_untrained_cell("retrieval", "cached", ("direct",), 100)
    with pytest.raises(ValueError, match="retrieval uses no training labels: its only label fraction is 100, not 10"):
        check_untrained_cell("retrieval", "direct", ("direct",), 10)
    check_untrained_protocol("zero-shot classification", "max_epochs", 0, 1)
    with pytest.raises(ValueError, match="zero-shot classification trains no head: max_epochs must be 0, not 3"):
        check_untrained_protocol("zero-shot classification", "max_epochs", 3, 64)
    with pytest.raises(ValueError, match="encode_batch_size must be at least 1, not 0"):
        check_untrained_protocol("retrieval", "max_epochs", 0, 0)
    cost = untrained_cost(64)
    assert (cost.batch_size, cost.max_epochs, cost.head_cost, cost.features) == (64, 0, 0.0, "global")
    assert TEXT_TASKS == ["retrieval", "zeroshot"]
    for name in TEXT_TASKS:  # both declare this cost and train nothing
        info = get_task(name)
        assert info.cost == cost and not info.seeded


def test_a_backbone_without_a_text_tower_is_an_error_naming_the_task() -> None:
    with pytest.raises(TextTowerError, match="backbone 'random_resnet18' has no text tower: image-text retrieval needs one"):
        require_text_tower(build_backbone("random_resnet18"), "image-text retrieval")


@pytest.mark.parametrize("task", TEXT_TASKS)
def test_a_grid_of_backbones_without_a_text_tower_has_nothing_to_evaluate_and_says_why(task: str, tmp_path: Path) -> None:
    """Planned away before any data is read (the data folder is empty): the requirement checks the tower without
    building its weights."""
    protocol = json.loads((ROOT / "leaderboards" / "demo-mgca-cxr-v1" / "protocol.json").read_text())
    protocol["tasks"] = {task: protocol["tasks"][task]}  # the demo board's entry of this task alone
    folder = tmp_path / "boards" / protocol["board"]
    folder.mkdir(parents=True)
    (folder / "protocol.json").write_text(json.dumps(protocol))
    (tmp_path / "data").mkdir()
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=tmp_path / "data", work_dir=tmp_path / "work",
                          cache_dir=tmp_path / "cache", progress=False)
    with pytest.raises(GridError, match=rf"nothing to evaluate .*skipped: {task} for random_resnet18: no text tower"):
        run_grid(Board(folder), request)
    assert get_task(task).unmet_requirement(build_backbone("random_resnet18")).startswith("no text tower")
