"""Measured device classes (``benchmark/device_costs/``, written by ``benchmarks/bench_costs.py``) and
the dry run's hours from them (``run --dry-run --device-class NAME``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.costs import CellRates, SplitCounts, TaskCost, device_classes, estimate, shard_seconds
from benchmark.records import CellIdentity
from benchmark.registry import RegistryError
from tasks.registry import get_task

MAPS = TaskCost(batch_size=10, max_epochs=3, head_cost=1.0, features="maps", cache_dtype_bytes=2)
RATES = CellRates(encoder_images_per_second=10.0, training_samples_per_second=5.0, eval_images_per_second=50.0)


def _cell(mode: str, fraction: int = 100, draw: int = 0) -> CellIdentity:
    return CellIdentity("b", "n", "a" * 64, "detection", "rsna", "detection", "yolov3", fraction, draw, 0, mode)


def test_a_paper_cell_encodes_its_evaluation_every_epoch_and_trains_at_the_measured_rate() -> None:
    work = estimate(_cell("paper"), SplitCounts(train=100, val=20, test=30), MAPS, epochs=3)
    assert (work.uncached_eval_passes, work.eval_samples, work.training_samples) == (3 * 20 + 30, 3 * 20 + 30, 300)
    # validation and test through the encoder (10/s) and the head (50/s); training samples at 5/s (encoder included)
    assert RATES.seconds(work, encoded_images=0) == pytest.approx(90 / 10 + 300 / 5 + 90 / 50)


def test_a_shard_encodes_each_shared_cache_entry_once() -> None:
    counts = SplitCounts(train=100, val=20, test=30)
    one, other = (estimate(_cell("cached", 10, draw), counts, MAPS, epochs=3) for draw in (0, 1))
    assert one.uncached_eval_passes == 0 and one.eval_samples == 90
    # each cell its own training draw (100 images), the validation and test entries (50) only once
    expected = (100 + 50 + 100) / 10 + 2 * (300 / 5 + 90 / 50)
    assert shard_seconds([(one, RATES), (other, RATES)]) == pytest.approx(expected)


@pytest.mark.parametrize("name", device_classes().names())
def test_every_shipped_device_class_covers_every_mode_of_what_it_measured(name: str) -> None:
    measured = device_classes().get(name)
    assert measured.encoders and measured.heads
    for row in measured.heads:
        if row["protocol_size"]:
            for mode in get_task(row["task"]).modes:
                rates = measured.rates(row["task"], row["head"], mode, row["arch"])
                assert min(rates.encoder_images_per_second, rates.training_samples_per_second, rates.eval_images_per_second) > 0
    with pytest.raises(RegistryError, match="no measured detection/yolov3/cached on vit_tiny_patch16_224"):
        measured.rates("detection", "yolov3", "cached", "vit_tiny_patch16_224")


@pytest.mark.parametrize("name", device_classes().names())
def test_the_dry_run_prints_the_device_class_hours(name: str, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    measured = device_classes().get(name)
    args = ["run", "--backbone", "random_resnet50", "--board", "mgca-cxr-v1", "--tasks", "classification", "--datasets",
            "rsna", "--data", str(tmp_path / "nothing"), "--dry-run", "--from-splits", "--device-class", name, "--format", "json"]
    assert main(args) == 0
    plan = json.loads(capsys.readouterr().out)
    row = plan["rows"]["classification/rsna"]
    rates = {mode: measured.rates("classification", "linear", mode, "resnet50") for mode in ("cached", "paper")}
    assert plan["board"] == "mgca-cxr-v1" and name in plan["throughput"]["measured"]
    # the encoder's speed is the device class's at the side the linear probe feeds ResNet-50 (299 px), not at its own
    [encoder] = plan["throughput"]["encoders"]
    assert encoder["input_size"] == 299
    assert encoder["images_per_second"] == round(measured.encoder_images_per_second("resnet50", 299), 2)
    # benchmark/splits/rsna/source.json: val 4,003, test 4,003, 1 % 3 x 187, 10 % 3 x 1,868, 100 % 18,678 (see
    # test_cluster); the board's 21 cells (7 subsets x 3 seeds) are cached, 50 epochs (an upper bound): each trains
    # 50 x its training images and evaluates 50 x val + test.
    cached = rates["cached"]
    trained = 3 * 50 * (3 * 187 + 3 * 1868 + 18678)
    expected = (row["encoder_passes"] / cached.encoder_images_per_second + trained / cached.training_samples_per_second
                + row["to_run"] * (50 * 4003 + 4003) / cached.eval_images_per_second)
    assert plan["per_shard"][0]["estimated_seconds"] == pytest.approx(expected, abs=0.1)
    assert main([*args[:-2], "--throughput", "10"]) == 2
    assert "give one" in capsys.readouterr().err
