"""The evaluation grid: backbone × task × dataset × fraction × draw × seed, resumable.

Every cell is resolved to a full :class:`~benchmark.records.CellIdentity` (weights by content
hash, data by partition) *before* anything runs; the record's file name derives from that
identity. A cell is done exactly when its record exists on the board and validates, so:

- an interrupted grid resumes where it stopped (a crash mid-cell leaves at most a temporary
  file, which is ignored and cleaned up);
- a finished grid re-runs in seconds (only backbones are built, to hash their weights);
- two processes on the same board never duplicate a cell: each cell is claimed with a
  non-blocking ``fcntl`` lock, and a claimed cell is skipped as "busy" by the other process.

A failing cell is recorded under the board's ``failures/`` (with the traceback), the grid goes
on, and the cell is retried by the next run.

The task adapters come from the task registry (``tasks/registry.py``); each is called as
``adapter(backbone, dataset, fraction, draw, seed, mode, work_dir, cache_dir) -> dict`` with keys
``metrics, predictions_file, targets_file, timings, config, split_fingerprints, mode``.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import math
import shutil
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from benchmark.backbones import LoadedBackbone, build_backbone, user_backbone_spec
from benchmark.backbones.zoo import BACKBONES, BackboneSpec
from benchmark.board.store import Board, BoardEntry, ComparisonSettings
from benchmark.data.prepared import PreparedDataset
from benchmark.provenance import collect_provenance, utc_now
from benchmark.records import CellIdentity, MetricValue, RunRecord
from benchmark.registry import Registry, RegistryError
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions

Z_95 = 1.959963984540054


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
        if self.name in BACKBONES:
            spec = BACKBONES.get(self.name)
            if self.arch and self.arch != spec.arch:
                raise GridError(f"backbone {self.name!r} is registered with arch {spec.arch!r}, not {self.arch!r}")
            return spec
        if not (self.checkpoint and self.arch):
            raise GridError(
                f"{self.name!r} is not a registered backbone (see `python -m benchmark backbones`); "
                f"for your own weights pass --checkpoint PATH --arch ARCH"
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
    mode: str | None = None
    work_dir: Path = Path("runs/work")
    cache_dir: Path = Path("runs/cache")
    keep_work: bool = False  # keep each cell's work folder after success (debugging)


@dataclass(frozen=True)
class Cell:
    identity: CellIdentity
    dataset_root: Path


@dataclass
class GridSummary:
    cells: int = 0
    done_before: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    busy: int = 0  # claimed by another process at the time
    not_prepared: list[str] = field(default_factory=list)  # datasets skipped (not under data_dir)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        lines = [f"{self.cells} cells: {self.ran} evaluated, {self.done_before} already done, "
                 f"{len(self.failed)} failed, {self.busy} busy elsewhere ({self.seconds:.1f} s)"]
        if self.not_prepared:
            lines.append(f"skipped, not prepared under the data folder: {', '.join(self.not_prepared)}")
        lines += [f"failed: {key}" for key in self.failed]
        return lines


def task_registry() -> Registry[Any]:
    """The task registry (``tasks/registry.py``), with every task package imported."""
    registry = importlib.import_module("tasks.registry")
    registry.all_tasks()
    return registry.TASKS


def task_adapter(name: str) -> Callable[..., dict]:
    return task_registry().get(name).run


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register extra tasks, datasets or backbones (``--plugins``)."""
    for module in modules:
        importlib.import_module(module)


def datasets_to_evaluate(board: Board) -> list[str]:
    """Datasets the board needs for the tasks that exist now (what ``make bench`` prepares)."""
    available = set(task_registry().names())
    return sorted({dataset for task, slots in board.protocol.tasks.items() if task in available for dataset in slots})


def board_entry(choice: BackboneChoice, loaded: LoadedBackbone) -> BoardEntry:
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
        load_report=_load_report_summary(report) if report is not None else None,
    )


def _load_report_summary(report: Any) -> dict[str, Any]:
    summary = report.to_dict()
    return {key: (len(value) if isinstance(value, list) else value) for key, value in summary.items()}


