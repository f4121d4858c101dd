"""The task contract: what a task family declares, what one cell receives, what it returns.

A task family is one package ``tasks/<name>/`` plus one scorer module in ``benchmark/scoring/``.
The package's ``__init__`` registers a :class:`TaskInfo` when it is imported; it must stay
light (no mmdet/mmseg import): the adapter is named as ``"module:function"`` and imported only
in the process that runs a cell. :func:`get_task` imports one task package on demand.

The runner plans cells from the declarations (datasets with the partition each reads, whose
headline metric the task's scorer declares; heads with a default per backbone family; modes with
a default; the cost and epoch budget the planner and the shards use; the board overrides the task
accepts), calls the adapter with a :class:`TaskCell` in a fresh child process, and scores the
files of the returned :class:`TaskResult` with the task's registered scorer, so the board's
number is by construction the number ``python -m benchmark score <task>`` prints.

A board names tasks but imports none; :func:`check_board` holds a board's task entries against
these declarations (the scorer it pins, its datasets, its overrides) when a grid is planned and
when a board is verified.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tasks
from benchmark.board.protocol import BoardError, BoardProtocol
from benchmark.costs import TaskCost
from benchmark.heads.outcome import TrainingOutcome
from benchmark.registry import Registry, RegistryError
from benchmark.scoring import MetricSpec, headline_spec

if TYPE_CHECKING:  # the contract names these types without importing torch
    from benchmark.backbones import LoadedBackbone
    from benchmark.data.prepared import PreparedDataset


class TaskDeclarationError(ValueError):
    """A task's declaration is inconsistent (a default that is not declared, ...)."""


# The board's override vocabulary is one for every task: this key is each task's epoch budget
# (the cost model reads it), the others name fields of the task's protocol object.
EPOCHS_OVERRIDE = "max_epochs"


@dataclass(frozen=True)
class TaskDataset:
    """One dataset a task evaluates: which prepared partition it reads (its headline metric is the
    scorer's: :meth:`TaskInfo.headline`)."""

    partition: str  # split partition of the prepared dataset (benchmark/data/prepared.py)


