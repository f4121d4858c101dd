"""Verb ``run``: evaluate backbones on the board's grid (resumable; finished cells are skipped)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.cli import (
    SEED_RANGE, comma_integers, comma_integers_between, comma_list, command, device_name, importable_modules,
    positive_number, task_choices,
)

if TYPE_CHECKING:
    from benchmark.executors import JobRequest

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
    """Arguments shared by ``run`` and ``submit``: which part of the grid, where data and board are."""
    parser.add_argument("--tasks", type=comma_list, default=None, help="comma list (default: every task on the board that exists)")
    parser.add_argument("--datasets", type=comma_list, default=None, help="comma list (default: every prepared dataset of the board)")
    parser.add_argument("--fractions", type=comma_integers, default=None, help="label percentages, e.g. 1,10,100 (default: the board's)")
    parser.add_argument("--seeds", type=comma_integers_between(*SEED_RANGE), default=None, help="head training seeds (default: the board's)")
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


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--print-datasets", action="store_true",
                        help="print the datasets the board needs for the tasks that exist, then exit")
    parser.add_argument("--backbone", type=comma_list, default=None,
                        help="registered backbone name(s), comma-separated; or a new name with --checkpoint and --arch")
    parser.add_argument("--checkpoint", type=Path, default=None, help="weights file (one backbone only)")
    parser.add_argument("--arch", default=None, help="architecture of --checkpoint (see `python -m benchmark backbones`)")
    parser.add_argument("--prefix", default=None, help="key prefix of the encoder in --checkpoint (default: detected)")
    parser.add_argument("--pretraining-data", type=comma_list, default=(), help="datasets the weights were pretrained on")
    add_grid_arguments(parser)
    cluster = parser.add_argument_group("sharding and cluster jobs (README: Running on a cluster)")
    cluster.add_argument("--shard", default=None, metavar="K/N",
                         help="evaluate only shard K of N (1 <= K <= N): N processes with the same arguments and one "
                              "board folder evaluate every cell once, no lock needed")
    cluster.add_argument("--executor", default=None, help="submit the grid as --jobs shards: slurm (one job array) or "
                                                          "local (local processes, through submitit)")
    cluster.add_argument("--jobs", type=int, default=None, help="number of jobs (shards) for --executor (default 1)")
    cluster.add_argument("--log-dir", type=Path, default=None, help="where the jobs' logs go (default runs/jobs)")
    cluster.add_argument("--slurm-partition", default=None, help="SLURM partition")
    cluster.add_argument("--gpus-per-job", type=int, default=0,
                         help="GPUs per job; G > 1 runs G shards per job, one per GPU (default 0)")
    cluster.add_argument("--cpus-per-job", type=int, default=None, help="CPUs per job")
    cluster.add_argument("--time", default=None, metavar="HH:MM:SS", help="time limit of each job")
    cluster.add_argument("--slurm-arg", action="append", default=[], metavar="KEY=VALUE",
                         help="extra sbatch option, e.g. account=abc or qos=high (repeatable)")
    plan = parser.add_argument_group("planning")
    plan.add_argument("--dry-run", action="store_true",
                      help="print the plan (cells, done, encoder passes, training steps, cache bytes, time per shard) and exit")
    plan.add_argument("--format", choices=("text", "json"), default="text", help="--dry-run output format")
    plan.add_argument("--throughput", type=positive_number, default=None, metavar="IMAGES_PER_S",
                      help="encoder images per second for the time estimate (default: measured on this machine)")
    plan.add_argument("--device-class", default=None, metavar="NAME",
                      help="time estimate from the speeds measured on this device class (benchmark/device_costs/; "
                           "benchmarks/bench_costs.py measures one)")
    plan.add_argument("--from-splits", action="store_true",
                      help="plan from the split sizes shipped with the package instead of prepared data (--dry-run)")
    plan.add_argument("--split-sizes", type=Path, default=None,
                      help="JSON {dataset: {\"partition/file.txt\": count}} for splits not shipped (with --from-splits)")


def grid_request(args: argparse.Namespace, backbones: tuple) -> "object":
    from benchmark.runner import GridRequest

    return GridRequest(
        backbones=backbones, data_dir=args.data, tasks=args.tasks, datasets=args.datasets, fractions=args.fractions,
        seeds=args.seeds, draws=args.draws, modes=args.mode, heads=args.head, work_dir=args.work_dir,
        cache_dir=args.cache_dir, keep_work=args.keep_work, device=args.device, isolate=not args.in_process,
        cell_timeout=args.cell_timeout, progress=not args.no_progress, redo_invalid=args.redo_invalid,
        preprocess=args.preprocess, shard=getattr(args, "shard_spec", None),
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
    from benchmark.records import RecordError, check_name
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
    try:
        for name in args.backbone:
            check_name(name, "--backbone")
    except RecordError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    backbones = tuple(BackboneChoice(name, args.checkpoint, args.arch, args.prefix, args.pretraining_data)
                      for name in args.backbone)
    try:
        check_cluster_arguments(args)
        if args.dry_run:
            return dry_run(args, backbones)
        if args.executor:
            return submit_jobs(args)
        _, code = execute(args, backbones)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


# Options that say how to distribute the grid; a job's own command line leaves them out.
_JOB_OPTIONS = {"--executor": 1, "--jobs": 1, "--log-dir": 1, "--slurm-partition": 1, "--gpus-per-job": 1,
                "--cpus-per-job": 1, "--time": 1, "--slurm-arg": 1, "--shard": 1, "--device": 1}


def shard_argv(argv: list[str]) -> list[str]:
    """``argv`` without the job options (each job adds its own --shard and --device)."""
    kept, skip = [], 0
    for item in argv:
        if skip:
            skip -= 1
            continue
        name = item.split("=", 1)[0]
        if name in _JOB_OPTIONS:
            skip = 0 if "=" in item else _JOB_OPTIONS[name]
            continue
        kept.append(item)
    return kept


def job_request(args: argparse.Namespace) -> JobRequest:
    from benchmark.executors import DEFAULT_LOG_DIR, JobRequest

    extra = {}
    for item in args.slurm_arg:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise UsageError(f"--slurm-arg {item!r}: expected KEY=VALUE, e.g. account=abc")
        extra[key.lstrip("-")] = value
    return JobRequest(jobs=args.jobs or 1, log_dir=args.log_dir or DEFAULT_LOG_DIR, gpus_per_job=args.gpus_per_job,
                      cpus_per_job=args.cpus_per_job, time=args.time, partition=args.slurm_partition, slurm_args=extra)


def check_cluster_arguments(args: argparse.Namespace) -> None:
    """Sharding and executor options, checked before anything is built (one error line, exit 2)."""
    import os

    from benchmark.board.store import Board, BoardError
    from benchmark.executors import EXECUTORS, SLURM_NEEDS_TIME, ExecutorError, timeout_minutes
    from benchmark.sharding import Shard, ShardError

    try:
        args.shard_spec = Shard.parse(args.shard) if args.shard else None
        if args.executor is not None and args.executor not in EXECUTORS:
            raise UsageError(f"--executor {args.executor!r}: unknown executor; choose one of {EXECUTORS.names()}")
        if args.jobs is not None and args.jobs < 1:
            raise UsageError(f"--jobs {args.jobs}: expected at least 1 job")
        if args.gpus_per_job < 0 or (args.cpus_per_job is not None and args.cpus_per_job < 1):
            raise UsageError("--gpus-per-job must be >= 0 and --cpus-per-job >= 1")
        if args.jobs is not None and not (args.executor or args.dry_run):
            raise UsageError("--jobs goes with --executor slurm|local (or --dry-run, to see the shards' times)")
        if args.executor and args.shard_spec:
            raise UsageError("--shard and --executor exclude each other: the executor gives each job its shard")
        if args.time:
            timeout_minutes(args.time)
        if args.executor == "slurm" and not args.time:
            raise UsageError(SLURM_NEEDS_TIME)
        job_request(args)
        if not args.dry_run:
            root = Board(chosen_board(args)).root
            if not os.access(root, os.W_OK | os.X_OK):
                raise UsageError(f"{root}: the board folder is not writable; records cannot be stored there")
    except (ShardError, ExecutorError, BoardError) as error:
        raise UsageError(str(error)) from None


def dry_run(args: argparse.Namespace, backbones: tuple) -> int:
    """``--dry-run``: the plan, as text or JSON; shards from --shard N, --jobs (× GPUs per job) or 1."""
    from benchmark.backbones import CheckpointError
    from benchmark.board.store import Board, BoardError
    from benchmark.cli import print_json
    from benchmark.data.prepared import DataError
    from benchmark.datasources import size_sources
    from benchmark.planning import dry_run as plan
    from benchmark.registry import RegistryError
    from benchmark.runner import GridError, import_plugins

    import_plugins(args.plugins)
    shards = args.shard_spec.count if args.shard_spec else job_request(args).shards
    try:
        board = Board(chosen_board(args))
        sources = size_sources(args.data, args.split_sizes) if args.from_splits else None
        if args.throughput and args.device_class:
            raise UsageError("--throughput and --device-class both set the time estimate: give one")
        result = plan(board, grid_request(args, backbones), shards, args.throughput, sources, args.device_class)
    except (GridError, BoardError, DataError, RegistryError, CheckpointError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if args.format == "json":
        print_json(result.to_dict())
    else:
        print("\n".join(result.lines()))
    return 0


def submit_jobs(args: argparse.Namespace) -> int:
    """``--executor``: submit the shards and return (slurm), or run them and wait (local)."""
    from benchmark.executors import ExecutorError, submit

    request = job_request(args)
    try:
        jobs = submit(args.executor, shard_argv(args.argv), request, args.device)
    except ExecutorError as error:
        raise UsageError(str(error)) from None
    print(f"submitted {len(jobs)} {args.executor} job(s) for {request.shards} shard(s): "
          + " ".join(str(job.job_id) for job in jobs))
    print(f"logs: {request.log_dir.resolve()}/<job id>/")
    if args.executor != "local":
        print(f"progress: python -m benchmark status --board {chosen_board(args)}")
        return 0
    codes = []
    for job in jobs:  # local jobs live as long as this process: wait for them
        try:
            codes.append(job.result())
        except Exception as error:  # noqa: BLE001 - a failed shard is reported; its log says why
            print(f"job {job.job_id} failed ({str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}); "
                  f"log: {job.paths.stderr}", file=sys.stderr)
            codes.append(1)
    return max(codes)
