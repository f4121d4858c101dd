"""Issue 14, sections 3-4, with the toy task: an empty label-fraction draw is refused when the grid
is planned, a stale index is rebuilt by the next run, a truncated record is listed as invalid by
``tables`` while the rest renders, and ``--no-progress`` silences every bar of every cell."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.board.store import Board  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.data.prepared import split_file_name  # noqa: E402
from benchmark.grid import BackboneChoice, GridError, GridRequest, run_grid  # noqa: E402


@pytest.fixture()
def toy(tmp_path: Path) -> tuple[Board, GridRequest]:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = Board(toy_task.write_toy_board(tmp_path / "boards", draws=(0,)))
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=data, work_dir=tmp_path / "work",
                          cache_dir=tmp_path / "cache", progress=False, isolate=False, fractions=(1, 100))
    return board, request


def test_an_empty_fraction_draw_is_refused_when_the_grid_is_planned(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    subset = request.data_dir / "rsna" / "splits" / "classification" / split_file_name("train", 1, 0)
    subset.write_text("")
    with pytest.raises(GridError) as caught:
        run_grid(board, request)
    message = str(caught.value)
    assert "rsna" in message and "1% draw 0" in message and "no training image" in message
    assert "200 training images" in message and "at least 100" in message
    assert not list((board.root / "results").rglob("*.json")) and board.failures() == []


def test_a_stale_index_is_rebuilt_by_the_next_run(toy: tuple[Board, GridRequest]) -> None:
    board, request = toy
    assert run_grid(board, request).ran == 2
    index = board.root / "index.json"
    index.write_text(json.dumps({**json.loads(index.read_text()), "results": []}))  # a crash before the index update
    summary = run_grid(board, request)
    assert (summary.ran, summary.done_before) == (0, 2)
    assert len(json.loads(index.read_text())["results"]) == 2


def test_tables_list_a_truncated_record_as_invalid_and_render_the_rest(toy, capsys) -> None:
    board, request = toy
    run_grid(board, request)
    victim = sorted((board.root / "results").rglob("*.json"))[0]
    victim.write_text(victim.read_text()[:100])
    capsys.readouterr()
    assert main(["tables", "--board", str(board.root), "--format", "md", "--out", str(board.root / "out")]) == 0
    output = capsys.readouterr()
    assert "Traceback" not in output.err
    assert f"INVALID record, not shown: {victim.relative_to(board.root)}" in output.out or (
        "INVALID record, not shown" in output.out and victim.name in output.out), output.out
    assert (board.root / "out").is_dir()


def test_no_progress_silences_the_bars_of_every_cell(toy: tuple[Board, GridRequest], tmp_path: Path, capfd,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = toy
    monkeypatch.setenv("TOY_BAR", "1")
    common = ["run", "--backbone", "random_resnet18", "--board", str(board.root), "--data", str(request.data_dir),
              "--fractions", "100", "--work-dir", str(tmp_path / "w")]
    for seed, isolation in enumerate(([], ["--in-process"])):
        assert main([*common, *isolation, "--no-progress", "--seeds", str(seed)]) == 0
        output = capfd.readouterr()
        assert "toy bar" not in output.out + output.err and "\r" not in output.out + output.err, output
    assert main([*common, "--in-process", "--seeds", "2"]) == 0
    assert "toy bar" in capfd.readouterr().err  # the bars are the cell's, not dropped by accident


def test_bars_of_a_non_interactive_run_are_logged_as_lines(toy: tuple[Board, GridRequest], tmp_path: Path, capfd,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = toy
    monkeypatch.setenv("TOY_BAR", "1")
    assert not sys.stderr.isatty()  # pytest captures the output: the runner sees a log, not a terminal
    assert main(["run", "--backbone", "random_resnet18", "--board", str(board.root), "--data", str(request.data_dir),
                 "--fractions", "100", "--work-dir", str(tmp_path / "w")]) == 0
    output = capfd.readouterr().err
    assert "toy bar: 100%" in output and "\r" not in output, output


@pytest.mark.parametrize("verb", ["run", "submit"])
def test_an_unknown_arch_is_the_registry_message_for_run_and_submit(toy, tmp_path, capsys, verb: str) -> None:
    board, request = toy
    (tmp_path / "mine.pth").write_bytes(b"")
    extra = ["--name", "mine", "--pretraining-data", "none"] if verb == "submit" else ["--backbone", "mine"]
    assert main([verb, *extra, "--checkpoint", str(tmp_path / "mine.pth"), "--arch", "resnet5O", "--board",
                 str(board.root), "--data", str(request.data_dir), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: unknown architecture 'resnet5O'") and "resnet50" in error and "Traceback" not in error