def plan_cells(board: Board, request: GridRequest, loaded: LoadedBackbone, summary: GridSummary) -> list[Cell]:
    """Resolve every cell of one backbone; datasets not prepared are skipped unless asked for."""
    protocol = board.protocol
    available = set(task_registry().names())
    tasks = request.tasks or tuple(task for task in protocol.tasks if task in available)
    mode = request.mode or protocol.default_mode
    cells = []
    for task in tasks:
        if task not in protocol.tasks:
            raise GridError(f"task {task!r} is not on board {board.name!r}; it has {sorted(protocol.tasks)}")
        info = task_registry().get(task)  # an unknown task fails here, with suggestions
        pinned = protocol.task_versions.get(task)
        if pinned is not None and info.version != pinned:
            raise GridError(f"task {task!r} is at version {info.version} but board {board.name!r} pins version {pinned}; "
                            f"results of different versions are never mixed: start a new board version")
        if mode not in info.modes:
            raise GridError(f"task {task!r} has no mode {mode!r}; its modes are {info.modes}")
        datasets = request.datasets or tuple(protocol.tasks[task])
        for dataset in datasets:
            if dataset not in protocol.tasks[task]:
                if request.datasets and request.tasks is None:
                    continue  # --datasets filters across tasks: rsna exists for several
                raise GridError(f"{task}/{dataset} is not on board {board.name!r}")
            slot = protocol.slot(task, dataset)
            root = request.data_dir / dataset
            if not (root / "manifest.json").is_file():
                if request.datasets:
                    raise GridError(f"{root}: dataset {dataset!r} is not prepared; run `python -m benchmark prepare {dataset} --raw RAW --out {request.data_dir}`")
                summary.not_prepared.append(f"{task}/{dataset}")
                continue
            prepared = PreparedDataset(root)
            if prepared.manifest.protocol_version != protocol.protocol_version:
                raise GridError(f"{root}: prepared for protocol {prepared.manifest.protocol_version!r}, board {board.name!r} follows {protocol.protocol_version!r}; re-prepare the dataset")
            demo_data = prepared.manifest.demo
            if demo_data != protocol.demo:
                raise GridError(
                    f"{root} holds {'demo (synthetic)' if demo_data else 'real'} data but board {board.name!r} is a "
                    f"{'demo' if protocol.demo else 'real-data'} board; demo results never go to a real board "
                    f"(use --board demo-{protocol.protocol_version} for demo data)")
            partition = prepared.partition(slot.partition)
            for fraction in request.fractions or protocol.fractions:
                draws = (0,) if fraction == 100 else (request.draws or protocol.draws)
                prepared_draws = prepared.manifest.fractions.get(str(fraction), [0] if fraction == 100 else [])
                missing = [draw for draw in draws if draw not in prepared_draws]
                if missing:
                    raise GridError(f"{root}: {fraction}% draw(s) {missing} are not prepared (have {prepared_draws}); prepare more draws or pass --draws")
                for draw in draws:
                    for seed in request.seeds or protocol.seeds:
                        identity = CellIdentity(
                            board=board.name, backbone=loaded.spec.name, weights_sha256=loaded.weights_sha256,
                            task=task, dataset=dataset, partition=partition, fraction=fraction, draw=draw,
                            seed=seed, mode=mode,
                        )
                        identity.validate()
                        cells.append(Cell(identity, root))
    return cells


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
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def metric_values(raw: dict[str, Any]) -> tuple[dict[str, MetricValue], list[str]]:
    """Normalise an adapter's metrics (floats, or dicts with value/low/high) to :class:`MetricValue`.

    A percentile interval is turned into a standard error as ``(high - low) / (2 * 1.96)`` when
    the scorer gives none. Undefined (NaN) metrics are left out and named in the notes.
    """
    metrics, notes = {}, []
    for name, item in raw.items():
        if isinstance(item, dict):
            value, low, high = item.get("value"), item.get("low", item.get("ci_low")), item.get("high", item.get("ci_high"))
            se = item.get("bootstrap_se", item.get("se"))
        else:
            value, low, high, se = item, None, None, None
        if value is None or not math.isfinite(float(value)):
            notes.append(f"metric {name} undefined on this test set (left out)")
            continue
        bounds = [float(b) if b is not None and math.isfinite(float(b)) else None for b in (low, high)]
        if se is None and None not in bounds:
            se = (bounds[1] - bounds[0]) / (2 * Z_95)
        metrics[name] = MetricValue(float(value), bounds[0], bounds[1], None if se is None else float(se))
    return metrics, notes


def rescored_metrics(identity: CellIdentity, result: dict[str, Any], settings: ComparisonSettings) -> dict[str, Any]:
    """The adapter's metrics with test-set bootstrap intervals, re-scored from the saved files.

    Re-scoring with the task's file scorer (``benchmark/scoring``) proves the stored prediction
    file reproduces the reported number; a task without a file scorer keeps its metrics as given.
    """
    raw: dict[str, Any] = dict(result["metrics"])
    try:
        score_files = scorer(identity.task)
    except RegistryError:
        return raw
    if not result.get("targets_file"):
        return raw
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    scored = score_files(Path(result["predictions_file"]), Path(result["targets_file"]), identity.dataset, options)
    for name, entry in scored["metrics"].items():
        reported = raw.get(name)
        if reported is not None and math.isfinite(reported) and not math.isclose(reported, entry["value"], abs_tol=1e-6):
            raise GridError(f"{identity.task}/{identity.dataset}: the saved predictions give {name}={entry['value']:.6f} "
                            f"but the adapter reported {reported:.6f}")
        raw[name] = {"value": entry["value"], "low": entry["low"], "high": entry["high"]}
    return raw