@dataclass(frozen=True)
class TaskInfo:
    """A task family's declaration: everything the runner and the board need, nothing implicit."""

    name: str
    title: str
    version: int  # bumped on any change that can move a number (changelog beside the task)
    datasets: Mapping[str, TaskDataset]
    heads: tuple[str, ...]  # trainable heads the task can put on a frozen backbone
    default_heads: Mapping[str, str]  # backbone family ("vit", "resnet", ...) -> head; key "*" for any
    modes: tuple[str, ...]  # execution modes, e.g. ("cached", "paper")
    default_mode: str
    adapter: str | Callable[[TaskCell], TaskResult]  # "module:function", imported in the cell's process
    # key of benchmark.scoring.SCORERS: scores the result files, per image for paired tests, and declares
    # each dataset's headline metric with its spec; a board pins it (protocol.json tasks.<name>.scorer)
    scorer: str
    # What one cell costs (batch size, epoch budget, head cost, cache format), from the task's protocol
    # object: the unit of sharding and of ``run --dry-run`` (benchmark/costs.py). Required.
    cost: TaskCost | None = None
    # The board overrides (``TaskCell.overrides``) the task accepts, in the one vocabulary above;
    # a board naming another key is refused by check_board. Must include EPOCHS_OVERRIDE.
    override_keys: tuple[str, ...] = (EPOCHS_OVERRIDE,)
    # Predictions too large for git (segmentation probability maps) go to the artifact store
    # outside the board folder, named by sha256 in the record; small ones stay with the board.
    large_artifacts: bool = False
    # Overrides in the board's vocabulary (``TaskCell.overrides``) that shrink a cell to seconds on
    # tiny demo data: what the device self-test (benchmark/selftest.py) runs every head and mode with.
    smoke: Mapping[str, Any] = field(default_factory=dict)
    # What a backbone must bring besides an image encoder (a text tower, say): "module:function" taking the
    # LoadedBackbone and giving why it cannot run the task, or None when it can. Asked when a cell is planned
    # (imported then, so keep it light); a backbone it refuses gets no cell of the task: the grid and the
    # self-test report it as skipped, with that reason.
    requires: str | Callable[[LoadedBackbone], str | None] | None = None
    # The side of the images the task feeds a backbone's encoder: "module:function" taking the LoadedBackbone,
    # the prepared images' side, the head and the board's overrides, giving the side in pixels (the task's own
    # geometry rule: the linear probe feeds ResNet-50 at 299 under the MGCA protocol, B20). None: the
    # backbone's own input size. ``run --dry-run`` measures each encoder at this size.
    encoder_input: str | Callable[[LoadedBackbone, int, str, Mapping[str, Any]], int] | None = None
    # Whether a cell's outcome depends on its seed (``TaskCell.seed``: a head's training). False for a task that
    # trains nothing (zero-shot): a board plans it with one seed (check_board) and ``--seeds`` does not apply.
    seeded: bool = True

    def __post_init__(self) -> None:
        if self.default_mode not in self.modes:
            raise TaskDeclarationError(f"task {self.name!r}: default mode {self.default_mode!r} not in {self.modes}")
        unknown = sorted(set(self.default_heads.values()) - set(self.heads))
        if unknown:
            raise TaskDeclarationError(f"task {self.name!r}: default heads {unknown} not in {self.heads}")
        if not isinstance(self.cost, TaskCost):
            raise TaskDeclarationError(f"task {self.name!r} declares no cost (a benchmark.costs.TaskCost from its protocol): "
                                       "the planner and the shards need one")
        if EPOCHS_OVERRIDE not in self.override_keys:
            raise TaskDeclarationError(f"task {self.name!r}: its override keys {list(self.override_keys)} lack the "
                                       f"epoch budget {EPOCHS_OVERRIDE!r}")
        self.check_overrides(self.smoke, "its smoke overrides")

    def check_overrides(self, overrides: Mapping[str, Any], where: str) -> None:
        """Refuse an override key the task does not accept, naming it and the known ones."""
        unknown = sorted(set(overrides) - set(self.override_keys))
        if unknown:
            raise TaskDeclarationError(f"{where}: task {self.name!r} has no override {', '.join(map(repr, unknown))}; "
                                       f"it accepts {sorted(self.override_keys)}")

    def epochs(self, overrides: Mapping[str, Any]) -> int:
        """The epoch budget of a cell under a board's ``overrides`` (the cost model's bound)."""
        assert self.cost is not None  # __post_init__
        return int(overrides.get(EPOCHS_OVERRIDE, self.cost.max_epochs))

    def default_head(self, family: str) -> str:
        """The head a backbone of ``family`` gets when the user names none."""
        head = self.default_heads.get(family, self.default_heads.get("*"))
        if head is None:
            raise TaskDeclarationError(f"task {self.name!r} declares no default head for {family!r} backbones; "
                                       f"choose one of {self.heads} with --head")
        return head

    def dataset(self, name: str) -> TaskDataset:
        try:
            return self.datasets[name]
        except KeyError:
            raise TaskDeclarationError(f"task {self.name!r} has no dataset {name!r}; it has {sorted(self.datasets)}") from None

    def headline(self, dataset: str) -> MetricSpec:
        """The spec of ``dataset``'s headline metric, as the task's scorer declares it (the record's
        ``headline_metric``, the number the board shows)."""
        self.dataset(dataset)
        try:
            return headline_spec(self.scorer, dataset)
        except RegistryError as error:
            raise TaskDeclarationError(f"task {self.name!r} declares dataset {dataset!r}, but its scorer {self.scorer!r} "
                                       f"gives it no declared headline metric: {error}") from None

    def unmet_requirement(self, backbone: LoadedBackbone) -> str | None:
        """Why ``backbone`` cannot run this task (its ``requires``), or None when it can."""
        return None if self.requires is None else resolve(self.requires)(backbone)

    def encoder_input_size(self, backbone: LoadedBackbone, cache_size: int, head: str,
                           overrides: Mapping[str, Any] | None = None) -> int:
        """The side of the images a cell of ``head`` feeds ``backbone``'s encoder on data prepared at
        ``cache_size`` px (its ``encoder_input``; the backbone's own input size when it declares none)."""
        if self.encoder_input is None:
            return backbone.preprocessing.input_size
        return int(resolve(self.encoder_input)(backbone, cache_size, head, overrides or {}))

    def run(self, cell: TaskCell) -> TaskResult:
        """Run the adapter on one cell (imports it first when it is named as a string)."""
        return resolve(self.adapter)(cell)


