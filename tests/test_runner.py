"""The grid runner with a toy task: planning, resume after a crash, no-op re-runs, failures, concurrency."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent / "board"))
import toy_task  # noqa: E402 - registers the toy task

from benchmark.board.store import Board, BoardError  # noqa: E402
from benchmark.records import RunRecord  # noqa: E402
from benchmark.grid import BackboneChoice, GridError, GridRequest, run_grid  # noqa: E402

BACKBONE = "random_resnet18"



def _toy_request(root: Path) -> GridRequest:
    return GridRequest(backbones=(BackboneChoice(BACKBONE),), data_dir=root / "data", work_dir=root / "work",
                       cache_dir=root / "cache", progress=False)


@pytest.fixture()
def setup(tmp_path: Path) -> tuple[Board, GridRequest]:
    toy_task.write_toy_dataset(tmp_path / "data")
    board = Board(toy_task.write_toy_board(tmp_path / "boards", seeds=(0, 1)))
    return board, _toy_request(tmp_path)


@pytest.fixture(scope="module")
def _grid_run_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder as ``setup`` writes it (data, boards, work, cache) after ``run_grid`` ran its whole grid."""
    root = tmp_path_factory.mktemp("toy-grid-ran")
    toy_task.write_toy_dataset(root / "data")
    summary = run_grid(Board(toy_task.write_toy_board(root / "boards", seeds=(0, 1))), _toy_request(root))
    assert (summary.ran, summary.failed) == (10, [])
    return root


@pytest.fixture()
def ran(_grid_run_once: Path, tmp_path: Path) -> tuple[Board, GridRequest]:
    """``setup`` after ``run_grid(board, request)``: a copy of one such run shared by the tests that start from
    there, instead of the same 10 cells run again for each (a board holds no absolute path: a copy is a board)."""
    shutil.copytree(_grid_run_once, tmp_path, dirs_exist_ok=True)
    return Board(tmp_path / "boards" / "toy-board"), _toy_request(tmp_path)


def result_files(board: Board) -> list[Path]:
    return sorted((board.root / "results").rglob("*.json"))


def test_grid_runs_every_cell_once_and_a_rerun_is_a_no_op(setup: tuple[Board, GridRequest]) -> None:
    board, request = setup
    first = run_grid(board, request)
    assert (first.cells, first.ran, first.done_before, first.failed) == (10, 10, 0, [])
    files = result_files(board)
    assert len(files) == 10
    stamps = {path: path.stat().st_mtime_ns for path in files}
    second = run_grid(board, request)
    assert (second.ran, second.done_before) == (0, 10)
    assert {path: path.stat().st_mtime_ns for path in result_files(board)} == stamps
    identities = [RunRecord.read(path).identity for path in files]
    assert {(i.fraction, i.draw, i.seed) for i in identities} == {
        (f, d, s) for f in (1, 10) for d in (0, 1) for s in (0, 1)} | {(100, 0, 0), (100, 0, 1)}
    index = json.loads((board.root / "index.json").read_text())
    assert len(index["results"]) == 10


def test_record_files_are_named_from_the_resolved_identity(ran: tuple[Board, GridRequest]) -> None:
    board, _ = ran
    for path in result_files(board):
        record = RunRecord.read(path)
        assert path == board.result_path(record.identity)
        assert path.parent.name == f"{BACKBONE}@{record.identity.weights_sha256[:12]}"
        assert (board.root / record.predictions.path).is_file()


def test_a_failing_cell_is_recorded_and_retried(setup: tuple[Board, GridRequest], monkeypatch: pytest.MonkeyPatch) -> None:
    board, request = setup
    monkeypatch.setenv("TOY_FAIL", "10")
    summary = run_grid(board, request)
    assert summary.ran == 6 and len(summary.failed) == 4
    assert len(board.failures()) == 4 and "toy failure at 10%" in board.failures()[0]["error"]
    failed_lines = [line for line in summary.lines() if line.startswith("failed: ")]  # one line per cell, with its reason
    assert len(failed_lines) == 4 and all("\n" not in line for line in failed_lines)
    assert all(": RuntimeError: toy failure at 10%" in line and str(board.root / "failures") in line for line in failed_lines)
    monkeypatch.delenv("TOY_FAIL")
    retry = run_grid(board, request)
    assert (retry.ran, retry.done_before, retry.failed) == (4, 6, [])
    assert board.failures() == []


