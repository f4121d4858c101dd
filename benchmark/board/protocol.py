"""A board's protocol as data: the schema of ``leaderboards/<board>/protocol.json``, read strictly.

The protocol says what a board evaluates (tasks × datasets × fractions, seeds and draws), how it
labels its columns, which task version and which scorer it pins per task, how entries are
compared and which ground truth it pins. It names tasks but imports none: each column's metric
(its range, direction and display scale) is the headline metric of the dataset as the pinned
scorer declares it (``benchmark.scoring.headline_spec``). Whether a task's declaration agrees
with the board (its scorer, datasets and overrides) is checked where tasks are known:
``tasks.registry.check_board``, called when a grid is planned and by ``verify``.

The on-disk store of results, entries and artifacts is ``benchmark/board/store.py``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.registry import RegistryError
from benchmark.scoring import MetricSpec, headline_spec


class BoardError(ValueError):
    """A board is missing, or a record does not belong on it; the message says what to do."""


@dataclass(frozen=True)
class BoardTask:
    """How a board evaluates one task: its version and scorer pins, modes, heads and datasets.

    Which partition a dataset reads is the task's fact (``TaskInfo.datasets``), which metric is its
    headline the scorer's; the board says which datasets it shows and how they are labelled.
    """

    version: int  # the TaskInfo.version whose results this board holds
    scorer: str  # the key of benchmark.scoring.SCORERS that scores the task (TaskInfo.scorer)
    modes: tuple[str, ...]  # modes the board accepts for this task
    default_mode: str  # the mode its tables show and ``run`` uses unless told otherwise
    heads: tuple[str, ...]  # heads the board accepts (the backbone family picks the default)
    datasets: dict[str, str]  # dataset -> column label
    fractions: tuple[int, ...] | None = None  # this task's label fractions when not the board's (a demo's budget)
    draws: tuple[int, ...] | None = None  # this task's label-fraction draws when not the board's (a demo's budget)
    # this task's head training seeds when not all the board's (a subset): one for a task that trains nothing
    seeds: tuple[int, ...] | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # protocol changes handed to the task (a demo's budget)

    @classmethod
    def from_dict(cls, data: Any, where: str, board_seeds: tuple[int, ...]) -> BoardTask:
        """The task entry at ``where`` (the board file and key); ``board_seeds``: the board's seeds, of
        which the entry's own ``seeds`` must be a subset."""
        _strict_keys(data, {"version", "scorer", "modes", "default_mode", "heads", "datasets"},
                     {"fractions", "draws", "seeds", "overrides"}, where)
        task = cls(version=data["version"], scorer=data["scorer"], modes=tuple(data["modes"]),
                   default_mode=data["default_mode"], heads=tuple(data["heads"]),
                   datasets={ds: item["label"] for ds, item in data["datasets"].items()},
                   fractions=tuple(data["fractions"]) if "fractions" in data else None,
                   draws=tuple(data["draws"]) if "draws" in data else None,
                   seeds=_task_seeds(data["seeds"], board_seeds, f"{where}.seeds") if "seeds" in data else None,
                   overrides=dict(data.get("overrides", {})))
        if not isinstance(task.version, int) or isinstance(task.version, bool):
            raise BoardError(f"{where}.version={task.version!r}: expected the task version as an integer")
        if not isinstance(task.scorer, str) or not task.scorer:
            raise BoardError(f"{where}.scorer={task.scorer!r}: expected the name of the task's scorer")
        if task.default_mode not in task.modes:
            raise BoardError(f"{where}.default_mode={task.default_mode!r} is not among its modes {list(task.modes)}")
        for ds, item in data["datasets"].items():
            _strict_keys(item, {"label"}, set(), f"{where}.datasets.{ds}")
        return task


