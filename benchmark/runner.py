"""The evaluation grid: backbone × task × dataset × head × fraction × draw × seed, resumable.

Every cell is resolved to a full :class:`~benchmark.records.CellIdentity` (weights by content
hash, data by partition, the task's head and mode) *before* anything runs; the record's file
name derives from that identity. A cell is done exactly when its record exists on the board
and validates, so:

- an interrupted grid resumes where it stopped (a crash mid-cell leaves at most a temporary
  file, which is ignored and cleaned up);
- a finished grid re-runs in seconds (only backbones are built, to hash their weights);
- two processes on the same board never duplicate a cell: each cell is claimed with a
  non-blocking ``fcntl`` lock, and a claimed cell is skipped as "busy" by the other process.

What a task declares (``tasks/registry.py``: datasets with their partition and headline
metric, heads, modes) decides the plan; the board's ``protocol.json`` says which of those it
accepts. Each cell runs in a fresh child process (forked from a server that has imported the
libraries once), so mmengine's registries and default scope, memory and GPU memory never
carry over from one cell to the next; a cell that crashes the interpreter or exceeds
``cell_timeout`` is recorded as failed with its output, and the grid goes on. The child calls
the task's adapter, scores the returned files with the task's scorer (the number on the board
is the number ``python -m benchmark score`` prints) and writes the record.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib
import math
import multiprocessing
import os
import pkgutil
import shutil
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from benchmark.backbones import LoadedBackbone, PreprocessMode, build_backbone, user_backbone_spec
from benchmark.backbones.zoo import BACKBONES, BackboneSpec
from benchmark.board.protocol import ComparisonSettings
from benchmark.board.store import Board, BoardEntry, failure_message
from benchmark.costs import CellEstimate, SplitCounts, estimate
from benchmark.data.prepared import PreparedDataset
from benchmark.datasources import DatasetSource, prepared_sources
from benchmark.provenance import collect_provenance, utc_now
from benchmark.records import CellIdentity, RecordError, RunRecord, check_name
from benchmark.registry import did_you_mean
from benchmark import scoring
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.sharding import Shard, shard_cells
from tasks.registry import TaskCell, TaskInfo, TaskResult, all_tasks, check_board, get_task

LOG_FILE = "cell.log"  # the child's stdout and stderr, in the cell's work folder
ERROR_FILE = "error.txt"  # the child's traceback when the cell raised
OUTPUT_TAIL = 6000  # characters of a failed cell's output kept in its failure record


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


@dataclass(frozen=True)
class Cell:
    identity: CellIdentity
    dataset_root: Path
    task: TaskInfo
    counts: SplitCounts  # image counts of its training subset, validation and test splits (cost model)


@dataclass
class GridSummary:
    cells: int = 0
    done_before: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)  # "cell: reason (failure file)", one line each
    busy: int = 0  # claimed by another process at the time
    not_prepared: list[str] = field(default_factory=list)  # datasets skipped (not under data_dir)
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
        lines += [f"failed: {key}" for key in self.failed]
        return lines


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register extra tasks, datasets or backbones (``--plugins``)."""
    for module in modules:
        importlib.import_module(module)


def task_names() -> list[str]:
    return sorted(info.name for info in all_tasks())


def datasets_to_evaluate(board: Board) -> list[str]:
    """Datasets the board needs for the tasks that exist now (what ``make bench`` prepares)."""
    available = set(task_names())
    return sorted({dataset for task, item in board.protocol.tasks.items() if task in available for dataset in item.datasets})


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
        preprocessing=loaded.preprocessing.to_dict(),
    )


def _load_report_summary(report: Any) -> dict[str, Any]:
    summary = report.to_dict()
    return {key: (len(value) if isinstance(value, list) else value) for key, value in summary.items()}


def require_training_images(source: DatasetSource, dataset: str, partition: str, fraction: int, draws: Sequence[int]) -> None:
    """A label-fraction draw without a training image (tiny demo data) would fail its cells at run
    time: refuse it when the grid is planned, saying which size works."""
    empty = [draw for draw in draws if fraction != 100 and source.counts(partition, fraction, draw).train == 0]
    if not empty:
        return
    full = source.counts(partition, 100, 0)
    needed = math.ceil(100 / fraction)  # int(fraction% of n) >= 1, the stricter of the reference's two rules
    if source.demo:
        images = math.ceil((full.train + full.val + full.test) * needed / max(full.train, 1))
        hint = f"generate the demo data with about {images} images (demo-data --images {images}) and prepare again"
    else:
        hint = "prepare a larger dataset"
    others = f" (draws {empty[1:]} neither)" if len(empty) > 1 else ""
    raise GridError(
        f"{source.root}: {dataset} ({partition}) {fraction}% draw {empty[0]} holds no training image{others}: "
        f"{full.train} training images, a {fraction}% draw needs at least {needed}; {hint}, or leave {fraction} "
        f"out (--fractions)"
    )


