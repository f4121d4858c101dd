"""Verb ``run``: evaluate backbones on the board's grid (resumable; finished cells are skipped)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from benchmark.commands import command, print_json
from benchmark.commands.arguments import (
    UsageError, add_grid_arguments, chosen_board, comma_list, execute, grid_request, positive_number,
)

if TYPE_CHECKING:
    from benchmark.executors import JobRequest


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


@command("run", "evaluate backbones on a board's grid (task × dataset × fraction × draw × seed), resumable", _configure)
def _run(args: argparse.Namespace) -> int:
    from benchmark.board.store import Board
    from benchmark.grid import BackboneChoice, datasets_to_evaluate
    from benchmark.records import RecordError, check_name
    from benchmark.registry import import_plugins

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
            return submit_jobs(args, backbones)
        _, code = execute(args, backbones)
    except UsageError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


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
    from benchmark.data.prepared import DataError
    from benchmark.datasources import size_sources
    from benchmark.grid import GridError
    from benchmark.grid.dry_run import dry_run as plan
    from benchmark.registry import RegistryError, import_plugins

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


def submit_jobs(args: argparse.Namespace, backbones: tuple) -> int:
    """``--executor``: submit the shards and return (slurm), or run them and wait (local)."""
    from benchmark.board.store import Board, BoardError
    from benchmark.executors import ExecutorError, GridJob, submit
    from benchmark.registry import import_plugins

    import_plugins(args.plugins)
    request = job_request(args)
    try:
        grid = GridJob(Board(chosen_board(args)).root, grid_request(args, backbones), tuple(args.plugins))
        jobs = submit(args.executor, grid, request)
    except (ExecutorError, BoardError) as error:
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