def _task_seeds(seeds: Any, board_seeds: tuple[int, ...], where: str) -> tuple[int, ...]:
    """A task entry's ``seeds``: distinct seeds of the board, at least one (a task runs no seed the
    board does not list, so its columns aggregate over the seeds the board declares)."""
    if not (isinstance(seeds, list) and seeds and all(isinstance(seed, int) and not isinstance(seed, bool) for seed in seeds)
            and len(set(seeds)) == len(seeds) and set(seeds) <= set(board_seeds)):
        raise BoardError(f"{where}={seeds!r}: expected a non-empty list of distinct seeds among the board's "
                         f"seeds {list(board_seeds)}")
    return tuple(seeds)


@dataclass(frozen=True)
class ComparisonSettings:
    correction: Literal["holm", "bh", "none"] = "holm"
    alpha: float = 0.05
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0


_PROTOCOL_REQUIRED = {"board", "protocol_version", "preparation_version", "title", "description", "demo", "fractions",
                      "seeds", "draws", "tasks", "comparison"}
_PROTOCOL_OPTIONAL = {"default", "test_set_sources", "source_aliases", "changelog", "target_pins"}


def _strict_keys(data: Any, required: set[str], optional: set[str], where: str) -> None:
    if not isinstance(data, dict):
        raise BoardError(f"{where}: expected an object, got {type(data).__name__}")
    missing, unknown = sorted(required - set(data)), sorted(set(data) - required - optional)
    if missing or unknown:
        raise BoardError(f"{where}: " + "; ".join(
            part for part in (f"missing key(s) {missing}" if missing else "",
                              f"unknown key(s) {unknown}" if unknown else "") if part))


def read_pins(data: Any, where: str) -> dict[str, str]:
    """``{pin key: sha256}`` (``benchmark.records.target_pin_key``), checked: protocol.json's
    ``target_pins`` and the board's learnt ``target-pins.json`` have this form."""
    if not isinstance(data, dict):
        raise BoardError(f"{where}: expected an object {{\"dataset/partition/test\": sha256}}")
    for key, digest in data.items():
        if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
            raise BoardError(f"{where}.{key}={digest!r}: expected 64 lowercase hex digits")
        dataset, partition, rest = (key.split("/", 2) + ["", ""])[:3]
        if not dataset or not partition or not (rest == "test" or rest.startswith("test@")):
            raise BoardError(f"{where}: key {key!r}: expected dataset/partition/test or dataset/partition/test@HxW")
    return dict(data)


