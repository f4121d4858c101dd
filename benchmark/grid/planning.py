"""Planning a grid: every cell of a request resolved to its full identity before anything runs.

What a task declares (``tasks/registry.py``: datasets with their partition and headline
metric, heads, modes) decides the plan; the board's ``protocol.json`` says which of those it
accepts. Each cell is resolved to a full :class:`~benchmark.records.CellIdentity` (weights by
content hash, data by partition, the task's head and mode), from which the record's file name
derives. Planning reads the board and the prepared data and writes nothing: the dry run and
``status`` plan grids too.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from benchmark.backbones import LoadedBackbone, build_backbone
from benchmark.backbones.zoo import BackboneSpec
from benchmark.board.store import Board
from benchmark.costs import CellEstimate, estimate
from benchmark.datasources import DatasetSource, prepared_sources
from benchmark.grid.request import BackboneChoice, Cell, GridError, GridRequest, GridSummary
from benchmark.records import CellIdentity
from benchmark.registry import did_you_mean
from benchmark.sharding import shard_cells
from tasks.registry import all_tasks, check_board, get_task


def task_names() -> list[str]:
    """The tasks registered now (the built-in ones and those of ``--plugins``)."""
    return sorted(info.name for info in all_tasks())


def datasets_to_evaluate(board: Board) -> list[str]:
    """Datasets the board needs for the tasks that exist now (what ``make bench`` prepares)."""
    available = set(task_names())
    return sorted({dataset for task, item in board.protocol.tasks.items() if task in available for dataset in item.datasets})


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
        reason = info.unmet_requirement(loaded)
        if reason is not None:
            summary.skipped.append(f"{task} for {loaded.spec.name}: {reason}")
            continue
        mode = modes[task]
        if mode not in info.modes:
            raise GridError(f"task {task!r} has no mode {mode!r}; it declares {list(info.modes)}")
        head = heads[task] or info.default_head(loaded.model.arch.family)
        if heads[task] is None and head not in board_task.heads:
            head = board_task.heads[0]  # the board does not take the family's default: its first head
        if head not in info.heads or head not in board_task.heads:
            raise GridError(f"head {head!r} of task {task!r} is not declared by the task {list(info.heads)} "
                            f"and the board {list(board_task.heads)}; choose one of both with --head {task}=HEAD")
        # a task that trains nothing takes no --seeds: the board's one seed for it (check_board), as 100 % has draw 0 only
        seeds = (request.seeds if info.seeded else None) or board_task.seeds or protocol.seeds
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
                    for seed in seeds:
                        identity = CellIdentity(
                            board=board.name, backbone=loaded.spec.name, weights_sha256=loaded.weights_sha256,
                            task=task, dataset=dataset, partition=partition, head=head, fraction=fraction, draw=draw,
                            seed=seed, mode=mode,
                        )
                        identity.validate()
                        cells.append(Cell(identity, root, info, source.counts(partition, fraction, draw)))
    return cells



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
              backbones: Callable[[BackboneChoice, BackboneSpec], LoadedBackbone] | None = None) -> list[PlannedCell]:
    """Every cell of ``request`` (of its shard, when it names one), whether done or not.

    The shard is cut from the whole planned grid, so it never depends on what is done already.
    Nothing is written: the loop registers the backbones' board entries (:func:`~benchmark.grid.loop.run_grid`).
    """
    planned: list[PlannedCell] = []
    for choice in request.backbones:
        spec = choice.spec()
        loaded = backbones(choice, spec) if backbones else build_backbone(spec, choice.checkpoint, preprocess=request.preprocess)
        cells = plan_cells(board, request, loaded, summary, sources)
        planned += [PlannedCell(cell, choice, spec, loaded) for cell in cells]
    if not planned:
        missing = f"; not prepared under {request.data_dir}: {', '.join(summary.not_prepared)}" if summary.not_prepared else ""
        missing += "".join(f"; skipped: {reason}" for reason in summary.skipped)
        raise GridError(f"nothing to evaluate on board {board.name!r} for tasks {', '.join(request.tasks or ['all'])} and "
                        f"datasets {', '.join(request.datasets or ['all'])} (tasks that exist: {', '.join(task_names())}){missing}")
    if request.shard is not None:
        costs = cell_costs(board, [item.cell for item in planned])
        mine = set(shard_cells(list(costs), request.shard, costs.__getitem__))
        planned = [item for item in planned if item.cell.identity in mine]
    return planned

