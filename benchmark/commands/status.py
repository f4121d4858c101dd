"""Verb ``status``: a board's progress, per task and dataset: cells done, failed, running, to run.

Read from the board folder only (results, failures, cell claims), so it shows the same for one
local run, N shards on one machine and a SLURM array writing to a shared folder. A cell counts
as running while the process that claimed it holds its claim: the lock file names host and pid
(read without taking the lock); a process on this machine is checked to be alive, a claim from
another machine counts until the file is emptied (a job killed there shows its cell as running
until the cell is run again). With ``--backbone`` (and the grid options of ``run``) the grid is
planned as ``run`` would, which adds the cells still to run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.commands import command, print_json
from benchmark.commands.arguments import add_grid_arguments, chosen_board, comma_list, grid_request

_LOG = re.compile(r"--- last output of the cell \((.+?)\) ---")


@dataclass
class Progress:
    """Cells of one board (or one planned grid) by state."""

    done: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # "task/dataset" -> count
    failed: list[dict[str, str]] = field(default_factory=list)
    running: list[dict[str, str]] = field(default_factory=list)
    to_run: dict[str, int] | None = None  # only when a grid is planned

    def rows(self) -> dict[str, dict[str, int | None]]:
        names = set(self.done) | {item["slot"] for item in self.failed + self.running} | set(self.to_run or {})
        return {name: {"done": self.done.get(name, 0),
                       "failed": sum(item["slot"] == name for item in self.failed),
                       "running": sum(item["slot"] == name for item in self.running),
                       "to_run": None if self.to_run is None else self.to_run.get(name, 0)} for name in sorted(names)}

    def lines(self, board: str) -> list[str]:
        out = [f"board {board}  ({time.strftime('%Y-%m-%d %H:%M:%S')})",
               f"{'task/dataset':<28}{'done':>7}{'failed':>8}{'running':>9}{'to run':>8}"]
        rows = self.rows()
        totals = {key: sum((row[key] or 0) for row in rows.values()) for key in ("done", "failed", "running", "to_run")}
        for name, row in [*rows.items(), ("total", totals)]:
            to_run = "-" if self.to_run is None else row["to_run"]
            out.append(f"{name:<28}{row['done']:>7}{row['failed']:>8}{row['running']:>9}{to_run:>8}")
        out += [f"running: {item['cell']} ({item['holder']})" for item in self.running]
        out += [f"failed: {item['cell']}: {item['error']}\n        traceback: {item['failure']}"
                + (f"\n        log: {item['log']}" if item.get("log") else "") for item in self.failed]
        if self.to_run is None:
            out.append("(cells still to run: give --backbone and the grid options of `run`)")
        return out


def _slot_of(cell_key: str, slots: list[str]) -> str:
    """``task/dataset`` of a record file stem (``<task>-<dataset>-...``), longest match first."""
    for slot in sorted(slots, key=len, reverse=True):
        if cell_key.startswith(slot.replace("/", "-") + "-"):
            return slot
    return "?"


def _holder(lock: Path) -> str | None:
    """Who holds a cell's claim, or None. The runner writes "host pid time" into the lock file while
    it holds it and empties it on release; a process on this host is checked to be alive (a run
    killed with -9 leaves its line behind). Status never takes the lock: a runner would then see
    the cell as busy and skip it."""
    text = lock.read_text(errors="replace").strip()
    if not text:
        return None
    host, pid, since = (text.split(" ", 2) + ["", ""])[:3]
    if host == socket.gethostname():
        try:
            os.kill(int(pid), 0)
        except (ProcessLookupError, ValueError):
            return None
        except PermissionError:
            pass  # alive, another user's
    return f"{host} pid {pid} since {since}"


def progress(board, cells=None) -> Progress:
    """The state of every cell on ``board`` (of ``cells``, identities of a planned grid, when given)."""
    from benchmark.board.store import failure_message

    slots = [f"{task}/{dataset}" for task, item in board.protocol.tasks.items() for dataset in item.datasets]
    wanted = None if cells is None else {(c.entry_key, c.cell_key): c for c in cells}
    state = Progress()
    done = set()
    for path in sorted((board.root / "results").glob("*/*.json")):
        key = (path.parent.name, path.stem)
        if wanted is None or key in wanted:
            done.add(key)
            state.done[_slot_of(path.stem, slots)] += 1
    running = set()
    for lock in sorted((board.root / ".locks").glob("*.lock")):
        entry, _, cell = lock.stem.partition(".")
        key = (entry, cell)
        if key in done or (wanted is not None and key not in wanted):
            continue
        holder = _holder(lock)
        if holder:
            running.add(key)
            state.running.append({"slot": _slot_of(cell, slots), "cell": f"{entry}/{cell}", "holder": holder})
    failed = set()
    for path in sorted((board.root / "failures").glob("*/*.json")):
        key = (path.parent.name, path.stem)
        if key in done or key in running or (wanted is not None and key not in wanted):
            continue
        error = json.loads(path.read_text()).get("error", "")
        log = _LOG.search(error)
        failed.add(key)
        state.failed.append({"slot": _slot_of(path.stem, slots), "cell": f"{key[0]}/{key[1]}", "error": failure_message(error),
                             "failure": str(path), "log": log.group(1) if log else ""})
    if wanted is not None:
        state.to_run = defaultdict(int)
        for key, identity in wanted.items():
            if key not in done | running | failed:
                state.to_run[f"{identity.task}/{identity.dataset}"] += 1
    return state


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", type=comma_list, default=None,
                        help="plan this grid (registered backbone names) to also count the cells still to run")
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights file (one backbone only)")
    parser.add_argument("--arch", default=None, help="architecture of --checkpoint")
    parser.add_argument("--watch", type=float, nargs="?", const=10.0, default=None, metavar="SECONDS",
                        help="refresh every SECONDS (default 10) until the grid is finished or Ctrl-C")
    parser.add_argument("--format", choices=("text", "json"), default="text")
    add_grid_arguments(parser)


@command("status", "a board's progress per task and dataset: cells done, failed (with their error), running, to run", _configure)
def _status(args: argparse.Namespace) -> int:
    from benchmark.backbones import CheckpointError
    from benchmark.board.store import Board, BoardError
    from benchmark.data.prepared import DataError
    from benchmark.grid import BackboneChoice, GridError, GridSummary, plan_grid
    from benchmark.registry import RegistryError, import_plugins

    import_plugins(args.plugins)
    try:
        board = Board(chosen_board(args))
        cells = None
        if args.backbone:
            choices = tuple(BackboneChoice(name, args.checkpoint, args.arch) for name in args.backbone)
            planned = plan_grid(board, grid_request(args, choices), GridSummary())
            cells = [item.cell.identity for item in planned]
    except (GridError, BoardError, DataError, RegistryError, CheckpointError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    while True:
        state = progress(board, cells)
        if args.format == "json":
            print_json({"board": board.name, "rows": state.rows(), "failed": state.failed, "running": state.running})
        else:
            if args.watch and sys.stdout.isatty():
                print("\033[2J\033[H", end="")
            print("\n".join(state.lines(board.name)), flush=True)
        finished = cells is not None and not state.running and not sum((state.to_run or {}).values())
        if args.watch is None or finished:
            return 0
        try:
            time.sleep(args.watch)
        except KeyboardInterrupt:
            return 0