def plan_cells(board: Board, request: GridRequest, loaded: LoadedBackbone, summary: GridSummary,
               sources: Callable[[str], DatasetSource | None] | None = None) -> list[Cell]:
    """Resolve every cell of one backbone; datasets not prepared are skipped unless asked for.
    ``sources`` finds a dataset's splits (default: the prepared folders under ``request.data_dir``)."""
    if sources is None and not request.data_dir.is_dir():
        raise GridError(f"{request.data_dir}: no such folder; --data names the folder of prepared datasets "
                        f"(`python -m benchmark prepare DATASET --raw RAW --out {request.data_dir}` writes them)")
    sources = sources or prepared_sources(request.data_dir)
    protocol = board.protocol
    check_board(protocol)  # the board's scorer pins, datasets and overrides against the tasks' declarations
    available = set(task_names())
    tasks = list(request.tasks or [task for task in protocol.tasks if task in available])
    for task in tasks:
        protocol.task(task)  # a task that is not on the board fails here
    wrong = [fraction for fraction in request.fractions or () if not 1 <= fraction <= 100]
    if wrong:
        raise GridError(f"--fractions {wrong[0]}: a label fraction is a percentage from 1 to 100 "
                        f"(board {board.name!r} takes {', '.join(map(str, protocol.fractions))})")
    on_board = sorted({dataset for task in tasks for dataset in protocol.task(task).datasets})
    for dataset in request.datasets or ():
        if dataset not in on_board:
            raise GridError(f"--datasets {dataset!r}: not on board {board.name!r} for tasks {', '.join(tasks)}."
                            f"{did_you_mean(dataset, on_board)} Its datasets: {', '.join(on_board)}")
    modes = protocol.select("modes", request.modes, tasks)
    heads = protocol.select("heads", request.heads, tasks)
    cells = []
    for task in tasks:
        info = get_task(task)  # an unknown task fails here, with suggestions
        board_task = protocol.task(task)
        if info.version != board_task.version:
            raise GridError(f"task {task!r} is at version {info.version} but board {board.name!r} pins version "
                            f"{board_task.version}; results of different versions are never mixed: start a new board version")
        mode = modes[task]
        if mode not in info.modes:
            raise GridError(f"task {task!r} has no mode {mode!r}; it declares {list(info.modes)}")
        head = heads[task] or info.default_head(loaded.model.arch.family)
        if heads[task] is None and head not in board_task.heads:
            head = board_task.heads[0]  # the board does not take the family's default: its first head
        if head not in info.heads or head not in board_task.heads:
            raise GridError(f"head {head!r} of task {task!r} is not declared by the task {list(info.heads)} "
                            f"and the board {list(board_task.heads)}; choose one of both with --head {task}=HEAD")
        for dataset in request.datasets or tuple(board_task.datasets):
            if dataset not in board_task.datasets:
                if request.datasets and request.tasks is None:
                    continue  # --datasets filters across tasks: rsna exists for several
                raise GridError(f"{task}/{dataset} is not on board {board.name!r}")
            root = request.data_dir / dataset
            source = sources(dataset)
            if source is None:
                if request.datasets:
                    raise GridError(f"{root}: dataset {dataset!r} is not prepared; run `python -m benchmark prepare {dataset} --raw RAW --out {request.data_dir}`")
                summary.not_prepared.append(f"{task}/{dataset}")
                continue
            if source.preparation_version not in (None, protocol.preparation_version):
                raise GridError(f"{root}: prepared with data-preparation version {source.preparation_version}, "
                                f"board {board.name!r} needs version {protocol.preparation_version}; re-prepare the dataset")
            if source.demo != protocol.demo:
                raise GridError(
                    f"{root} holds {'demo (synthetic)' if source.demo else 'real'} data but board {board.name!r} is a "
                    f"{'demo' if protocol.demo else 'real-data'} board; demo results never go to a real board "
                    f"(use a demo board for demo data)")
            partition = source.partition(info.dataset(dataset).partition)
            for fraction in request.fractions or board_task.fractions or protocol.fractions:
                draws = (0,) if fraction == 100 else (request.draws or board_task.draws or protocol.draws)
                prepared_draws = source.draws(fraction)
                missing = [draw for draw in draws if draw not in prepared_draws]
                if missing:
                    raise GridError(f"{root}: {fraction}% draw(s) {missing} are not prepared (have {prepared_draws}); prepare more draws or pass --draws")
                require_training_images(source, dataset, partition, fraction, draws)
                for draw in draws:
                    for seed in request.seeds or protocol.seeds:
                        identity = CellIdentity(
                            board=board.name, backbone=loaded.spec.name, weights_sha256=loaded.weights_sha256,
                            task=task, dataset=dataset, partition=partition, head=head, fraction=fraction, draw=draw,
                            seed=seed, mode=mode,
                        )
                        identity.validate()
                        cells.append(Cell(identity, root, info, source.counts(partition, fraction, draw)))
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
        handle.truncate(0)  # who holds it, for `status` (file systems that ignore flock still show it)
        handle.write(f"{socket.gethostname()} {os.getpid()} {utc_now()}\n")
        handle.flush()
        try:
            yield True
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def placement(device: str, shard: Shard | None) -> dict[str, Any]:
    """Where a cell ran: the resolved device (and its GPU's name), the shard, the SLURM job."""
    import torch

    where: dict[str, Any] = {"device": device}
    if device.startswith("cuda"):
        where["device_name"] = torch.cuda.get_device_name(torch.device(device))
        where["cuda_visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    if shard is not None:
        where["shard"] = str(shard)
    slurm = {key: os.environ[f"SLURM_{key.upper()}"] for key in ("job_id", "array_job_id", "array_task_id", "job_nodelist")
             if f"SLURM_{key.upper()}" in os.environ}
    if slurm:
        where["slurm"] = slurm
    return where


def cell_work_dir(request: GridRequest, board: Board, identity: CellIdentity) -> Path:
    return request.work_dir / board.name / identity.entry_key / identity.cell_key


def evaluate_cell(board: Board, cell: Cell, loaded: LoadedBackbone, request: GridRequest) -> RunRecord:
    """Run one cell's adapter, score its files with the task's scorer and store the record."""
    identity, info = cell.identity, cell.task
    dataset = PreparedDataset(cell.dataset_root)
    work = cell_work_dir(request, board, identity)
    work.mkdir(parents=True, exist_ok=True)  # kept across attempts: adapters resume from their checkpoints
    device = resolve_device(request.device)
    started, clock = utc_now(), time.perf_counter()
    result = info.run(TaskCell(
        backbone=loaded, dataset=dataset, partition=identity.partition, head=identity.head, fraction=identity.fraction,
        draw=identity.draw, seed=identity.seed, mode=identity.mode, work_dir=work, cache_dir=request.cache_dir,
        device=device, progress=request.progress, overrides=board.protocol.task(identity.task).overrides,
    ))
    total = time.perf_counter() - clock
    if not isinstance(result, TaskResult):
        raise GridError(f"the {identity.task} adapter returned {type(result).__name__}, not a TaskResult")
    fingerprints = dict(result.split_fingerprints)
    expected_test = dataset.split_fingerprint("test", partition=identity.partition)
    if fingerprints.get("test") != expected_test:
        raise GridError(f"{identity.task} adapter scored a test split other than partition {identity.partition!r} of {dataset.root}")
    settings: ComparisonSettings = board.protocol.comparison
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    scored = scorer(info.scorer).score_files(Path(result.predictions_file), Path(result.targets_file), identity.dataset, options)
    metrics = scored.metric_values()
    headline = info.headline(identity.dataset).name
    if headline not in metrics:
        raise GridError(f"{identity.task} on {identity.dataset}: the scorer gave no usable {headline!r} "
                        f"({'; '.join(scored.warnings) or 'metrics: ' + ', '.join(sorted(metrics))})")
    # the test split's ground truth, which the board checks against its pin
    truth = scoring.record_target_set(info.scorer, Path(result.targets_file), identity.dataset, identity.partition)
    board.check_pin(truth)  # before anything is stored
    predictions = board.store_artifact(identity, "predictions", Path(result.predictions_file), info.large_artifacts)
    targets = board.store_artifact(identity, "targets", Path(result.targets_file), info.large_artifacts)
    provenance = collect_provenance(started)
    provenance.update(placement(device, request.shard))
    record = RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, scorer=info.scorer, metrics=metrics,
        headline_metric=headline, predictions=predictions, targets=targets,
        target_set=truth,
        timings={**{k: float(v) for k, v in result.timings.items()}, "total": total},
        config={**result.config, "task_version": info.version,
                "board_overrides": dict(board.protocol.task(identity.task).overrides)},
        training=result.training.to_json() if result.training is not None else {},
        split_fingerprints=fingerprints,
        backbone={"arch": loaded.spec.arch, "weights": loaded.spec.weights,
                  "pretraining_data": list(loaded.spec.pretraining_data),
                  # what every task fed the encoder: size, channels, range, mean/std, and --preprocess
                  "preprocessing": loaded.preprocessing.to_dict(),
                  # which encoder of the checkpoint file was evaluated (prefix, keys matched)
                  "load_report": _load_report_summary(loaded.load_report) if loaded.load_report is not None else None},
        provenance=provenance, created=utc_now(),
        notes=list(result.notes) + scored.notes() + list(result.warnings),
    )
    board.add(record)
    if not request.keep_work:
        shutil.rmtree(work, ignore_errors=True)
    return record


