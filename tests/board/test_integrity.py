"""A board proves its numbers: tampered records and replaced files are caught on every read and by
``verify``; they are never rendered, and ``run`` redoes them only when asked."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.board.integrity import MANIFEST_FILE  # noqa: E402
from benchmark.board.render import BoardView, render_board  # noqa: E402
from benchmark.board.store import Board  # noqa: E402
from benchmark.cli import main  # noqa: E402
from benchmark.grid import BackboneChoice, GridRequest, run_grid  # noqa: E402


@pytest.fixture()
def board(tmp_path: Path) -> tuple[Board, GridRequest]:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = Board(toy_task.write_toy_board(tmp_path / "boards"))
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=data, work_dir=tmp_path / "work",
                          cache_dir=tmp_path / "cache", progress=False, fractions=(10, 100), draws=(0,), isolate=False)
    assert run_grid(board, request).ran == 2
    return board, request


def tamper_metric(board: Board) -> Path:
    path = sorted((board.root / "results").rglob("*.json"))[0]
    data = json.loads(path.read_text())
    data["metrics"]["auroc"]["value"] = 0.999
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def test_an_untouched_board_verifies_with_rescoring(board: tuple[Board, GridRequest], capsys) -> None:
    assert main(["verify", "--board", str(board[0].root), "--rescore"]) == 0
    assert "2 valid, 0 mismatched, 0 missing" in capsys.readouterr().out
    assert len((board[0].root / MANIFEST_FILE).read_text().splitlines()) == 2


def test_a_metric_edited_by_hand_is_caught_everywhere(board: tuple[Board, GridRequest], capsys) -> None:
    board, request = board
    path = tamper_metric(board)
    assert main(["verify", "--board", str(board.root)]) == 1
    output = capsys.readouterr().out
    assert "MISMATCH" in output and path.name in output and "differs from the hash in records.sha256" in output
    view = BoardView.load(Board(board.root))
    assert len(view.records) == 1 and path.name in view.invalid[0]
    page = render_board(Board(board.root), formats=("md", "html")).files
    assert "fail verification" in next(p for p in page if p.name == "index.html").read_text()
    summary = run_grid(board, request)
    assert (summary.ran, len(summary.invalid)) == (0, 1) and "--redo-invalid" in summary.lines()[1]
    redone = run_grid(board, replace(request, redo_invalid=True))
    assert redone.ran == 1 and main(["verify", "--board", str(board.root)]) == 0


def test_a_rescore_catches_a_record_whose_hash_was_forged_too(board: tuple[Board, GridRequest], capsys) -> None:
    board, _ = board
    path = tamper_metric(board)
    lines = (board.root / MANIFEST_FILE).read_text().splitlines()
    from benchmark.hashing import file_sha256

    name = str(path.relative_to(board.root))
    forged = [f"{file_sha256(path)}  {name}" if line.endswith(name) else line for line in lines]
    (board.root / MANIFEST_FILE).write_text("\n".join(forged) + "\n")
    assert main(["verify", "--board", str(board.root)]) == 0  # the hashes alone are consistent again
    capsys.readouterr()
    assert main(["verify", "--board", str(board.root), "--rescore"]) == 1
    assert "auroc.value: record 0.999, files give" in capsys.readouterr().out


def test_a_replaced_prediction_file_invalidates_its_record(board: tuple[Board, GridRequest]) -> None:
    board, _ = board
    record = board.records()[0]
    predictions = board.artifact_file(record.predictions)
    predictions.write_text(predictions.read_text().replace("0.", "0.1", 1))
    invalid: list[str] = []
    assert len(Board(board.root).records(invalid)) == 1
    assert "predictions file" in invalid[0] and "does not match the record's sha256" in invalid[0]
    assert Board(board.root).status(record.identity)[0] is None


def _same_size_edit(path: Path) -> None:
    """Change one digit of ``path`` and restore its times: only the inode's ctime shows the edit."""
    import os
    import re
    import time

    before = path.stat()
    text = path.read_text()
    match = re.search(r"\.(\d)", text)
    digit = match.group(1)
    edited = text[:match.start(1)] + ("1" if digit != "1" else "2") + text[match.end(1):]
    time.sleep(0.05)  # past the file system's coarse timestamp tick, so the edit gets another ctime
    path.write_text(edited)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize("kind", ["record", "predictions"])
