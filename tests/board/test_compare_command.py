"""``compare``: two entries of a board column by column, and ``--expect-better`` as an exit status.

``--expect-better`` passes only when every column the selection names on the board is paired, with
A's mean above B's and the adjusted p below alpha: each way of failing has a test here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import toy_task
from benchmark.cli import main

RESNET, VIT = "random_resnet18", "random_vit_tiny"


def _run(board: Path, data: Path, work: Path, backbones: str, fractions: str, *extra: str) -> None:
    assert main(["run", "--backbone", backbones, "--board", str(board), "--data", str(data), "--work-dir", str(work),
                 "--no-progress", "--fractions", fractions, "--in-process", *extra]) == 0


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both backbones at 10 % (two draws) and 100 %; the ResNet alone at 1 %."""
    root = tmp_path_factory.mktemp("compare")
    data = toy_task.write_toy_dataset(root / "data")
    board = toy_task.write_toy_board(root / "boards", draws=(0, 1))
    _run(board, data, root / "work", f"{RESNET},{VIT}", "10,100")
    _run(board, data, root / "work", RESNET, "1")
    return board


@pytest.fixture(scope="module")
def unpaired_board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ResNet at 10 % (two draws) and 100 % (seed 0); the ViT at 10 % with one draw, and at 100 %
    with another seed. (Runs on other test images cannot meet on one board: it pins the test split's
    ground truth and refuses a cell whose targets differ, tests/board/test_integrity.py.)"""
    root = tmp_path_factory.mktemp("unpaired")
    data = toy_task.write_toy_dataset(root / "data")
    board = toy_task.write_toy_board(root / "boards", draws=(0, 1))
    _run(board, data, root / "work", RESNET, "10,100")
    _run(board, data, root / "work", VIT, "10", "--draws", "0")
    _run(board, data, root / "work", VIT, "100", "--seeds", "1")
    return board


def _table(output: str) -> dict[str, tuple[float, float, float]]:
    """column -> (mean A, mean B, adjusted p) from the printed table."""
    rows = re.findall(r"^(\S+ \d+%)\s+\S+\s+([\d.]+)[^(]*\(n=\d+\)\s+([\d.]+)[^(]*\(n=\d+\)\s+\S+\s+\S+\s+(\S+)$",
                      output, re.M)
    return {column: (float(a), float(b), float(p)) for column, a, b, p in rows}


def test_expect_better_needs_a_higher_mean_and_an_adjusted_p_below_alpha(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    codes = {}
    for a, b in ((RESNET, VIT), (VIT, RESNET)):
        codes[a] = main(["compare", a, b, "--board", str(board), "--fractions", "10,100", "--expect-better"])
        output = capsys.readouterr().out
        table = _table(output)
        assert list(table) == ["toy/rsna 10%", "toy/rsna 100%"], output
        assert "(n=2)" in output  # 10 %: two draws
        assert codes[a] == (0 if all(ma > mb and p < 0.05 for ma, mb, p in table.values()) else 1), output
    assert codes == {RESNET: 0, VIT: 1}  # the toy scores differ between the two weights
    # the same comparison at a level below its adjusted p-values fails, naming each column
    p_values = {column: p for column, (_, _, p) in _table(
        (main(["compare", RESNET, VIT, "--board", str(board), "--fractions", "10,100"]), capsys.readouterr().out)[1]).items()}
    alpha = min(p_values.values()) / 2
    assert main(["compare", RESNET, VIT, "--board", str(board), "--fractions", "10,100", "--expect-better",
                 "--alpha", f"{alpha:g}"]) == 1
    output = capsys.readouterr().out
    assert all(f"{column}: adjusted p {p:.3g} is not below alpha {alpha:g}" in output for column, p in p_values.items()), output


def test_a_column_one_entry_lacks_fails_expect_better_and_is_named(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", RESNET, VIT, "--board", str(board), "--expect-better"]) == 1
    output = capsys.readouterr().out
    assert list(_table(output)) == ["toy/rsna 10%", "toy/rsna 100%"]  # the table of the paired columns stays
    assert "A is not better than B on 1 of the 3 columns selected" in output
    assert "  toy/rsna 1%: missing: B has no runs" in output
    assert main(["compare", RESNET, VIT, "--board", str(board)]) == 0  # without the check: listed, no failure
    assert "toy/rsna 1%: missing: B has no runs" in capsys.readouterr().out


def test_columns_that_do_not_pair_fail_expect_better_and_are_named(unpaired_board: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", RESNET, VIT, "--board", str(unpaired_board), "--fractions", "10,100", "--expect-better"]) == 1
    output = capsys.readouterr().out
    assert "toy/rsna 100%: not paired: runs (draw, seed) differ, A [(0, 0)], B [(0, 1)]" in output, output
    assert "toy/rsna 10%: not paired: runs (draw, seed) differ, A [(0, 0), (1, 0)], B [(0, 0)]" in output, output
    assert "on 2 of the 2 columns selected" in output


@pytest.mark.parametrize("selection, message", [
    (["--fractions", "5"], "fraction(s) [5] not on board 'toy-board' for task(s) ['toy']; it has [1, 10, 100]"),
    (["--datasets", "siim"], "dataset(s) ['siim'] not on board 'toy-board'"),
    (["--tasks", "segmentation"], "task 'segmentation' is not on board 'toy-board'"),
])
def test_a_selection_the_board_does_not_have_is_one_error_line(board: Path, selection: list[str], message: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", RESNET, VIT, "--board", str(board), "--expect-better", *selection]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and message in error, error


def test_alpha_must_be_a_significance_level(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["compare", RESNET, VIT, "--board", str(board), "--alpha", "1.5"])
    assert exit_.value.code == 2 and "between 0 and 1" in capsys.readouterr().err


def test_one_fraction_only(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", RESNET, VIT, "--board", str(board), "--fractions", "100"]) == 0
    assert list(_table(capsys.readouterr().out)) == ["toy/rsna 100%"]


@pytest.mark.parametrize("names", [("nope", VIT), (RESNET, "nope")])
def test_an_entry_not_on_the_board_is_one_error_line(board: Path, names, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", *names, "--board", str(board)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "'nope' is not on this board" in error
