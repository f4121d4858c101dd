"""Running one cell in a process of its own, or in this one for debugging.

Each cell runs in a fresh child process (forked from a server that has imported the libraries
once), so mmengine's registries and default scope, memory and GPU memory never carry over from
one cell to the next; a cell that crashes the interpreter or exceeds ``cell_timeout`` is
recorded as failed with its output, and the grid goes on. The child dies with the runner that
started it (a lifeline pipe), and its output goes to the cell's log, which the runner follows
while the cell runs when progress is shown.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pkgutil
import signal
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmark import scoring
from benchmark.backbones import LoadedBackbone, build_backbone
from benchmark.backbones.zoo import BackboneSpec
from benchmark.board.store import Board
from benchmark.grid.cell import cell_work_dir, evaluate_cell
from benchmark.grid.request import BackboneChoice, Cell, GridError, GridRequest

LOG_FILE = "cell.log"  # the child's stdout and stderr, in the cell's work folder
ERROR_FILE = "error.txt"  # the child's traceback when the cell raised
OUTPUT_TAIL = 6000  # characters of a failed cell's output kept in its failure record


@dataclass(frozen=True)
class _ChildJob:
    """Everything a cell's child process needs, picklable (the task declaration travels whole)."""

    board_root: Path
    cell: Cell
    spec: BackboneSpec
    checkpoint: Path | None
    request: GridRequest
    environment: dict[str, str]  # the parent's environment at the time the cell starts
    interactive: bool  # the runner's output is a terminal (else bars are logged as lines)


