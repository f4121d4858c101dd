"""``submit`` end to end with the toy task: a new checkpoint is evaluated, compared and flagged."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

import toy_task
from benchmark.board.store import Board
from benchmark.cli import main


def test_submit_compares_with_references_and_flags_overlap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = toy_task.write_toy_board(tmp_path / "boards", draws=(0,))
    common = ["--board", str(board), "--data", str(data), "--work-dir", str(tmp_path / "work"), "--no-progress",
              "--fractions", "10,100"]
    assert main(["run", "--backbone", "random_resnet18,random_vit_tiny", *common]) == 0
    torch.manual_seed(1)
    checkpoint = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}}, checkpoint)
    capsys.readouterr()
    code = main(["submit", "--checkpoint", str(checkpoint), "--arch", "resnet18", "--name", "mine",
                 "--pretraining-data", "NIH,mimic-cxr", *common])
    output = capsys.readouterr().out
    assert code == 0, output
    assert "2 cells: 2 evaluated" in output
    assert "holm correction over 4 comparisons" in output  # 2 cells x 2 references
    assert output.count(" delong ") == 4
    assert "FLAG rsna: pretraining data ['nih-chestxray14']" in output
    entries = Board(board).entries()
    assert {e.role for e in entries.values() if e.name == "mine"} == {"submission"}
    assert (board / "rendered" / "index.html").is_file()
    again = main(["submit", "--checkpoint", str(checkpoint), "--arch", "resnet18", "--name", "random_resnet18",
                  "--pretraining-data", "none", *common])
    assert again == 2  # a registered name cannot be taken by a submission


UNSAFE_NAMES = ["../../evil", "has space", "", "a/b", "evil\n", "x\n", "tab\there", "a" * 300, "a..b", "nul\0"]


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_a_submission_name_that_is_not_a_safe_file_name_is_one_error_line(name, tmp_path, capsys):
    board = toy_task.write_toy_board(tmp_path / "boards", draws=(0,))
    before = sorted(board.rglob("*"))
    code = main(["submit", "--checkpoint", str(tmp_path / "x.ckpt"), "--arch", "resnet18", "--name", name,
                 "--pretraining-data", "none", "--data", str(tmp_path), "--board", str(board)])
    error = capsys.readouterr().err
    assert code == 2 and "--name" in error and error.count("\n") == 1
    assert not (tmp_path / "x.ckpt").exists() and sorted(board.rglob("*")) == before  # nothing written


@pytest.mark.parametrize("name", UNSAFE_NAMES)
def test_a_backbone_name_that_is_not_a_safe_file_name_is_refused_even_in_a_dry_run(name, tmp_path, capsys):
    board = toy_task.write_toy_board(tmp_path / "boards", draws=(0,))
    before = sorted(board.rglob("*"))
    code = main(["run", "--backbone", name, "--checkpoint", str(tmp_path / "x.ckpt"), "--arch", "resnet18",
                 "--data", str(tmp_path), "--board", str(board), "--dry-run"])
    error = capsys.readouterr().err
    assert code == 2 and "--backbone" in error and error.count("\n") == 1
    assert sorted(board.rglob("*")) == before


def test_tables_of_a_board_that_does_not_exist_is_one_error_line(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["tables", "--board", str(tmp_path / "nothing")]) == 2
    assert "no board" in capsys.readouterr().err