@dataclass(frozen=True)
class BoardProtocol:
    """A board's protocol definition (``protocol.json``), read strictly: unknown or missing keys are errors."""

    board: str  # folder name; written into every record's identity
    protocol_version: str  # changes whenever the protocol changes in a way that moves numbers
    preparation_version: int  # the data preparation (benchmark/data/prepared.py) its results were computed on
    title: str
    description: str
    demo: bool  # synthetic data: never presented as real-data results
    fractions: tuple[int, ...]
    seeds: tuple[int, ...]
    draws: tuple[int, ...]  # label-fraction draws for fractions below 100 (100 has draw 0 only)
    tasks: dict[str, BoardTask]
    comparison: ComparisonSettings
    default: bool = False  # the board `run`/`tables` use when none is named (one per kind: real, demo)
    # dataset -> image sources of its test set; a submission pretrained on one of them is flagged
    test_set_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # alias -> canonical source name, for --pretraining-data
    source_aliases: dict[str, str] = field(default_factory=dict)
    changelog: tuple[dict[str, str], ...] = ()
    # "dataset/partition/test[@HxW]" -> the scorer's digest of that test split's ground truth
    # (benchmark.scoring.TargetSet); a record scored on other targets is invalid on this board
    target_pins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> BoardProtocol:
        try:
            data = json.loads(path.read_text())
            _strict_keys(data, _PROTOCOL_REQUIRED, _PROTOCOL_OPTIONAL, str(path))
            return cls(
                board=data["board"], protocol_version=data["protocol_version"],
                preparation_version=data["preparation_version"], title=data["title"],
                description=data["description"], demo=bool(data["demo"]),
                fractions=tuple(data["fractions"]), seeds=tuple(data["seeds"]), draws=tuple(data["draws"]),
                tasks={task: BoardTask.from_dict(item, f"{path}: tasks.{task}", tuple(data["seeds"]))
                       for task, item in data["tasks"].items()},
                comparison=ComparisonSettings(**data["comparison"]), default=bool(data.get("default", False)),
                test_set_sources={ds: tuple(sources) for ds, sources in data.get("test_set_sources", {}).items()},
                source_aliases=dict(data.get("source_aliases", {})),
                changelog=tuple(data.get("changelog", ())),
                target_pins=read_pins(data.get("target_pins", {}), f"{path}: target_pins"),
            )
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise BoardError(f"{path}: not a valid board protocol ({type(error).__name__}: {error})") from None

    def task(self, task: str) -> BoardTask:
        try:
            return self.tasks[task]
        except KeyError:
            raise BoardError(f"task {task!r} is not on board {self.board!r}; it has {sorted(self.tasks)}") from None

    def select(self, kind: Literal["modes", "heads"], choices: dict[str | None, str] | None,
               tasks: list[str] | None = None) -> dict[str, str | None]:
        """Per task, the mode or head chosen by ``choices`` (``{task: value}``; key None: every task that declares
        the value), validated against this board's declarations. Tasks without a choice get their default mode,
        or None for the head (the backbone family's default, decided when the cell is planned)."""
        tasks = list(self.tasks) if tasks is None else tasks
        chosen: dict[str, str | None] = {
            task: self.task(task).default_mode if kind == "modes" else None for task in tasks}
        for task, value in (choices or {}).items():
            if task is None:
                takers = [name for name in tasks if value in getattr(self.task(name), kind)]
                if not takers:
                    raise BoardError(f"no task of {tasks} on board {self.board!r} declares {kind[:-1]} {value!r}; "
                                     f"declared: " + ", ".join(f"{t}: {list(getattr(self.task(t), kind))}" for t in tasks))
                chosen.update({name: value for name in takers})
                continue
            allowed = getattr(self.task(task), kind)
            if value not in allowed:
                raise BoardError(f"task {task!r} on board {self.board!r} has no {kind[:-1]} {value!r}; it declares {list(allowed)}")
            if task in chosen:
                chosen[task] = value
        return chosen

    def label(self, task: str, dataset: str) -> str:
        """The column label of ``task`` on ``dataset`` (e.g. "CheXpert AUROC"); a column the board does not
        define is a :class:`BoardError` naming the ones it does."""
        board_task = self.tasks.get(task)
        if board_task is None or dataset not in board_task.datasets:
            known = [f"{t}/{d}" for t, item in self.tasks.items() for d in item.datasets]
            raise BoardError(f"board {self.board!r} has no column for {task}/{dataset}; it defines {known}")
        return board_task.datasets[dataset]

    def metric(self, task: str, dataset: str) -> MetricSpec:
        """The spec of the column's metric (its range, direction, display scale): the headline metric of
        ``dataset`` as the scorer this board pins for ``task`` declares it."""
        self.label(task, dataset)
        name = self.task(task).scorer
        try:
            return headline_spec(name, dataset)
        except RegistryError as error:
            raise BoardError(f"board {self.board!r}: tasks.{task}.scorer {name!r} gives no metric for {dataset}: "
                             f"{error}") from None

    def canonical_source(self, name: str) -> str:
        key = name.strip().lower()
        return self.source_aliases.get(key, key)

    def overlaps(self, pretraining_data: tuple[str, ...] | list[str], dataset: str) -> list[str]:
        """Pretraining sources that share images with ``dataset``'s test set."""
        declared = {self.canonical_source(name) for name in pretraining_data}
        return sorted(declared & {self.canonical_source(name) for name in self.test_set_sources.get(dataset, ())})
