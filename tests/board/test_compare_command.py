"""``compare``: two entries of a board column by column, and ``--expect-better`` as an exit status."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import toy_task
from benchmark.cli import main


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("compare")
    data = toy_task.write_toy_dataset(root / "data")
    board = toy_task.write_toy_board(root / "boards", draws=(0, 1))
    assert main(["run", "--backbone", "random_resnet18,random_vit_tiny", "--board", str(board), "--data", str(data),
                 "--work-dir", str(root / "work"), "--no-progress", "--fractions", "10,100", "--in-process"]) == 0
    return board


def _means(output: str) -> dict[str, tuple[float, float]]:
    """column -> (mean A, mean B) from the printed table."""
    rows = re.findall(r"^(\S+ \d+%)\s+\S+\s+([\d.]+)[^(]*\(n=\d+\)\s+([\d.]+)[^(]*\(n=\d+\)", output, re.M)
    return {column: (float(a), float(b)) for column, a, b in rows}


def test_expect_better_fails_exactly_when_a_mean_is_not_above(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codes = {}
    for a, b in (("random_resnet18", "random_vit_tiny"), ("random_vit_tiny", "random_resnet18")):
        codes[a] = main(["compare", a, b, "--board", str(board), "--expect-better"])
        output = capsys.readouterr().out
        means = _means(output)
        assert len(means) == 2, output  # 10 % and 100 %
        assert "(n=2)" in output  # 10 %: two draws
        assert codes[a] == (0 if all(ma > mb for ma, mb in means.values()) else 1), output
    assert 1 in codes.values()  # the toy scores differ between the two weights


def test_one_fraction_only(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "random_resnet18", "random_vit_tiny", "--board", str(board), "--fractions", "100"]) == 0
    assert list(_means(capsys.readouterr().out)) == ["toy/rsna 100%"]


@pytest.mark.parametrize("names", [("nope", "random_vit_tiny"), ("random_resnet18", "nope")])
def test_an_entry_not_on_the_board_is_one_error_line(board: Path, names, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *names, "--board", str(board)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'nope' is not on this board" in error
