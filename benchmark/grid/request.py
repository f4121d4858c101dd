"""What a grid evaluates: the backbones and the slice of the board's grid asked for, the cell a
plan resolves to, and the summary a run reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from benchmark.backbones import PreprocessMode, user_backbone_spec
from benchmark.backbones.zoo import BACKBONES, BackboneSpec
from benchmark.costs import SplitCounts
from benchmark.records import CellIdentity, RecordError, check_name
from benchmark.registry import did_you_mean
from benchmark.sharding import Shard
from tasks.registry import TaskInfo


class GridError(ValueError):
    """The grid cannot be planned as asked (unknown task, missing data, missing draw)."""


@dataclass(frozen=True)
class BackboneChoice:
    """A backbone to evaluate: a registry name, or a user checkpoint with its architecture."""

    name: str
    checkpoint: Path | None = None
    arch: str | None = None
    prefix: str | None = None
    pretraining_data: tuple[str, ...] = ()

    def spec(self) -> BackboneSpec:
        try:
            check_name(self.name, "backbone")  # it becomes the board entry's file name
        except RecordError as error:
            raise GridError(str(error)) from None
        if self.name in BACKBONES:
            spec = BACKBONES.get(self.name)
            if self.arch and self.arch != spec.arch:
                raise GridError(f"backbone {self.name!r} is registered with arch {spec.arch!r}, not {self.arch!r}")
            return spec
        if not (self.checkpoint and self.arch):
            raise GridError(
                f"{self.name!r} is not a registered backbone.{did_you_mean(self.name, BACKBONES.names())} "
                f"See `python -m benchmark backbones`; for your own weights pass --checkpoint PATH --arch ARCH"
            )
        return user_backbone_spec(self.name, self.arch, self.prefix, self.pretraining_data)

    @property
    def is_submission(self) -> bool:
        return self.name not in BACKBONES


@dataclass(frozen=True)
class GridRequest:
    """What to evaluate; ``None`` means "what the board's protocol says"."""

    backbones: tuple[BackboneChoice, ...]
    data_dir: Path
    tasks: tuple[str, ...] | None = None
    datasets: tuple[str, ...] | None = None
    fractions: tuple[int, ...] | None = None
    seeds: tuple[int, ...] | None = None
    draws: tuple[int, ...] | None = None
    modes: dict[str | None, str] | None = None  # {task: mode}; key None: every task declaring that mode
    heads: dict[str | None, str] | None = None  # {task: head}; default: the task's head for the backbone family
    work_dir: Path = Path("runs/work")
    cache_dir: Path = Path("runs/cache")
    keep_work: bool = False  # keep each cell's work folder after success (debugging)
    device: str = "auto"  # "auto" (cuda when available), "cpu", "cuda", "cuda:1", ...
    isolate: bool = True  # each cell in a fresh child process (False: in this process, for debugging)
    cell_timeout: float | None = None  # seconds; a cell running longer is killed and recorded as failed
    progress: bool = True
    redo_invalid: bool = False  # re-evaluate cells whose record fails verification (else: reported, kept)
    preprocess: PreprocessMode = "model"  # the backbone's own preprocessing, or the protocol's for all (recorded)
    shard: Shard | None = None  # evaluate only this shard of the planned grid (benchmark/sharding.py)


def resolve_device(device: str) -> str:
    """``auto`` -> cuda when available, else cpu; a GPU this machine lacks is a :class:`GridError`."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.partition(":")[2] or 0)
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if index >= count:
            raise GridError(f"--device {device}: this machine has {count} CUDA device(s)"
                            + (f" (cuda:0 to cuda:{count - 1})" if count else "; use --device cpu"))
    elif device != "cpu":
        raise GridError(f"--device {device!r}: expected auto, cpu, cuda or cuda:N")
    return device


@dataclass(frozen=True)
class Cell:
    """One planned cell: its identity, the prepared dataset it reads and the task that evaluates it."""

    identity: CellIdentity
    dataset_root: Path
    task: TaskInfo
    counts: SplitCounts  # image counts of its training subset, validation and test splits (cost model)


@dataclass
class GridSummary:
    """What a run of the grid did, cell by cell counted (printed by ``run`` and each cluster job)."""

    cells: int = 0
    done_before: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)  # "cell: reason (failure file)", one line each
    busy: int = 0  # claimed by another process at the time
    not_prepared: list[str] = field(default_factory=list)  # datasets skipped (not under data_dir)
    skipped: list[str] = field(default_factory=list)  # "task for backbone: why" (TaskInfo.requires unmet)
    invalid: list[str] = field(default_factory=list)  # records that fail verification, left as they are
    seconds: float = 0.0
    shard: str = ""  # "K/N" when the run evaluated one shard of the grid

    def lines(self) -> list[str]:
        lines = [f"{self.cells} cells{f' in shard {self.shard}' if self.shard else ''}: {self.ran} evaluated, {self.done_before} already done, "
                 f"{len(self.failed)} failed, {self.busy} busy elsewhere ({self.seconds:.1f} s)"]
        if self.invalid:
            lines.append(f"{len(self.invalid)} record(s) fail verification and were not re-evaluated "
                         f"(see `python -m benchmark verify`; re-run them with --redo-invalid):")
            lines += [f"invalid: {reason}" for reason in self.invalid]
        if self.not_prepared:
            lines.append(f"skipped, not prepared under the data folder: {', '.join(self.not_prepared)}")
        lines += [f"skipped: {reason}" for reason in self.skipped]
        lines += [f"failed: {key}" for key in self.failed]
        return lines