def test_a_corrupt_result_is_reported_and_redone_only_when_asked(ran: tuple[Board, GridRequest]) -> None:
    board, request = ran
    victim = result_files(board)[0]
    victim.write_text(victim.read_text()[:100])  # truncated, as if the disk filled up
    (victim.parent / f"{victim.name}.tmp-999999999-x").write_text("{")  # leftover of a dead writer
    summary = run_grid(board, request)
    assert (summary.ran, summary.done_before, len(summary.invalid)) == (0, 9, 1)
    assert victim.name in summary.invalid[0]
    summary = run_grid(board, replace(request, redo_invalid=True))
    assert (summary.ran, summary.done_before) == (1, 9)
    RunRecord.read(victim)
    assert not list(board.root.rglob("*.tmp-*"))


def test_demo_data_never_goes_to_a_real_board(tmp_path: Path) -> None:
    data = toy_task.write_toy_dataset(tmp_path / "data", demo=True)
    board = Board(toy_task.write_toy_board(tmp_path / "boards", demo=False))
    request = GridRequest(backbones=(BackboneChoice(BACKBONE),), data_dir=data, work_dir=tmp_path / "work")
    with pytest.raises(GridError, match="demo results never go to a real board"):
        run_grid(board, request)


def test_a_record_of_another_protocol_version_is_refused(ran: tuple[Board, GridRequest]) -> None:
    board, _ = ran
    record = RunRecord.read(result_files(board)[0])
    record.protocol_version = "mgca-cxr-v0"
    with pytest.raises(BoardError, match="never mixed"):
        board.add(record)


def test_a_name_taken_by_other_weights_is_refused(ran: tuple[Board, GridRequest]) -> None:
    board, _ = ran
    entry = next(iter(board.entries().values()))
    entry.weights_sha256 = "f" * 64
    with pytest.raises(BoardError, match="Choose another --name"):
        board.register_entry(entry)