def _child_main(job: _ChildJob, lifeline: Connection) -> None:
    """Entry point of a cell's process: output to the cell log, rebuild the backbone, run, record."""
    _die_with_runner(lifeline)
    work = cell_work_dir(job.request, Board(job.board_root), job.cell.identity)
    os.environ.clear()
    os.environ.update(job.environment)
    with open(work / LOG_FILE, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if not job.interactive:
        _bars_as_lines()
    try:
        loaded = build_backbone(job.spec, job.checkpoint, preprocess=job.request.preprocess)
        if loaded.weights_sha256 != job.cell.identity.weights_sha256:
            raise GridError(f"the weights changed since the grid was planned ({loaded.weights_sha256[:12]} != "
                            f"{job.cell.identity.weights_sha256[:12]}); re-run the grid")
        evaluate_cell(Board(job.board_root), job.cell, loaded, job.request)
    except BaseException:
        (work / ERROR_FILE).write_text(traceback.format_exc())
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()


class _RedrawsAsLines:
    """A text stream that writes each redraw of a progress bar (text after a carriage return) as a
    line of its own, so that a log file holds lines, not one line rewritten thousands of times."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if "\r" in text:
            text = "".join(part.rstrip("\n") + "\n" for part in text.split("\r") if part.strip())
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _bars_as_lines() -> None:
    """In a cell whose runner logs to a file (a batch job, a pipe): tqdm bars drawn every 30 s, each
    as a line. tqdm's ``TQDM_*`` variables are read when tqdm is imported, which the fork server did
    before this process existed, so the default is changed on the class."""
    from functools import partialmethod

    from tqdm import tqdm

    tqdm.__init__ = partialmethod(tqdm.__init__, mininterval=30)  # a cell's own process: nothing else shares it
    sys.stderr = _RedrawsAsLines(sys.stderr)


def _die_with_runner(lifeline: Connection) -> None:
    """Kill this process the moment its runner is gone, however it went (``kill -9`` included).

    The cell's parent is the fork server, not the runner, and the fork server may still be
    importing when the runner dies and then fork the cell anyway; so neither ``PR_SET_PDEATHSIG``
    nor the parent's liveness says enough. ``lifeline`` is the read end of a pipe whose only write
    end the runner holds and never writes to: reading it returns exactly when the runner's end is
    closed, which the kernel does when the runner exits for any reason."""
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os.kill(os.getpid(), signal.SIGKILL)  # no record, no cleanup: the runner that would read them is gone

    threading.Thread(target=watch, name="runner lifeline", daemon=True).start()


def _cell_environment(progress: bool) -> dict[str, str]:
    """The runner's environment for a cell (a cell without progress also has its log unfollowed)."""
    environment = dict(os.environ)
    if not progress:
        environment["TQDM_DISABLE"] = "1"
    return environment


def process_context(cells: list[Cell]) -> multiprocessing.context.BaseContext:
    """Fork server that has imported the runner and the planned adapters once: cheap fresh children."""
    context = multiprocessing.get_context("forkserver")
    adapters = {info.adapter.partition(":")[0] for info in {cell.task.name: cell.task for cell in cells}.values()
                if isinstance(info.adapter, str)}
    scorers = [f"benchmark.scoring.{module.name}" for module in pkgutil.iter_modules(scoring.__path__)]
    context.set_forkserver_preload([__name__, *scorers, *sorted(adapters)])
    return context


def _follow(path: Path, stop: threading.Event, stream: Any) -> None:
    """Copy what the child writes to its log onto ``stream`` while it runs (its progress bars)."""
    with open(path, "rb") as log:
        while True:
            chunk = log.read(65536)
            if chunk:
                stream.buffer.write(chunk)
                stream.flush()
            elif stop.is_set():
                return
            else:
                time.sleep(0.2)


def run_isolated(board: Board, cell: Cell, choice: BackboneChoice, spec: BackboneSpec, request: GridRequest,
                 context: multiprocessing.context.BaseContext) -> str | None:
    """Evaluate ``cell`` in a fresh child process; None on success, else the error to record."""
    work = cell_work_dir(request, board, cell.identity)
    work.mkdir(parents=True, exist_ok=True)
    (work / ERROR_FILE).unlink(missing_ok=True)
    (work / LOG_FILE).write_bytes(b"")
    job = _ChildJob(board.root, cell, spec, choice.checkpoint, request, _cell_environment(request.progress),
                    interactive=sys.stderr.isatty())
    lifeline, runner_end = context.Pipe(duplex=False)  # the child reads, the runner holds the only write end
    process = context.Process(target=_child_main, args=(job, lifeline), name=f"cell {cell.identity.cell_key}")
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(work / LOG_FILE, stop, sys.stderr), daemon=True)
    if request.progress:
        follower.start()
    process.start()
    lifeline.close()  # the child has its own copy
    process.join(request.cell_timeout)
    timed_out = process.is_alive()
    if timed_out:
        process.kill()
        process.join()
    runner_end.close()
    stop.set()
    if request.progress:
        follower.join()
    if process.exitcode == 0 and not timed_out and board.completed(cell.identity):
        return None
    output = (work / LOG_FILE).read_text(errors="replace")[-OUTPUT_TAIL:] if (work / LOG_FILE).is_file() else ""
    if timed_out:
        reason = f"the cell exceeded the cell timeout of {request.cell_timeout:g} s and was killed"
    elif (work / ERROR_FILE).is_file():
        reason = (work / ERROR_FILE).read_text(errors="replace")
    elif process.exitcode is not None and process.exitcode < 0:
        reason = f"the cell's process was killed by signal {-process.exitcode} (crash or out of memory)"
    else:
        reason = f"the cell's process exited with code {process.exitcode} without writing its record"
    return f"{reason.rstrip()}\n\n--- last output of the cell ({work / LOG_FILE}) ---\n{output}"


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr into ``path`` (an in-process cell without progress, like an
    isolated cell whose log is not followed: its bars and training logs stay in its log file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def run_in_process(board: Board, cell: Cell, loaded: LoadedBackbone, request: GridRequest) -> str | None:
    quiet = _output_to(cell_work_dir(request, board, cell.identity) / LOG_FILE)
    try:
        with contextlib.nullcontext() if request.progress else quiet:
            evaluate_cell(board, cell, loaded, request)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # noqa: BLE001 - recorded with its traceback, the grid goes on
        return traceback.format_exc()
    return None