# ------------------------------------------------------------------------- one cell, one process

@dataclass(frozen=True)
class _ChildJob:
    """Everything a cell's child process needs, picklable (the task declaration travels whole)."""

    board_root: Path
    cell: Cell
    spec: BackboneSpec
    checkpoint: Path | None
    request: GridRequest
    environment: dict[str, str]  # the parent's environment at the time the cell starts
    interactive: bool  # the runner's output is a terminal (else bars are logged as lines)


def _child_main(job: _ChildJob, lifeline: Connection) -> None:
    """Entry point of a cell's process: output to the cell log, rebuild the backbone, run, record."""
    _die_with_runner(lifeline)
    work = cell_work_dir(job.request, Board(job.board_root), job.cell.identity)
    os.environ.clear()
    os.environ.update(job.environment)
    with open(work / LOG_FILE, "ab", buffering=0) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    if not job.interactive:
        _bars_as_lines()
    try:
        loaded = build_backbone(job.spec, job.checkpoint, preprocess=job.request.preprocess)
        if loaded.weights_sha256 != job.cell.identity.weights_sha256:
            raise GridError(f"the weights changed since the grid was planned ({loaded.weights_sha256[:12]} != "
                            f"{job.cell.identity.weights_sha256[:12]}); re-run the grid")
        evaluate_cell(Board(job.board_root), job.cell, loaded, job.request)
    except BaseException:
        (work / ERROR_FILE).write_text(traceback.format_exc())
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()