def _cli(tmp_path: Path, board: Board, data: Path, extra_env: dict[str, str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent / "board"), **extra_env}
    return subprocess.Popen(
        [sys.executable, "-m", "benchmark", "run", "--backbone", BACKBONE, "--board", str(board.root), "--data", str(data),
         "--seeds", "0,1", "--plugins", "toy_task", "--work-dir", str(tmp_path / "work"), "--no-progress"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def _settled_count(board: Board, token: str | None = None, quiet_seconds: float = 2.0) -> int:
    """Records on the board once the killed runner's processes are gone: its cell child dies with the
    fork server a moment after the runner, and may finish its rename first. With ``token``, the one in
    the runner's environment where /proc showed it: once no process holds it (three scans running);
    else once no record has appeared for ``quiet_seconds``."""
    if token is not None:
        deadline, empty_scans = time.time() + 120, 0
        while empty_scans < 3 and time.time() < deadline:
            empty_scans = 0 if _processes_with(token) else empty_scans + 1
            time.sleep(0.1)
        assert empty_scans == 3, f"processes of the killed runner still alive: {_processes_with(token)}"
        return len(result_files(board))
    count, since = len(result_files(board)), time.time()
    while time.time() - since < quiet_seconds:
        time.sleep(0.1)
        if (now := len(result_files(board))) != count:
            count, since = now, time.time()
    return count


@pytest.mark.slow
def test_killed_grid_resumes_without_duplicates(setup: tuple[Board, GridRequest], tmp_path: Path) -> None:
    board, request = setup
    token = f"killed-grid-{os.getpid()}-{time.time_ns()}"
    process = _cli(tmp_path, board, request.data_dir, {"TOY_SLEEP": "0.5", "RUNNER_KILL_TEST": token})
    deadline = time.time() + 120
    while not result_files(board) and time.time() < deadline:
        time.sleep(0.05)
    visible = sys.platform.startswith("linux") and process.pid in _processes_with(token)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = _settled_count(board, token if visible else None)
    assert 1 <= done < 10, "the kill should land mid-grid"
    for path in result_files(board):
        RunRecord.read(path)
    resumed = _cli(tmp_path, board, request.data_dir, {})
    output, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, output
    assert f"{10 - done} evaluated, {done} already done" in output
    assert len(result_files(board)) == 10
    again = run_grid(board, request)  # the same grid once more (in this process: no interpreter to start)
    assert (again.ran, again.done_before, again.failed) == (0, 10, [])
    assert len(result_files(board)) == 10


@pytest.mark.slow
def test_concurrent_runs_on_one_board_lose_nothing(setup: tuple[Board, GridRequest], tmp_path: Path) -> None:
    board, request = setup
    processes = [_cli(tmp_path, board, request.data_dir, {"TOY_SLEEP": "0.2"}) for _ in range(2)]
    outputs = [process.communicate(timeout=300)[0] for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    files = result_files(board)
    assert len(files) == 10
    for path in files:
        RunRecord.read(path)
    assert len(json.loads((board.root / "index.json").read_text())["results"]) == 10
    rerun = run_grid(board, request)
    assert rerun.ran == 0


def test_an_empty_grid_is_an_error_naming_what_is_missing(tmp_path: Path) -> None:
    board = Board(toy_task.write_toy_board(tmp_path / "boards"))
    (tmp_path / "nothing").mkdir()  # a --data folder that does not exist is its own message (test_grid_messages.py)
    request = GridRequest(backbones=(BackboneChoice(BACKBONE),), data_dir=tmp_path / "nothing")
    with pytest.raises(GridError, match="not prepared under .*nothing: toy/rsna"):
        run_grid(board, request)
    assert board.entries() == {}  # a failed plan leaves no entry behind


def test_a_checkpoint_record_says_which_encoder_of_the_file_was_evaluated(tmp_path: Path) -> None:
    import torch
    import torchvision

    from benchmark.hashing import file_sha256

    data = toy_task.write_toy_dataset(tmp_path / "data")
    board = Board(toy_task.write_toy_board(tmp_path / "boards"))
    checkpoint = tmp_path / "mine.pth"
    torch.save({"state_dict": {f"encoder.{k}": v for k, v in torchvision.models.resnet18().state_dict().items()}}, checkpoint)
    request = GridRequest(backbones=(BackboneChoice("mine", checkpoint, "resnet18"),), data_dir=data, fractions=(100,),
                          work_dir=tmp_path / "work", cache_dir=tmp_path / "cache")
    run_grid(board, request)
    (record,) = board.records()
    report = record.backbone["load_report"]
    assert report["prefix"] == "encoder." and report["ok"]
    assert report["sha256"] == file_sha256(checkpoint)  # the file; the identity hashes the loaded tensors



def _processes_with(token: str) -> dict[int, int]:
    """Live processes (pid -> parent pid) whose environment holds ``token``: the runner's fork
    server, resource tracker and cells, still found after the runner's death re-parents them."""
    found = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if token.encode() in environ.read_bytes():
                state, parent = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[:2]
                if state != "Z":
                    found[int(environ.parent.name)] = int(parent)
    return found


def _command_line(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_cell_dies_within_seconds_of_its_killed_runner(setup: tuple[Board, GridRequest], tmp_path: Path) -> None:
    """``kill -9`` of the runner while it starts its first cell. The fork server may still be
    importing and fork the cell afterwards (the probe's case: the cell ran on and wrote its record
    5 s later); the cell, a child of the fork server, must die within seconds and write nothing."""
    board, request = setup
    token, sleep = f"cell-kill-{os.getpid()}-{time.time_ns()}", 8.0
    process = _cli(tmp_path, board, request.data_dir, {"TOY_SLEEP": str(sleep), "RUNNER_KILL_TEST": token})
    deadline, seen = time.time() + 120, False
    while time.time() < deadline and not (seen := any(b"forkserver" in _command_line(pid) for pid in _processes_with(token))):
        time.sleep(0.02)
    time.sleep(0.5)  # the runner has asked the (still importing) fork server for the cell's process
    process.send_signal(signal.SIGKILL)
    process.wait()
    first_seen: dict[int, float] = {}
    deadline = time.time() + 120  # the fork server ends once its imports are done
    while (alive := _processes_with(token)) and time.time() < deadline:
        cells = {pid for pid, parent in alive.items() if parent in alive}  # children of the fork server
        for pid in cells:
            first_seen.setdefault(pid, time.time())
            assert time.time() - first_seen[pid] < 5, f"cell {pid} still alive 5 s after the runner was killed"
        time.sleep(0.05)
    assert not alive, f"processes of the killed runner still alive: {alive}"
    if seen:
        # /proc shows the runner's processes (the fork server was seen) and none is left: no process can write a
        # record any more, nor fork one that could (a cell writes after `sleep` seconds alive). Confirmed over a
        # second of scans, so that a cell forked in the instant its server exited, missed by one scan, is not missed.
        quiet_until = time.time() + 1.0
        while time.time() < quiet_until:
            assert not (alive := _processes_with(token)), f"a process of the killed runner appeared: {alive}"
            time.sleep(0.05)
    else:  # never seen here: wait past the moment a surviving cell would have written its record
        time.sleep(sleep + 1)
    assert result_files(board) == []
