"""What several verbs share on their command line: argument types checked at parse time (one
error line, exit 2), and the grid options of ``run``, ``status`` and ``submit`` with what they
become (a board, a :class:`~benchmark.grid.GridRequest`, a run of the grid)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from benchmark.board.store import Board
    from benchmark.grid import BackboneChoice, GridRequest


def comma_list(text: str) -> tuple[str, ...]:
    """Argument type of ``--tasks a,b``-style options: the non-empty items, stripped of spaces (only: a
    newline or another control character stays, for the name checks to refuse)."""
    return tuple(item.strip(" ") for item in text.split(",") if item.strip(" "))


def comma_integers(text: str) -> tuple[int, ...]:
    """Argument type of ``--fractions 1,10``-style options."""
    try:
        return tuple(int(item) for item in comma_list(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def int_between(low: int, high: int) -> Callable[[str], int]:
    """Argument type of a whole number in ``[low, high]``, checked at parse time (exit 2, one line):
    a negative seed or a size beyond any machine never reaches the code that would use it."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected a whole number from {low} to {high}, got {text!r}")
        return value

    return parse


def comma_integers_between(low: int, high: int) -> Callable[[str], tuple[int, ...]]:
    """Argument type of ``--seeds 0,1,2``-style options whose items lie in ``[low, high]``."""
    item = int_between(low, high)

    def parse(text: str) -> tuple[int, ...]:
        try:
            return tuple(item(value) for value in comma_list(text))
        except argparse.ArgumentTypeError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated whole numbers from {low} to {high}, got {text!r}") from None

    return parse


def positive_number(text: str) -> float:
    """Argument type of a finite number > 0 (seconds, images per second): not 0, negative, nan or inf."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a finite number > 0, got {text!r}")
    return value


def importable_modules(text: str) -> tuple[str, ...]:
    """Argument type of ``--plugins a,b``: modules that exist on the Python path (a typo is a usage error,
    not a traceback after the board is opened)."""
    import importlib.util

    names = comma_list(text)
    for name in names:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a missing parent package, an empty or relative name
            found = False
        if not found:
            raise argparse.ArgumentTypeError(f"no module named {name!r} on the Python path (sys.path, PYTHONPATH)")
    return names


def device_name(text: str) -> str:
    """Argument type of ``--device``: auto, cpu, cuda or cuda:N (whether that GPU exists is checked
    once before a grid runs, by the runner, which knows the machine it runs on)."""
    if not re.fullmatch(r"auto|cpu|cuda(:[0-9]{1,4})?", text):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, cuda or cuda:N, got {text!r}")
    return text


def output_file(text: str) -> Path:
    """Argument type of a file to write: not an existing folder, and no file where a parent folder must be."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name the file to write, e.g. {path / 'encoder.ckpt'}")
    blocking = next((parent for parent in path.parents if parent.exists()), None)
    if blocking is not None and not blocking.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: {blocking} is a file, not a folder")
    return path


SEED_RANGE = (0, 2**32 - 1)  # what every generator seeded here (numpy's, torch's) accepts


