"""The grid loop: evaluate every planned cell that is not yet on the board, resumably.

A cell is done exactly when its record exists on the board and validates, so:

- an interrupted grid resumes where it stopped (a crash mid-cell leaves at most a temporary
  file, which is ignored and cleaned up);
- a finished grid re-runs in seconds (only backbones are built, to hash their weights);
- two processes on the same board never duplicate a cell: each cell is claimed with a
  non-blocking ``fcntl`` lock, and a claimed cell is skipped as "busy" by the other process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import sys
import time
from collections.abc import Iterator

from benchmark.backbones import LoadedBackbone
from benchmark.backbones.zoo import BackboneSpec
from benchmark.board.store import Board, BoardEntry, failure_message
from benchmark.grid.cell import load_report_summary
from benchmark.grid.isolation import process_context, run_in_process, run_isolated
from benchmark.grid.planning import plan_grid
from benchmark.grid.request import BackboneChoice, Cell, GridRequest, GridSummary, resolve_device
from benchmark.provenance import utc_now
from benchmark.records import CellIdentity


@contextlib.contextmanager
def claim(board: Board, identity: CellIdentity) -> Iterator[bool]:
    """Non-blocking per-cell lock: True when this process may evaluate the cell."""
    folder = board.root / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{identity.entry_key}.{identity.cell_key}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        handle.truncate(0)  # who holds it, for `status` (file systems that ignore flock still show it)
        handle.write(f"{socket.gethostname()} {os.getpid()} {utc_now()}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def board_entry(choice: BackboneChoice, loaded: LoadedBackbone) -> BoardEntry:
    """The board's entry of a backbone: its weights, architecture, role, provenance and preprocessing."""
    spec = loaded.spec
    if spec.weights == "random":
        source = f"random initialisation (seed {spec.seed})"
    else:
        source = spec.published_at or (choice.checkpoint.name if choice.checkpoint else spec.checkpoint_file)
    report = loaded.load_report
    return BoardEntry(
        name=spec.name, weights_sha256=loaded.weights_sha256, arch=spec.arch,
        role="submission" if choice.is_submission else "reference",
        pretraining_data=list(choice.pretraining_data or spec.pretraining_data), description=spec.description,
        weights_source=source, added=utc_now(),
        load_report=load_report_summary(report) if report is not None else None,
        preprocessing=loaded.preprocessing.to_dict(),
    )


def run_grid(board: Board, request: GridRequest) -> GridSummary:
    """Evaluate every cell of ``request`` that is not yet on ``board``."""
    resolve_device(request.device)  # once, before the grid: a missing GPU is one error, not one failure per cell
    summary, clock = GridSummary(), time.perf_counter()
    board.remove_stale_temps()
    board.rebuild_index()  # a crash after a record's write may have left the index behind
    todo: list[tuple[Cell, BackboneChoice, BackboneSpec, LoadedBackbone]] = []
    planned = plan_grid(board, request, summary)
    for choice, loaded in {item.choice: item.loaded for item in planned}.items():  # an entry only with cells to its name
        board.register_entry(board_entry(choice, loaded))
    summary.cells = len(planned)
    summary.shard = str(request.shard or "")
    for item in planned:
        record, invalid = board.status(item.cell.identity)
        if record is not None:
            summary.done_before += 1
        elif invalid is not None and not request.redo_invalid:
            summary.invalid.append(invalid)
        else:
            todo.append((item.cell, item.choice, item.spec, item.loaded))
    context = process_context([cell for cell, *_ in todo]) if request.isolate and todo else None
    for number, (cell, choice, spec, loaded) in enumerate(todo, 1):
        identity = cell.identity
        if request.progress:
            print(f"[{number}/{len(todo)}] {identity.backbone} {identity.task}/{identity.dataset} {identity.head} "
                  f"{identity.fraction}% draw {identity.draw} seed {identity.seed} ({identity.mode})", file=sys.stderr, flush=True)
        with claim(board, identity) as mine:
            if not mine:
                summary.busy += 1
                continue
            if board.completed(identity):  # finished by another process meanwhile
                summary.done_before += 1
                continue
            if context is not None:
                error = run_isolated(board, cell, choice, spec, request, context)
            else:
                error = run_in_process(board, cell, loaded, request)
            if error is None:
                summary.ran += 1
            else:
                path = board.record_failure(identity, error)
                summary.failed.append(f"{identity.entry_key}/{identity.cell_key}: {failure_message(error)} (traceback: {path})")
    summary.seconds = time.perf_counter() - clock
    return summary