class _RedrawsAsLines:
    """A text stream that writes each redraw of a progress bar (text after a carriage return) as a
    line of its own, so that a log file holds lines, not one line rewritten thousands of times."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if "\r" in text:
            text = "".join(part.rstrip("\n") + "\n" for part in text.split("\r") if part.strip())
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _bars_as_lines() -> None:
    """In a cell whose runner logs to a file (a batch job, a pipe): tqdm bars drawn every 30 s, each
    as a line. tqdm's ``TQDM_*`` variables are read when tqdm is imported, which the fork server did
    before this process existed, so the default is changed on the class."""
    from functools import partialmethod

    from tqdm import tqdm

    tqdm.__init__ = partialmethod(tqdm.__init__, mininterval=30)  # a cell's own process: nothing else shares it
    sys.stderr = _RedrawsAsLines(sys.stderr)


def _die_with_runner(lifeline: Connection) -> None:
    """Kill this process the moment its runner is gone, however it went (``kill -9`` included).

    The cell's parent is the fork server, not the runner, and the fork server may still be
    importing when the runner dies and then fork the cell anyway; so neither ``PR_SET_PDEATHSIG``
    nor the parent's liveness says enough. ``lifeline`` is the read end of a pipe whose only write
    end the runner holds and never writes to: reading it returns exactly when the runner's end is
    closed, which the kernel does when the runner exits for any reason."""
    def watch() -> None:
        with contextlib.suppress(EOFError, OSError):
            lifeline.recv_bytes()
        os.kill(os.getpid(), signal.SIGKILL)  # no record, no cleanup: the runner that would read them is gone

    threading.Thread(target=watch, name="runner lifeline", daemon=True).start()


def _cell_environment(progress: bool) -> dict[str, str]:
    """The runner's environment for a cell (a cell without progress also has its log unfollowed)."""
    environment = dict(os.environ)
    if not progress:
        environment["TQDM_DISABLE"] = "1"
    return environment