@dataclass(frozen=True)
class TaskCell:
    """What an adapter receives: one fully resolved cell of the grid."""

    backbone: LoadedBackbone
    dataset: PreparedDataset
    partition: str
    head: str
    fraction: int  # percent of the training split
    draw: int  # which label-fraction subset (0 at 100 %)
    seed: int  # training seed of the head
    mode: str
    work_dir: Path  # the cell's scratch folder: checkpoints, logs, result files; resumable
    cache_dir: Path  # content-keyed feature cache shared by cells
    device: str = "cpu"  # "cpu", "cuda", "cuda:0", ...
    progress: bool = True  # progress bars; off for non-interactive logs
    # Protocol changes the board declares for this task (a demo's epoch budget), in the task's own
    # vocabulary; recorded in every record's config.
    overrides: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class TaskResult:
    """What an adapter returns. The runner scores the files; the adapter reports no metric."""

    predictions_file: Path  # per-image outputs on the test split (format: the task's scorer module)
    targets_file: Path  # ground truth of the same test images
    split_fingerprints: dict[str, str]  # split name -> sha256 of its ID list; "test" is required
    config: dict[str, Any]  # the resolved configuration (optimiser, epochs, input size); the runner adds the cell's identity
    timings: dict[str, float] = field(default_factory=dict)  # seconds per step
    training: TrainingOutcome | None = None  # best epoch, epochs run, every epoch; None: the task trains no head
    notes: list[str] = field(default_factory=list)  # deviations from the reference, facts worth showing beside the number
    warnings: list[str] = field(default_factory=list)  # things that went wrong but did not stop the run

    def __post_init__(self) -> None:
        if self.training is not None and not isinstance(self.training, TrainingOutcome):
            raise TypeError(f"TaskResult.training is a {type(self.training).__name__}: it must be a "
                            "benchmark.heads.outcome.TrainingOutcome, or None when the task trains no head")


def resolve(target: str | Callable[..., Any]) -> Any:
    """A ``"package.module:attribute"`` reference, imported; callables are returned as they are."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


TASKS: Registry[TaskInfo] = Registry("task")


def task_packages() -> list[str]:
    return sorted(module.name for module in pkgutil.iter_modules(tasks.__path__) if module.ispkg)


def get_task(name: str) -> TaskInfo:
    """The registered task ``name`` (its package is imported first when it exists)."""
    if name in task_packages():
        importlib.import_module(f"tasks.{name}")
    return TASKS.get(name)


def all_tasks() -> list[TaskInfo]:
    """Every task, importing every task package."""
    for package in task_packages():
        importlib.import_module(f"tasks.{package}")
    return [info for _, info in TASKS.items()]


def check_board(protocol: BoardProtocol) -> None:
    """Refuse a board whose task entries disagree with the registered tasks' declarations: the scorer
    it pins, datasets the task does not declare or gives no headline metric, overrides outside the
    task's vocabulary, several seeds for a task that uses none (each error names the entry, the key
    and what the task declares). A task the board names that is not registered is not checked: the
    planner refuses it when asked for it."""
    for name, board_task in protocol.tasks.items():
        if name not in TASKS and name not in task_packages():
            continue
        info, where = get_task(name), f"board {protocol.board!r}: tasks.{name}"
        if board_task.scorer != info.scorer:
            raise BoardError(f"{where}.scorer is {board_task.scorer!r}, but task {name!r} is scored by {info.scorer!r}; "
                             f"a board pins the task's scorer")
        for dataset in board_task.datasets:
            try:
                info.headline(dataset)  # the dataset is declared and its scorer gives it a headline metric
            except TaskDeclarationError as error:
                raise BoardError(f"{where}.datasets.{dataset}: {error}") from None
        try:
            info.check_overrides(board_task.overrides, f"{where}.overrides")
        except TaskDeclarationError as error:
            raise BoardError(str(error)) from None
        seeds = board_task.seeds or protocol.seeds
        if not info.seeded and len(seeds) > 1:
            raise BoardError(f"{where} plans seeds {list(seeds)}, but task {name!r} uses no seed (it trains nothing): "
                             f"{len(seeds)} identical cells per column; give the entry one seed, \"seeds\": [{seeds[0]}]")