def evaluate_cell(board: Board, cell: Cell, loaded: LoadedBackbone, request: GridRequest) -> RunRecord:
    """Run one cell's task adapter and store its record (artifacts first, record last)."""
    identity = cell.identity
    slot = board.protocol.slot(identity.task, identity.dataset)
    dataset = PreparedDataset(cell.dataset_root)
    work = request.work_dir / board.name / identity.entry_key / identity.cell_key
    shutil.rmtree(work, ignore_errors=True)  # leftovers of an interrupted attempt
    work.mkdir(parents=True)
    started, clock = utc_now(), time.perf_counter()
    result = task_adapter(identity.task)(
        backbone=loaded, dataset=dataset, fraction=identity.fraction, draw=identity.draw, seed=identity.seed,
        mode=identity.mode, work_dir=work, cache_dir=request.cache_dir,
    )
    total = time.perf_counter() - clock
    fingerprints = dict(result["split_fingerprints"])
    expected_test = dataset.split_fingerprint("test", partition=identity.partition)
    if fingerprints.get("test", expected_test) != expected_test:
        raise GridError(f"{identity.task} adapter scored a test split other than partition {identity.partition!r} of {dataset.root}")
    fingerprints.setdefault("test", expected_test)
    metrics, notes = metric_values(rescored_metrics(identity, result, board.protocol.comparison))
    if slot.metric not in metrics:
        raise GridError(f"{identity.task} on {identity.dataset} returned no usable {slot.metric!r}; metrics: {sorted(result['metrics'])}")
    predictions = board.store_artifact(identity, "predictions", Path(result["predictions_file"]))
    targets = board.store_artifact(identity, "targets", Path(result["targets_file"])) if result.get("targets_file") else None
    record = RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, metrics=metrics,
        headline_metric=slot.metric, predictions=predictions, targets=targets,
        timings={**{k: float(v) for k, v in result.get("timings", {}).items()}, "total": total},
        config={**dict(result.get("config", {})), "task_version": task_registry().get(identity.task).version},
        split_fingerprints=fingerprints,
        backbone={"arch": loaded.spec.arch, "weights": loaded.spec.weights,
                  "pretraining_data": list(loaded.spec.pretraining_data),
                  # which encoder of the checkpoint file was evaluated (prefix, keys matched)
                  "load_report": _load_report_summary(loaded.load_report) if loaded.load_report is not None else None},
        provenance=collect_provenance(started), created=utc_now(), notes=notes + list(result.get("warnings", [])),
    )
    board.add(record)
    if not request.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record


def run_grid(board: Board, request: GridRequest, progress: bool = True) -> GridSummary:
    """Evaluate every cell of ``request`` that is not yet on ``board``."""
    summary, clock = GridSummary(), time.perf_counter()
    board.remove_stale_temps()
    todo: list[tuple[Cell, LoadedBackbone]] = []
    for choice in request.backbones:
        loaded = build_backbone(choice.spec(), choice.checkpoint)
        cells = plan_cells(board, request, loaded, summary)
        if cells:  # an entry appears on the board only with cells to its name
            board.register_entry(board_entry(choice, loaded))
        summary.cells += len(cells)
        for cell in cells:
            if board.completed(cell.identity):
                summary.done_before += 1
            else:
                todo.append((cell, loaded))
    if summary.cells == 0:
        missing = f"; not prepared under {request.data_dir}: {', '.join(summary.not_prepared)}" if summary.not_prepared else ""
        raise GridError(f"nothing to evaluate on board {board.name!r} for tasks {', '.join(request.tasks or ['all'])} and "
                        f"datasets {', '.join(request.datasets or ['all'])} (tasks that exist: {', '.join(task_registry().names())}){missing}")
    bar = tqdm(todo, desc="grid", unit="cell", disable=not progress or not todo, dynamic_ncols=True, position=0)
    for cell, loaded in bar:
        identity = cell.identity
        bar.set_postfix_str(f"{identity.backbone} {identity.task}/{identity.dataset} {identity.fraction}% "
                            f"d{identity.draw} s{identity.seed}")
        with claim(board, identity) as mine:
            if not mine:
                summary.busy += 1
                continue
            if board.completed(identity):  # finished by another process meanwhile
                summary.done_before += 1
                continue
            try:
                evaluate_cell(board, cell, loaded, request)
                summary.ran += 1
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception:  # noqa: BLE001 - recorded with its traceback, the grid goes on
                board.record_failure(identity, traceback.format_exc())
                summary.failed.append(f"{identity.entry_key}/{identity.cell_key}")
    summary.seconds = time.perf_counter() - clock
    return summary
