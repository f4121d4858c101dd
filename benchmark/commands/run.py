"""Verb ``run``: evaluate backbones on the board's grid (resumable; finished cells are skipped)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmark.cli import command

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


def _names(text: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in text.split(",") if item.strip())


def task_choices(text: str) -> dict[str | None, str]:
    """``paper`` (every task that declares it) or ``detection=paper,classification=cached``."""
    choices: dict[str | None, str] = {}
    for item in _names(text):
        task, _, value = item.rpartition("=")
        if not value or (task == "" and "=" in item):
            raise argparse.ArgumentTypeError(f"expected VALUE or TASK=VALUE items, got {item!r}")
        choices[task or None] = value
    return choices


def _numbers(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(item) for item in _names(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def add_grid_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments shared by ``run`` and ``submit``: which part of the grid, where data and board are."""
    parser.add_argument("--tasks", type=_names, default=None, help="comma list (default: every task on the board that exists)")
    parser.add_argument("--datasets", type=_names, default=None, help="comma list (default: every prepared dataset of the board)")
    parser.add_argument("--fractions", type=_numbers, default=None, help="label percentages, e.g. 1,10,100 (default: the board's)")
    parser.add_argument("--seeds", type=_numbers, default=None, help="head training seeds (default: the board's)")
    parser.add_argument("--draws", type=_numbers, default=None, help="label-fraction draws for 1%%/10%% (default: the board's)")
    parser.add_argument("--mode", type=task_choices, default=None,
                        help="execution mode: MODE for every task declaring it, or TASK=MODE,... (default: each task's "
                             "default on the board)")
    parser.add_argument("--head", type=task_choices, default=None,
                        help="trainable head: HEAD for the task declaring it, or TASK=HEAD,... (default: the task's head "
                             "for the backbone family, e.g. detection: yolov3 on ResNets, faster_rcnn on ViTs)")
    parser.add_argument("--preprocess", choices=PREPROCESS_CHOICES, default="model",
                        help="model: each backbone's own input size, channels, intensity range and mean/std (default); "
                             "protocol: the MGCA protocol's mean = std = 0.5 for every backbone (size and channels stay "
                             "the model's). Recorded in every run record and on the board entry")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"DATA_DIR holding prepared datasets (default {DEFAULT_DATA})")
    parser.add_argument("--board", default=None, help="board name under leaderboards/ or a folder (default: the default "
                        "real-data board, or the default demo board when --data holds only demo datasets)")
    parser.add_argument("--demo", action="store_true", help="use the default demo board (instead of naming it with --board)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when available)")
    parser.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS",
                        help="kill a cell running longer and record it as failed (default: no limit)")
    parser.add_argument("--redo-invalid", action="store_true",
                        help="re-evaluate cells whose record fails verification (default: report them and keep them)")
    parser.add_argument("--in-process", action="store_true",
                        help="run cells in this process instead of one fresh child process per cell (debugging)")
    parser.add_argument("--work-dir", type=Path, default=Path("runs/work"), help="scratch space per cell (default runs/work)")
    parser.add_argument("--cache-dir", type=Path, default=Path("runs/cache"), help="feature cache (default runs/cache)")
    parser.add_argument("--keep-work", action="store_true", help="keep each cell's work folder after success")
    parser.add_argument("--plugins", type=_names, default=(), help="modules to import first (they register extra tasks/backbones)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars, in the runner and in every cell")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-datasets", action="store_true",
                        help="print the datasets the board needs for the tasks that exist, then exit")
    parser.add_argument("--backbone", type=_names, default=None,
                        help="registered backbone name(s), comma-separated; or a new name with --checkpoint and --arch")
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights file (one backbone only)")
    parser.add_argument("--arch", default=None, help="architecture of --checkpoint (see `python -m benchmark backbones`)")
    parser.add_argument("--prefix", default=None, help="key prefix of the encoder in --checkpoint (default: detected)")
    parser.add_argument("--pretraining-data", type=_names, default=(), help="datasets the weights were pretrained on")
    add_grid_arguments(parser)


def grid_request(args: argparse.Namespace, backbones: tuple) -> "object":
    from benchmark.runner import GridRequest

    return GridRequest(
        backbones=backbones, data_dir=args.data, tasks=args.tasks, datasets=args.datasets, fractions=args.fractions,
        seeds=args.seeds, draws=args.draws, modes=args.mode, heads=args.head, work_dir=args.work_dir,
        cache_dir=args.cache_dir, keep_work=args.keep_work, device=args.device, isolate=not args.in_process,
        cell_timeout=args.cell_timeout, progress=not args.no_progress, redo_invalid=args.redo_invalid,
        preprocess=args.preprocess,
    )


class UsageError(Exception):
    """A grid that cannot run as asked; printed as one line, exit code 2."""


def execute(args: argparse.Namespace, backbones: tuple) -> tuple[object, int]:
    """Run the grid and print its summary; returns (board, exit code)."""
    from benchmark.backbones import CheckpointError
    from benchmark.board.store import Board, BoardError
    from benchmark.data.prepared import DataError
    from benchmark.registry import RegistryError
    from benchmark.runner import GridError, import_plugins, run_grid

    import_plugins(args.plugins)
    try:
        board = Board(chosen_board(args))
        summary = run_grid(board, grid_request(args, backbones))
    except (GridError, BoardError, DataError, RegistryError, CheckpointError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    for line in summary.lines():
        print(line)
    return board, 1 if summary.failed else 0


@command("run", "evaluate backbones on a board's grid (task × dataset × fraction × draw × seed), resumable", _configure)
def _run(args: argparse.Namespace) -> int:
    from benchmark.board.store import Board
    from benchmark.runner import BackboneChoice, datasets_to_evaluate, import_plugins

    if args.print_datasets:
        import_plugins(args.plugins)
        print(" ".join(datasets_to_evaluate(Board(chosen_board(args)))))
        return 0
    if not args.backbone:
        print("error: --backbone is required", file=sys.stderr)
        return 2
    if args.checkpoint and len(args.backbone) != 1:
        print("error: --checkpoint goes with exactly one --backbone", file=sys.stderr)
        return 2
    backbones = tuple(BackboneChoice(name, args.checkpoint, args.arch, args.prefix, args.pretraining_data)
                      for name in args.backbone)
    try:
        _, code = execute(args, backbones)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code
