"""Issue 19 section 4, with the toy task: the messages of ``run`` name what is actually wrong,
in one line (exit 2), and suggest the close name for a misspelt backbone, dataset or board."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.cli import main  # noqa: E402
from benchmark.registry import did_you_mean  # noqa: E402


@pytest.fixture()
def run_args(tmp_path: Path) -> list[str]:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = toy_task.write_toy_board(tmp_path / "boards")
    return ["run", "--backbone", "random_resnet18", "--board", str(board), "--data", str(data), "--dry-run",
            "--work-dir", str(tmp_path / "work")]


def error_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def with_option(argv: list[str], option: str, value: str) -> list[str]:
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


def test_a_file_as_board_is_named_once(run_args, tmp_path, capsys) -> None:
    (tmp_path / "board.json").write_text("{}")
    error = error_of(with_option(run_args, "--board", str(tmp_path / "board.json")), capsys)
    assert f"{tmp_path / 'board.json'} is a file; a board is a folder holding protocol.json" in error
    assert error.count(str(tmp_path / "board.json")) == 2  # the name asked for, and what it is
    error = error_of(with_option(run_args, "--board", str(tmp_path / "nothing")), capsys)
    assert error.count(str(tmp_path / "nothing")) == 2 and "does not exist" in error


def test_a_misspelt_board_name_gets_the_close_names(run_args, capsys) -> None:
    error = error_of(with_option(run_args, "--board", "mgca-cxr-v9"), capsys)
    assert "Did you mean 'mgca-cxr-v1'" in error


def test_a_missing_data_folder_is_not_called_unprepared(run_args, tmp_path, capsys) -> None:
    error = error_of(with_option(run_args, "--data", str(tmp_path / "no-data")), capsys)
    assert error.startswith(f"error: {tmp_path / 'no-data'}: no such folder") and "not prepared" not in error


@pytest.mark.parametrize("fractions", ["0,-1", "101", "1,0"])
def test_fractions_outside_1_to_100_are_named(run_args, capsys, fractions: str) -> None:
    error = error_of(run_args + ["--fractions", fractions], capsys)
    wrong = next(value for value in fractions.split(",") if not 1 <= int(value) <= 100)
    assert error.startswith(f"error: --fractions {wrong}: a label fraction is a percentage from 1 to 100")
    assert "not prepared" not in error


def test_an_unknown_dataset_gets_the_close_names(run_args, capsys) -> None:
    error = error_of(run_args + ["--datasets", "rsnaa"], capsys)
    assert "--datasets 'rsnaa': not on board 'toy-board'" in error and "Did you mean 'rsna'?" in error


def test_an_unknown_backbone_gets_the_close_names(run_args, capsys) -> None:
    error = error_of(with_option(run_args, "--backbone", "random_resnet1"), capsys)
    assert "'random_resnet1' is not a registered backbone. Did you mean 'random_resnet18'" in error


def test_did_you_mean() -> None:
    assert did_you_mean("rsnaa", ["rsna", "siim", "chexpert"]) == " Did you mean 'rsna'?"
    assert did_you_mean("zzz", ["rsna"]) == ""