def _process_context(cells: list[Cell]) -> multiprocessing.context.BaseContext:
    """Fork server that has imported the runner and the planned adapters once: cheap fresh children."""
    context = multiprocessing.get_context("forkserver")
    adapters = {info.adapter.partition(":")[0] for info in {cell.task.name: cell.task for cell in cells}.values()
                if isinstance(info.adapter, str)}
    scorers = [f"benchmark.scoring.{module.name}" for module in pkgutil.iter_modules(scoring.__path__)]
    context.set_forkserver_preload(["benchmark.runner", *scorers, *sorted(adapters)])
    return context


def _follow(path: Path, stop: threading.Event, stream: Any) -> None:
    """Copy what the child writes to its log onto ``stream`` while it runs (its progress bars)."""
    with open(path, "rb") as log:
        while True:
            chunk = log.read(65536)
            if chunk:
                stream.buffer.write(chunk)
                stream.flush()
            elif stop.is_set():
                return
            else:
                time.sleep(0.2)


def run_isolated(board: Board, cell: Cell, choice: BackboneChoice, spec: BackboneSpec, request: GridRequest,
                 context: multiprocessing.context.BaseContext) -> str | None:
    """Evaluate ``cell`` in a fresh child process; None on success, else the error to record."""
    work = cell_work_dir(request, board, cell.identity)
    work.mkdir(parents=True, exist_ok=True)
    (work / ERROR_FILE).unlink(missing_ok=True)
    (work / LOG_FILE).write_bytes(b"")
    job = _ChildJob(board.root, cell, spec, choice.checkpoint, request, _cell_environment(request.progress),
                    interactive=sys.stderr.isatty())
    lifeline, runner_end = context.Pipe(duplex=False)  # the child reads, the runner holds the only write end
    process = context.Process(target=_child_main, args=(job, lifeline), name=f"cell {cell.identity.cell_key}")
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(work / LOG_FILE, stop, sys.stderr), daemon=True)
    if request.progress:
        follower.start()
    process.start()
    lifeline.close()  # the child has its own copy
    process.join(request.cell_timeout)
    timed_out = process.is_alive()
    if timed_out:
        process.kill()
        process.join()
    runner_end.close()
    stop.set()
    if request.progress:
        follower.join()
    if process.exitcode == 0 and not timed_out and board.completed(cell.identity):
        return None
    output = (work / LOG_FILE).read_text(errors="replace")[-OUTPUT_TAIL:] if (work / LOG_FILE).is_file() else ""
    if timed_out:
        reason = f"the cell exceeded the cell timeout of {request.cell_timeout:g} s and was killed"
    elif (work / ERROR_FILE).is_file():
        reason = (work / ERROR_FILE).read_text(errors="replace")
    elif process.exitcode is not None and process.exitcode < 0:
        reason = f"the cell's process was killed by signal {-process.exitcode} (crash or out of memory)"
    else:
        reason = f"the cell's process exited with code {process.exitcode} without writing its record"
    return f"{reason.rstrip()}\n\n--- last output of the cell ({work / LOG_FILE}) ---\n{output}"


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr into ``path`` (an in-process cell without progress, like an
    isolated cell whose log is not followed: its bars and training logs stay in its log file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        yield


def run_in_process(board: Board, cell: Cell, loaded: LoadedBackbone, request: GridRequest) -> str | None:
    quiet = _output_to(cell_work_dir(request, board, cell.identity) / LOG_FILE)
    try:
        with contextlib.nullcontext() if request.progress else quiet:
            evaluate_cell(board, cell, loaded, request)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception:  # noqa: BLE001 - recorded with its traceback, the grid goes on
        return traceback.format_exc()
    return None


@dataclass(frozen=True)
class PlannedCell:
    """A cell with the backbone that evaluates it."""

    cell: Cell
    choice: BackboneChoice
    spec: BackboneSpec
    loaded: LoadedBackbone


def cell_estimate(board: Board, cell: Cell) -> CellEstimate:
    """One cell's upper-bound work: its task's cost at the epoch budget the board's overrides give it."""
    info = cell.task
    return estimate(cell.identity, cell.counts, info.cost, info.epochs(board.protocol.task(cell.identity.task).overrides))


def cell_costs(board: Board, cells: Sequence[Cell]) -> dict[CellIdentity, float]:
    """Each cell's estimated work in encoder passes (``benchmark/costs.py``), for sharding."""
    return {cell.identity: cell_estimate(board, cell).cost(cell.task.cost.head_cost) for cell in cells}


def plan_grid(board: Board, request: GridRequest, summary: GridSummary,
              sources: Callable[[str], DatasetSource | None] | None = None,
              backbones: Callable[[BackboneChoice, BackboneSpec], LoadedBackbone] | None = None,
              register: bool = True) -> list[PlannedCell]:
    """Every cell of ``request`` (of its shard, when it names one), whether done or not.

    The shard is cut from the whole planned grid, so it never depends on what is done already.
    ``register``: add the backbones to the board's entries (not for a dry run).
    """
    planned: list[PlannedCell] = []
    for choice in request.backbones:
        spec = choice.spec()
        loaded = backbones(choice, spec) if backbones else build_backbone(spec, choice.checkpoint, preprocess=request.preprocess)
        cells = plan_cells(board, request, loaded, summary, sources)
        if cells and register:  # an entry appears on the board only with cells to its name
            board.register_entry(board_entry(choice, loaded))
        planned += [PlannedCell(cell, choice, spec, loaded) for cell in cells]
    if not planned:
        missing = f"; not prepared under {request.data_dir}: {', '.join(summary.not_prepared)}" if summary.not_prepared else ""
        raise GridError(f"nothing to evaluate on board {board.name!r} for tasks {', '.join(request.tasks or ['all'])} and "
                        f"datasets {', '.join(request.datasets or ['all'])} (tasks that exist: {', '.join(task_names())}){missing}")
    if request.shard is not None:
        costs = cell_costs(board, [item.cell for item in planned])
        mine = set(shard_cells(list(costs), request.shard, costs.__getitem__))
        planned = [item for item in planned if item.cell.identity in mine]
    return planned


def run_grid(board: Board, request: GridRequest) -> GridSummary:
    """Evaluate every cell of ``request`` that is not yet on ``board``."""
    resolve_device(request.device)  # once, before the grid: a missing GPU is one error, not one failure per cell
    summary, clock = GridSummary(), time.perf_counter()
    board.remove_stale_temps()
    board.rebuild_index()  # a crash after a record's write may have left the index behind
    todo: list[tuple[Cell, BackboneChoice, BackboneSpec, LoadedBackbone]] = []
    planned = plan_grid(board, request, summary)
    summary.cells = len(planned)
    summary.shard = str(request.shard or "")
    for item in planned:
        record, invalid = board.status(item.cell.identity)
        if record is not None:
            summary.done_before += 1
        elif invalid is not None and not request.redo_invalid:
            summary.invalid.append(invalid)
        else:
            todo.append((item.cell, item.choice, item.spec, item.loaded))
    context = _process_context([cell for cell, *_ in todo]) if request.isolate and todo else None
    for number, (cell, choice, spec, loaded) in enumerate(todo, 1):
        identity = cell.identity
        if request.progress:
            print(f"[{number}/{len(todo)}] {identity.backbone} {identity.task}/{identity.dataset} {identity.head} "
                  f"{identity.fraction}% draw {identity.draw} seed {identity.seed} ({identity.mode})", file=sys.stderr, flush=True)
        with claim(board, identity) as mine:
            if not mine:
                summary.busy += 1
                continue
            if board.completed(identity):  # finished by another process meanwhile
                summary.done_before += 1
                continue
            if context is not None:
                error = run_isolated(board, cell, choice, spec, request, context)
            else:
                error = run_in_process(board, cell, loaded, request)
            if error is None:
                summary.ran += 1
            else:
                path = board.record_failure(identity, error)
                summary.failed.append(f"{identity.entry_key}/{identity.cell_key}: {failure_message(error)} (traceback: {path})")
    summary.seconds = time.perf_counter() - clock
    return summary