def test_a_same_size_edit_with_its_mtime_restored_is_caught_by_tables_run_and_verify(
        board: tuple[Board, GridRequest], kind: str, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    from benchmark.board import integrity

    board, request = board
    monkeypatch.setattr(integrity, "RACY_SECONDS", 0.0, raising=False)  # memoise the fresh files at once
    record = Board(board.root).records()[0]  # reads every file: the memo now holds their hashes
    path = board.result_path(record.identity) if kind == "record" else board.artifact_file(record.predictions)
    _same_size_edit(path)
    invalid: list[str] = []
    assert len(BoardView.load(Board(board.root)).records) == 1
    assert len(Board(board.root).records(invalid)) == 1 and len(invalid) == 1
    assert Board(board.root).status(record.identity)[0] is None  # run: not "already done"
    summary = run_grid(Board(board.root), request)
    assert (summary.ran, len(summary.invalid)) == (0, 1)
    assert main(["verify", "--board", str(board.root)]) == 1 and "MISMATCH" in capsys.readouterr().out


def test_a_hash_memo_shipped_inside_a_board_vouches_for_nothing(board: tuple[Board, GridRequest], capsys) -> None:
    """A board copied with a poisoned memo (the old ``.cache/file-hashes.json``, here claiming the edited
    record still has its original hash) is not believed: the memo is per machine, outside the board."""
    board, _ = board
    record = board.records()[0]
    path = board.result_path(record.identity)
    original = board.manifest()[str(path.relative_to(board.root))]
    _same_size_edit(path)
    stat = path.stat()
    poisoned = {str(path.resolve()): [stat.st_size, stat.st_mtime_ns, original]}
    (board.root / ".cache").mkdir(exist_ok=True)
    (board.root / ".cache" / "file-hashes.json").write_text(json.dumps(poisoned))
    invalid: list[str] = []
    assert len(Board(board.root).records(invalid)) == 1 and "differs from the hash" in invalid[0]
    assert Board(board.root).status(record.identity)[0] is None
    assert main(["verify", "--board", str(board.root)]) == 1


def test_the_hash_memo_lives_outside_the_board(board: tuple[Board, GridRequest]) -> None:
    from benchmark.board.integrity import hash_memo_path

    board, _ = board
    memo = hash_memo_path(board.root)
    assert board.root.resolve() not in memo.resolve().parents
    assert not list(board.root.rglob("*hash*"))


def test_paired_test_results_shipped_inside_a_board_are_not_believed(board: tuple[Board, GridRequest]) -> None:
    """A board copied with forged comparison results (where the cache of paired tests used to live, under the
    key its records' files give) still shows the test computed here."""
    from benchmark.board.aggregate import aggregate
    from benchmark.board.compare import _cache_path, compare_cells
    from benchmark.scoring.compare import PairedResult

    board, request = board
    run_grid(board, replace(request, backbones=(BackboneChoice("random_vit_tiny"),), fractions=(100,)))
    records = board.records()
    cell_a, cell_b = [cell for cell in aggregate(records, board.protocol.metric) if cell.fraction == 100]
    truth = compare_cells(board, records, cell_a, cell_b)
    key = _cache_path(board, cell_a, [r for r in records if r.identity.cell_key in {run.record for run in cell_a.runs}],
                      [r for r in records if r.identity.cell_key in {run.record for run in cell_b.runs}]).name
    forged = {**truth.as_dict(), "p_value": 1e-12, "delta": 0.5}
    (board.root / ".cache" / "comparisons").mkdir(parents=True)
    (board.root / ".cache" / "comparisons" / key).write_text(json.dumps(forged))
    again = compare_cells(board, records, cell_a, cell_b)
    assert (again.p_value, again.delta) == (truth.p_value, truth.delta) != (1e-12, 0.5)
    assert isinstance(again, PairedResult)


def test_a_deleted_record_fails_verify(board: tuple[Board, GridRequest], capsys) -> None:
    board, _ = board
    path = sorted((board.root / "results").rglob("*.json"))[0]
    path.unlink()
    assert main(["verify", "--board", str(board.root)]) == 1
    output = capsys.readouterr().out
    assert f"MISSING   {path.relative_to(board.root)}: listed in the manifest" in output
    assert "1 valid, 0 mismatched, 1 missing" in output


def _forge_targets(board: Board, update_target_set: bool) -> Path:
    """The attack of issue 19: relabel a record's test targets (the toy task's AUROC is 1.0 already, so the
    forgery here moves it down), re-score it and update the record's hashes (and, with ``update_target_set``,
    its target digest) and the manifest."""
    import pandas as pd

    from benchmark.board.integrity import read_manifest, record_digest, write_manifest
    from benchmark.commands.verify import rescore_problems
    from benchmark.hashing import file_sha256
    from benchmark.records import MetricValue, RunRecord
    from benchmark.scoring import record_target_set

    path = sorted((board.root / "results").rglob("*.json"))[0]
    record = RunRecord.read(path)
    targets, predictions = board.artifact_file(record.targets), board.artifact_file(record.predictions)
    forged = pd.read_csv(targets, index_col="id")
    forged.iloc[:4, 0] = 1 - forged.iloc[:4, 0]
    forged.to_csv(targets)
    before = record.headline.value
    record.targets.sha256 = file_sha256(targets)
    if update_target_set:
        record.target_set = record_target_set("classification", targets, "rsna", "classification")
    for problem in rescore_problems(board, record):  # "auroc.value: record 0.6, files give 1.0"
        name, _, rest = problem.partition(".value: record ")
        if rest:
            record.metrics[name] = MetricValue(float(rest.split("files give ")[1]))
    assert record.headline.value != before
    text = record.to_json()
    path.write_text(text)
    write_manifest(board.root, {**read_manifest(board.root), str(path.relative_to(board.root)): record_digest(text)})
    return path


@pytest.mark.parametrize("update_target_set", [False, True])
def test_forged_ground_truth_is_caught_by_verify_tables_and_run(
        board: tuple[Board, GridRequest], update_target_set: bool, capsys) -> None:
    board, request = board
    path = _forge_targets(board, update_target_set)
    assert main(["verify", "--board", str(board.root), "--rescore"]) == 1
    output = capsys.readouterr().out
    assert f"MISMATCH  {path.relative_to(board.root)}" in output
    assert ("the board pins" if update_target_set else "its targets file holds ground truth") in output
    view = BoardView.load(Board(board.root))
    assert len(view.records) == 1 and path.name in view.invalid[0]
    assert board.result_path(view.records[0].identity) != path  # the forged number is not shown
    summary = run_grid(Board(board.root), request)
    assert (summary.ran, len(summary.invalid)) == (0, 1)


def test_every_record_carries_the_pinned_ground_truth(board: tuple[Board, GridRequest]) -> None:
    board, _ = board
    records = board.records()
    pins = board.target_pins()
    assert list(pins) == ["rsna/classification/test"]
    assert {record.target_set["digest"] for record in records} == {pins["rsna/classification/test"]}
    assert json.loads((board.root / "target-pins.json").read_text()) == pins


def _toy_test_targets_digest(data: Path) -> str:
    """The pin of the toy board, computed from the prepared dataset (its records.csv), not from a run."""
    import pandas as pd

    from benchmark.scoring import record_target_set

    rows = pd.read_csv(data / "rsna" / "records.csv")
    test = rows[rows["split"] == "test"][["id", "Target"]]
    test.to_csv(data / "truth.csv", index=False)
    return record_target_set("classification", data / "truth.csv", "rsna", "classification")["digest"]


@pytest.mark.parametrize("pinned", ["data", "other"])
def test_a_protocol_pin_is_the_ground_truth_runs_must_match(tmp_path: Path, pinned: str, capsys) -> None:
    data = toy_task.write_toy_dataset(tmp_path / "data")
    folder = toy_task.write_toy_board(tmp_path / "boards")
    digest = _toy_test_targets_digest(data) if pinned == "data" else "0" * 64
    protocol = json.loads((folder / "protocol.json").read_text())
    (folder / "protocol.json").write_text(json.dumps({**protocol, "target_pins": {"rsna/classification/test": digest}}))
    board = Board(folder)
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=data, work_dir=tmp_path / "work",
                          cache_dir=tmp_path / "cache", progress=False, fractions=(100,), isolate=False)
    summary = run_grid(board, request)
    if pinned == "data":
        assert summary.ran == 1 and not (folder / "target-pins.json").exists()
        assert main(["verify", "--board", str(folder)]) == 0
    else:
        assert summary.ran == 0 and len(summary.failed) == 1
        assert not (folder / "results").exists() and not (folder / "predictions").exists()  # nothing stored
        assert "not those the board pins in protocol.json" in json.dumps(board.failures())
