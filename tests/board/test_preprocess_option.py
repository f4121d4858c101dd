"""``--preprocess model|protocol`` through ``submit``: recorded in every run record and on the board entry,
shown with the tables, and one entry is never evaluated two ways (toy task: the grid, not a real probe)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision

import toy_task
from benchmark.board.render import BoardView, Column, TableSpec, build_table, to_markdown
from benchmark.board.store import Board
from benchmark.cli import main
from benchmark.published import PublishedTable
from benchmark.records import RunRecord

IMAGENET_MEAN = [0.485, 0.456, 0.406]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("preprocess")
    data = toy_task.write_toy_dataset(root / "data")
    board = toy_task.write_toy_board(root / "boards", draws=(0,))
    checkpoint = root / "tv_resnet18.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), checkpoint)  # torchvision:resnet18 declares ImageNet mean/std
    common = ["--board", str(board), "--data", str(data), "--work-dir", str(root / "work"), "--no-progress", "--fractions", "100"]
    return board, checkpoint, common


def submit(setup, name: str, preprocess: str | None) -> int:
    board, checkpoint, common = setup
    return main(["submit", "--checkpoint", str(checkpoint), "--arch", "torchvision:resnet18", "--name", name,
                 "--pretraining-data", "none", *common, *(["--preprocess", preprocess] if preprocess else [])])


def records_of(board: Path, name: str) -> list[RunRecord]:
    return [RunRecord.read(path) for path in sorted((board / "results").glob(f"{name}@*/*.json"))]


def test_the_preprocessing_is_recorded_per_mode_and_an_entry_keeps_its_own(setup, capsys):
    board = setup[0]
    assert submit(setup, "own", None) == 0  # default: the model's own
    assert submit(setup, "as_protocol", "protocol") == 0
    (own,), (protocol,) = records_of(board, "own"), records_of(board, "as_protocol")
    assert own.backbone["preprocessing"]["mode"] == "model" and own.backbone["preprocessing"]["mean"] == IMAGENET_MEAN
    assert protocol.backbone["preprocessing"]["mode"] == "protocol"
    assert protocol.backbone["preprocessing"]["mean"] == [0.5] * 3 and protocol.backbone["preprocessing"]["input_size"] == 224
    entries = {entry.name: entry for entry in Board(board).entries().values()}
    assert entries["own"].preprocessing == own.backbone["preprocessing"]
    assert entries["as_protocol"].preprocessing == protocol.backbone["preprocessing"]
    capsys.readouterr()
    assert submit(setup, "own", "protocol") == 2  # the same weights under the same name, fed other pixels
    error = capsys.readouterr().err
    assert "another --name" in error and error.count("\n") == 1
    assert len(records_of(board, "own")) == 1


def test_tables_show_each_rows_preprocessing(setup):
    board = setup[0]
    if not records_of(board, "own"):
        pytest.skip("needs the submissions of the test above")
    spec = TableSpec(PublishedTable("toy", "toy", ("toy",), (), "none"), (Column("toy", "rsna", 100, "Toy 100%"),))
    text = to_markdown(build_table(BoardView.load(Board(board)), spec))
    assert "own: 224 px, 3 ch, [0, 1], mean 0.485/0.456/0.406, std 0.229/0.224/0.225 (model)" in text
    assert "as_protocol: 224 px, 3 ch, [0, 1], mean 0.5/0.5/0.5, std 0.5/0.5/0.5 (protocol)" in text
    stored = json.loads(next((board / "entries").glob("own@*.json")).read_text())
    assert stored["preprocessing"]["source"].startswith("torchvision")
