"""Running the N shards of a grid as jobs of a cluster scheduler, through ``submitit``.

``run --executor slurm --jobs N`` parses its command line once into a :class:`GridJob` (the
board, the :class:`~benchmark.grid.GridRequest`, the plugins) and submits one SLURM job array of
N tasks; array task k receives that job, pickled, and evaluates shard k+1/N of it with
:func:`benchmark.grid.run_grid` (:func:`run_shard`). ``--executor local`` runs the same N shards
as local processes (submitit's ``LocalExecutor``), each pinned to its own GPUs when it asks for
some. Nothing here schedules cells: each shard plans the same grid, takes its part
(``benchmark/sharding.py``) and skips what is on the board, so a shard that dies is simply
submitted again.

A job given G > 1 GPUs runs G tasks (one per GPU, ``--gpus-per-task 1``), each one shard of
``N × G``: a cell runs on one GPU, so G GPUs evaluate G cells at a time.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.offline import stay_offline
from benchmark.registry import Registry, import_plugins
from benchmark.sharding import Shard

if TYPE_CHECKING:
    from benchmark.grid import GridRequest

DEFAULT_LOG_DIR = Path("runs/jobs")
NO_LIMIT_MINUTES = 365 * 24 * 60  # a local job's time limit when --time is not given
SLURM_NEEDS_TIME = ("--executor slurm needs --time HH:MM:SS, the jobs' time limit (a shard that runs out of time is "
                    "simply submitted again: finished cells are kept)")


class ExecutorError(ValueError):
    """Jobs that cannot be submitted as asked (no sbatch on PATH, a malformed --slurm-arg)."""


@dataclass(frozen=True)
class GridJob:
    """The grid whose shards the jobs evaluate; picklable, so that each job receives it whole."""

    board: Path  # the board's folder
    request: GridRequest  # without a shard: each job (or task of a job) evaluates its own, on its own device
    plugins: tuple[str, ...] = ()  # modules registering extra tasks or backbones, imported first in each job


@dataclass(frozen=True)
class JobRequest:
    """How the shards run: how many jobs, their resources, where their logs go."""

    jobs: int
    log_dir: Path = DEFAULT_LOG_DIR
    gpus_per_job: int = 0
    cpus_per_job: int | None = None
    time: str | None = None  # HH:MM:SS or D-HH:MM:SS
    partition: str | None = None
    slurm_args: dict[str, str] = field(default_factory=dict)  # extra #SBATCH --KEY=VALUE lines

    @property
    def tasks_per_job(self) -> int:
        return max(1, self.gpus_per_job)

    @property
    def shards(self) -> int:
        return self.jobs * self.tasks_per_job


def timeout_minutes(text: str) -> int:
    """``HH:MM:SS`` (or ``D-HH:MM:SS``) as whole minutes, rounded up."""
    days, _, clock = text.rpartition("-")
    parts = clock.split(":")
    try:
        if len(parts) != 3 or (days and int(days) < 0):
            raise ValueError
        hours, minutes, seconds = (int(part) for part in parts)
        total = (int(days or 0) * 24 + hours) * 60 + minutes + (1 if seconds else 0)
        if total <= 0 or min(hours, minutes, seconds) < 0:
            raise ValueError
    except ValueError:
        raise ExecutorError(f"--time {text!r}: expected HH:MM:SS or D-HH:MM:SS, more than zero") from None
    return total


def shard_device(device: str, tasks: int, local_rank: int, gpu_count: int) -> str:
    """The device of one task of a job: ``auto`` with several tasks pins task r to its GPU (its only
    visible one under SLURM's one-GPU-per-task, or GPU r when the task sees all of the job's)."""
    if device != "auto" or tasks == 1 or gpu_count == 0:
        return device
    return "cuda:0" if gpu_count == 1 else f"cuda:{local_rank % gpu_count}"


def run_shard(grid: GridJob, job_index: int, jobs: int, tasks: int) -> int:
    """Body of one job (or one of its tasks): shard K of N of ``grid``, its summary printed.
    Returns 1 when some cells failed (recorded on the board), else 0."""
    import submitit
    import torch

    from benchmark.board.store import Board
    from benchmark.grid import run_grid

    stay_offline()  # a cluster job need not inherit the environment of the shell that submitted it
    import_plugins(grid.plugins)
    rank = submitit.JobEnvironment().local_rank if tasks > 1 else 0
    shard = Shard(job_index * tasks + rank + 1, jobs * tasks)
    pinned = shard_device(grid.request.device, tasks, rank, torch.cuda.device_count())
    print(f"shard {shard} on {pinned}", flush=True)
    summary = run_grid(Board(grid.board), replace(grid.request, shard=shard, device=pinned))
    for line in summary.lines():
        print(line)
    return 1 if summary.failed else 0


def _slurm(request: JobRequest, preview: bool = False) -> Any:
    import submitit

    class Preview(submitit.SlurmExecutor):
        """Builds the sbatch file off a cluster (submitit checks for srun when constructed)."""

        @classmethod
        def affinity(cls) -> int:
            return 1

    executor = (Preview if preview else submitit.SlurmExecutor)(folder=request.log_dir / "%j")
    parameters: dict[str, Any] = {"job_name": "mgca-bench", "array_parallelism": request.jobs,
                                  "additional_parameters": dict(request.slurm_args)}
    if not request.time:  # submitit would write its own default of 5 minutes
        raise ExecutorError(SLURM_NEEDS_TIME)
    parameters["time"] = timeout_minutes(request.time)
    if request.partition:
        parameters["partition"] = request.partition
    if request.gpus_per_job:
        parameters.update(ntasks_per_node=request.tasks_per_job, gpus_per_task=1)
    if request.cpus_per_job:
        parameters["cpus_per_task"] = max(1, request.cpus_per_job // request.tasks_per_job)
    executor.update_parameters(**parameters)
    return executor


def _local(request: JobRequest) -> Any:
    import submitit

    executor = submitit.LocalExecutor(folder=request.log_dir / "%j")
    # submitit kills a local job after 2 minutes unless told otherwise: no limit without --time
    parameters: dict[str, Any] = {"timeout_min": timeout_minutes(request.time) if request.time else NO_LIMIT_MINUTES}
    if request.gpus_per_job:
        parameters.update(gpus_per_node=request.gpus_per_job, tasks_per_node=request.tasks_per_job)
    executor.update_parameters(**parameters)
    return executor


@dataclass(frozen=True)
class Executor:
    build: Callable[[JobRequest], Any]  # a configured submitit executor
    array: bool  # one job array (SLURM) or one job per shard, each with its own GPUs (local)


EXECUTORS: Registry[Executor] = Registry("executor")
EXECUTORS.add("slurm", Executor(_slurm, array=True))
EXECUTORS.add("local", Executor(_local, array=False))


def slurm_script(request: JobRequest) -> str:
    """The sbatch file ``--executor slurm`` submits for ``request`` (written without submitting:
    submitit's own template, as filled for a job array of ``request.jobs`` tasks)."""
    executor = _slurm(request, preview=True)
    executor.parameters["map_count"] = request.jobs
    return executor._make_submission_file_text(executor._submitit_command_str, "preview")  # noqa: SLF001


def submit(executor_name: str, grid: GridJob, request: JobRequest) -> list[Any]:
    """Submit the shards of ``grid``; returns the submitit jobs (they run on their own)."""
    chosen = EXECUTORS.get(executor_name)
    if executor_name == "slurm" and shutil.which("sbatch") is None:
        raise ExecutorError("sbatch is not on PATH: --executor slurm submits from a SLURM login node "
                            "(use --executor local on a single machine)")
    executor = chosen.build(request)
    args = [(grid, job, request.jobs, request.tasks_per_job) for job in range(request.jobs)]
    if chosen.array:
        return executor.map_array(run_shard, *zip(*args))
    jobs = []
    for job_args in args:
        if request.gpus_per_job:  # each local job its own GPUs
            first = job_args[1] * request.gpus_per_job
            executor.update_parameters(visible_gpus=list(range(first, first + request.gpus_per_job)))
        jobs.append(executor.submit(run_shard, *job_args))
    return jobs