def significance_level(text: str) -> float:
    """Argument type of ``--alpha``: a significance level in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a significance level between 0 and 1, got {text!r}")
    return value


def task_choices(text: str) -> dict[str | None, str]:
    """``paper`` (every task that declares it) or ``detection=paper,classification=cached``."""
    choices: dict[str | None, str] = {}
    for item in comma_list(text):
        task, _, value = item.rpartition("=")
        if not value or (task == "" and "=" in item):
            raise argparse.ArgumentTypeError(f"expected VALUE or TASK=VALUE items, got {item!r}")
        choices[task or None] = value
    return choices


# ----------------------------------------------------------------------------- testing board columns

def add_column_tests(parser: argparse.ArgumentParser, expect: str) -> None:
    """Arguments of the verbs that test an entry's board columns (``compare``, ``chance``): the board, the
    columns selected, the multiple-comparison correction over them and ``--expect-better`` (``expect``:
    what it requires, for its help)."""
    parser.add_argument("--board", default=None, help="board name or folder (default: the default real-data board)")
    parser.add_argument("--demo", action="store_true", help="the default demo board (instead of naming it with --board)")
    parser.add_argument("--tasks", type=comma_list, default=None, help="comma list (default: every task of the board)")
    parser.add_argument("--datasets", type=comma_list, default=None,
                        help="comma list (default: every dataset of the tasks selected)")
    parser.add_argument("--fractions", type=comma_integers, default=None,
                        help="label percentages, e.g. 1,100 (default: every fraction of the tasks selected)")
    parser.add_argument("--mode", type=task_choices, default=None,
                        help="which runs: MODE or TASK=MODE,... (default: each task's default mode on the board)")
    parser.add_argument("--correction", choices=["holm", "bh", "none"], default=None,
                        help="multiple-comparison correction over the columns shown (default: the board's)")
    parser.add_argument("--alpha", type=significance_level, default=None,
                        help="significance level of --expect-better, on the adjusted p (default: the board's, 0.05)")
    parser.add_argument("--expect-better", action="store_true", help=expect)


def column_name(column: tuple[str, str, int, str]) -> str:
    """A board column (task, dataset, fraction, mode) as the column-testing verbs print it: ``toy/rsna 10%``."""
    task, dataset, fraction, _ = column
    return f"{task}/{dataset} {fraction}%"


def column_verdict(failures: list[str], unusable: list[tuple[tuple[str, str, int, str], str]], selected: int,
                   expect_better: bool, failed: str, passed: str) -> int:
    """The end of a column test (``compare``, ``chance``): print the columns that could not be tested; with
    ``expect_better``, list every failing column under ``failed`` ("... on N of the M columns selected:") and
    return 1, or print ``passed`` and return 0."""
    for column, why in unusable:
        print(f"{column_name(column)}: {why}")
    if not expect_better:
        return 0
    failures = [f"{column_name(column)}: {why}" for column, why in unusable] + failures
    if failures:
        print(f"{failed} on {len(failures)} of the {selected} columns selected:")
        for line in failures:
            print(f"  {line}")
        return 1
    print(passed)
    return 0


def entry_key(entries: Mapping[str, Any], wanted: str, label: str, root: Path) -> str:
    """The key of the one board entry whose name or key is ``wanted``; else a :class:`UsageError` saying
    why (``label`` names the argument, e.g. "A"; ``root`` the board) and listing the entries."""
    matches = [key for key, entry in entries.items() if wanted in (key, getattr(entry, "name", None))]
    if len(matches) != 1:
        known = ", ".join(sorted(getattr(entry, "name", key) for key, entry in entries.items())) or "none"
        problem = "matches several entries; give the entry key" if matches else "is not on this board"
        raise UsageError(f"{label} {wanted!r} {problem} (entries of {root}: {known})")
    return matches[0]


# ----------------------------------------------------------------------------- the grid options

DEFAULT_DATA = Path("data/prepared")
# benchmark.backbones.PREPROCESS_MODES, spelled out so that parsing arguments does not import torch
PREPROCESS_CHOICES = ("model", "protocol")


def chosen_board(args: argparse.Namespace) -> str:
    """``--board``; else the default demo board with ``--demo`` or when every prepared dataset under
    ``--data`` is demo data; else the default real-data board (defaults are marked ``"default": true``
    in their ``leaderboards/*/protocol.json``)."""
    import json

    from benchmark.board.store import default_board

    if args.board:
        return args.board
    manifests = [json.loads(path.read_text()) for path in sorted(Path(args.data).glob("*/manifest.json"))]
    return default_board(demo=args.demo or (bool(manifests) and all(m.get("demo") for m in manifests)))


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``run``, ``status`` and ``submit``: which part of the grid, where data and board are."""
    parser.add_argument("--tasks", type=comma_list, default=None, help="comma list (default: every task on the board that exists)")
    parser.add_argument("--datasets", type=comma_list, default=None, help="comma list (default: every prepared dataset of the board)")
    parser.add_argument("--fractions", type=comma_integers, default=None, help="label percentages, e.g. 1,10,100 (default: the board's)")
    parser.add_argument("--seeds", type=comma_integers_between(*SEED_RANGE), default=None,
                        help="head training seeds (default: the board's, or a task entry's own subset; a task that "
                             "trains nothing (zero-shot, retrieval) runs its one seed whatever --seeds says)")
    parser.add_argument("--draws", type=comma_integers, default=None, help="label-fraction draws for 1%%/10%% (default: the board's)")
    parser.add_argument("--mode", type=task_choices, default=None,
                        help="execution mode: MODE for every task declaring it, or TASK=MODE,... (default: each task's "
                             "default on the board)")
    parser.add_argument("--head", type=task_choices, default=None,
                        help="trainable head: HEAD for the task declaring it, or TASK=HEAD,... (default: the task's head "
                             "for the backbone family, e.g. detection: yolov3_mgca on ResNets, faster_rcnn on ViTs)")
    parser.add_argument("--preprocess", choices=PREPROCESS_CHOICES, default="model",
                        help="model: each backbone's own input size, channels, intensity range and mean/std (default); "
                             "protocol: the MGCA protocol's mean = std = 0.5 for every backbone (size and channels stay "
                             "the model's). Recorded in every run record and on the board entry")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"DATA_DIR holding prepared datasets (default {DEFAULT_DATA})")
    parser.add_argument("--board", default=None, help="board name under leaderboards/ or a folder (default: the default "
                        "real-data board, or the default demo board when --data holds only demo datasets)")
    parser.add_argument("--demo", action="store_true", help="use the default demo board (instead of naming it with --board)")
    parser.add_argument("--device", type=device_name, default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    parser.add_argument("--cell-timeout", type=positive_number, default=None, metavar="SECONDS",
                        help="kill a cell running longer and record it as failed (default: no limit)")
    parser.add_argument("--redo-invalid", action="store_true",
                        help="re-evaluate cells whose record fails verification (default: report them and keep them)")
    parser.add_argument("--in-process", action="store_true",
                        help="run cells in this process instead of one fresh child process per cell (debugging)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/work"), help="scratch space per cell (default runs/work)")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="feature cache (default runs/cache)")
    parser.add_argument("--keep-work", action="store_true", help="keep each cell's work folder after success")
    parser.add_argument("--plugins", type=importable_modules, default=(), help="modules to import first (they register extra tasks/backbones)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, in the runner and in every cell")


def grid_request(args: argparse.Namespace, backbones: tuple[BackboneChoice, ...]) -> GridRequest:
    """The grid the options of ``add_grid_arguments`` (and ``run --shard``) describe."""
    from benchmark.grid import GridRequest

    return GridRequest(
        backbones=backbones, data_dir=args.data, tasks=args.tasks, datasets=args.datasets, fractions=args.fractions,
        seeds=args.seeds, draws=args.draws, modes=args.mode, heads=args.head, work_dir=args.work_dir,
        cache_dir=args.cache_dir, keep_work=args.keep_work, device=args.device, isolate=not args.in_process,
        cell_timeout=args.cell_timeout, progress=not args.no_progress, redo_invalid=args.redo_invalid,
        preprocess=args.preprocess, shard=getattr(args, "shard_spec", None),
    )


class UsageError(Exception):
    """A grid that cannot run as asked; printed as one line, exit code 2."""


def execute(args: argparse.Namespace, backbones: tuple[BackboneChoice, ...]) -> tuple[Board, int]:
    """Run the grid and print its summary; returns (board, exit code)."""
    from benchmark.backbones import CheckpointError
    from benchmark.board.store import Board, BoardError
    from benchmark.data.prepared import DataError
    from benchmark.grid import GridError, run_grid
    from benchmark.registry import RegistryError, import_plugins

    import_plugins(args.plugins)
    try:
        board = Board(chosen_board(args))
        summary = run_grid(board, grid_request(args, backbones))
    except (GridError, BoardError, DataError, RegistryError, CheckpointError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    for line in summary.lines():
        print(line)
    return board, 1 if summary.failed else 0
