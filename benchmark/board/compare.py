"""Paired comparisons between board entries on the same test images.

A comparison is between two entries' runs on one (task, dataset, fraction, mode) column: the
mean-over-runs headline metric of each, tested on the test images both were scored on (their
test-split fingerprints and labels must match; images are aligned by ID). The record's scorer
(``RunRecord.scorer``, a key of ``benchmark.scoring.SCORERS``) reduces every run to per-image
statistics once (:class:`benchmark.scoring.PerImageRun`); a single binary AUROC is tested
exactly with DeLong, every other metric (macro AUROC, accuracy, mAP, Dice) with the vectorised
paired bootstrap over images. A family of comparisons is corrected with the board's method
(Holm by default). Nothing here knows a task: a new task brings its scorer and nothing changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmark.board.aggregate import CellAggregate
from benchmark.board.integrity import local_cache_dir
from benchmark.board.protocol import BoardError, BoardProtocol
from benchmark.board.store import Board
from benchmark.files import write_atomically
from benchmark.records import RunRecord
from benchmark.scoring import PerImageRun, chance_test, scorer
from benchmark.scoring.chance import ChanceError, ChanceResult, all_runs
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.compare import (
    ComparisonError,
    PairedResult,
    adjust,
    delong_test,
    paired_bootstrap,
    with_run_variance,
)

CACHE_VERSION = 2  # bump when a test's computation changes


def per_image_run(board: Board, record: RunRecord) -> PerImageRun:
    """The record's per-image statistics of its headline metric, from its saved files (memoised)."""
    return _per_image(record.scorer, str(board.artifact_file(record.predictions)), str(board.artifact_file(record.targets)),
                      record.identity.dataset, record.headline_metric, record.predictions.sha256 + record.targets.sha256)


@functools.lru_cache(maxsize=512)
def _per_image(scorer_name: str, predictions: str, targets: str, dataset: str, metric: str, content: str) -> PerImageRun:
    """Memoised by path *and* content hash (``content``): a cell re-run at the same path with new
    predictions is read again, never served from memory."""
    del content  # part of the memo key only
    return scorer(scorer_name).per_image(Path(predictions), Path(targets), dataset, metric)


def chance_of_cell(board: Board, records: list[RunRecord], cell: CellAggregate) -> ChanceResult:
    """``cell``'s headline metric against chance: each run tested from its saved files by the null its
    metric declares (``benchmark/scoring/chance.py``), the runs combined by their largest p (``all_runs``).
    A metric without a declared null raises :class:`~benchmark.scoring.chance.ChanceError`."""
    return all_runs([_chance_of_run(board, record, record.headline_metric) for record in _runs_of(board, records, cell)])


def secondary_chance_metrics(board: Board, records: list[RunRecord], cell: CellAggregate) -> tuple[str, ...]:
    """The declared metrics besides ``cell``'s headline that its runs report and that have a chance test on
    their files (a declared null whose test applies to this dataset, tried on the first run), in the
    record's order: what to name when the headline has no test. Only the names come back: a
    column is tested against chance on the number the board shows, its headline."""
    runs = _runs_of(board, records, cell)
    if not runs:
        return ()
    first, testable = runs[0], []
    declared = scorer(first.scorer).metrics  # a record also holds undeclared details, e.g. "auroc[Edema]"
    for metric in first.metrics:
        if metric == first.headline_metric or metric not in declared or not declared[metric].chance:
            continue
        try:
            _chance_of_run(board, first, metric)
        except ChanceError:
            continue
        testable.append(metric)
    return tuple(testable)


def _chance_of_run(board: Board, record: RunRecord, metric: str) -> ChanceResult:
    return _chance(record.scorer, str(board.artifact_file(record.predictions)), str(board.artifact_file(record.targets)),
                   record.identity.dataset, metric, record.predictions.sha256 + record.targets.sha256)


@functools.lru_cache(maxsize=512)
def _chance(scorer_name: str, predictions: str, targets: str, dataset: str, metric: str, content: str) -> ChanceResult:
    """Memoised by path and content hash, as :func:`_per_image`."""
    del content  # part of the memo key only
    return chance_test(scorer_name, Path(predictions), Path(targets), dataset, metric)


@dataclass(frozen=True)
class Comparison:
    """Entry a vs entry b on one column, with the family-corrected p-value."""

    a: str
    b: str
    task: str
    dataset: str
    fraction: int
    mode: str
    metric: str
    result: PairedResult
    p_adjusted: float
    significant: bool


Column = tuple[str, str, int, str]  # (task, dataset, fraction, mode), as CellAggregate.column


def grid_columns(protocol: BoardProtocol, modes: dict[str, str], tasks: tuple[str, ...] | None = None,
                 datasets: tuple[str, ...] | None = None, fractions: tuple[int, ...] | None = None) -> list[Column]:
    """The board's columns that a selection names (``None``: all), each task in its mode of ``modes``.

    A check over "every column selected" must know the columns that should be there, not only the
    ones that happen to have runs: a task, dataset or fraction named here that the board's grid
    does not have is a :class:`BoardError` listing what it has.
    """
    for task in tasks or ():
        protocol.task(task)  # not on the board: BoardError naming the board's tasks
    chosen = {task: item for task, item in protocol.tasks.items() if tasks is None or task in tasks}
    offered = {"dataset": {ds for item in chosen.values() for ds in item.datasets},
               "fraction": {fr for item in chosen.values() for fr in item.fractions or protocol.fractions}}
    for kind, named in (("dataset", datasets), ("fraction", fractions)):
        unknown = sorted(set(named or ()) - offered[kind])
        if unknown:
            raise BoardError(f"{kind}(s) {unknown} not on board {protocol.board!r} for task(s) {sorted(chosen)}; "
                             f"it has {sorted(offered[kind])}")
    return sorted((task, dataset, fraction, modes[task]) for task, item in chosen.items()
                  for dataset in item.datasets if datasets is None or dataset in datasets
                  for fraction in item.fractions or protocol.fractions if fractions is None or fraction in fractions)


def _runs_of(board: Board, records: list[RunRecord], cell: CellAggregate) -> list[RunRecord]:
    keys = {run.record for run in cell.runs}
    return [r for r in records if r.identity.entry_key == cell.entry and r.identity.cell_key in keys]


def _cache_path(board: Board, a: CellAggregate, runs_a: list[RunRecord], runs_b: list[RunRecord]) -> Path:
    """Where the result of one comparison is kept: keyed by the content of every file it reads."""
    def files(runs: list[RunRecord]) -> list[str]:
        return sorted(r.predictions.sha256 + r.targets.sha256 for r in runs)

    payload = {"version": CACHE_VERSION, "task": a.task, "dataset": a.dataset, "metric": a.metric,
               "a": files(runs_a), "b": files(runs_b), "settings": asdict(board.protocol.comparison)}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return local_cache_dir() / "comparisons" / f"{key}.json"


def compare_cells(board: Board, records: list[RunRecord], a: CellAggregate, b: CellAggregate) -> PairedResult:
    """Paired test of ``a``'s mean-over-runs metric against ``b``'s on the same test images.

    Results are cached on this machine (``local_cache_dir()``, never in the board: a result shipped
    with a board would be believed) by the hashes of the files they read, so re-rendering a board
    only tests the pairs whose runs changed.
    """
    if a.column != b.column or a.metric != b.metric:
        raise ComparisonError(f"cannot compare {a.entry} {a.column} with {b.entry} {b.column}")
    runs_a, runs_b = _runs_of(board, records, a), _runs_of(board, records, b)
    cache = _cache_path(board, a, runs_a, runs_b)
    if cache.is_file():
        result = PairedResult(**json.loads(cache.read_text()))
    else:
        result = _test_pair(board, a, b, runs_a, runs_b)
        write_atomically(cache, json.dumps(result.as_dict()) + "\n")
    return with_run_variance(result, matched_run_deltas(a, b))


def matched_run_deltas(a: CellAggregate, b: CellAggregate) -> list[float]:
    """Per-run differences of runs with the same (draw, seed); empty unless both have the same runs."""
    values_a = {(run.draw, run.seed): run.value for run in a.runs}
    values_b = {(run.draw, run.seed): run.value for run in b.runs}
    if set(values_a) != set(values_b):
        return []
    return [values_a[key] - values_b[key] for key in sorted(values_a)]


def _test_pair(board: Board, a: CellAggregate, b: CellAggregate, runs_a: list[RunRecord],
               runs_b: list[RunRecord]) -> PairedResult:
    fingerprints = {r.split_fingerprints["test"] for r in runs_a + runs_b}
    if len(fingerprints) != 1:
        raise ComparisonError(f"{a.entry} and {b.entry} were scored on different test splits of {a.dataset}")
    loaded = [per_image_run(board, record) for record in runs_a + runs_b]
    reference = loaded[0].ids
    position = {image: row for row, image in enumerate(reference)}
    if any(set(run.ids) != set(reference) for run in loaded):
        raise ComparisonError(f"{a.dataset}: runs cover different test images; cannot pair them")
    if len({run.labels_digest for run in loaded}) != 1:
        raise ComparisonError(f"{a.dataset}: {a.entry} and {b.entry} were scored against different labels for the "
                              f"same test images (datasets prepared differently?); re-run them on one preparation")
    # Weights come in the reference's image order; each run reads them in its own row order.
    orders = [np.array([position[image] for image in run.ids]) for run in loaded]
    metrics = [lambda weights, run=run, order=order: run.metric(weights[:, order]) for run, order in zip(loaded, orders)]
    n_a = len(runs_a)
    if all(run.binary_auroc is not None for run in loaded):
        targets = loaded[0].binary_auroc[0][np.argsort(orders[0])]
        scores = [run.binary_auroc[1][np.argsort(order)] for run, order in zip(loaded, orders)]
        return delong_test(targets, scores[:n_a], scores[n_a:])
    settings = board.protocol.comparison
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    return paired_bootstrap(metrics[:n_a], metrics[n_a:], len(reference), options)


def correct(board: Board, pairs: list[tuple[CellAggregate, CellAggregate, PairedResult]],
            method: str | None = None) -> list[Comparison]:
    """Adjust one family of paired results and decide significance at the board's alpha."""
    settings = board.protocol.comparison
    adjusted = adjust([result.p_value for _, _, result in pairs], method or settings.correction)
    return [
        Comparison(a.entry, b.entry, a.task, a.dataset, a.fraction, a.mode, a.metric, result, float(p),
                   bool(p < settings.alpha))
        for (a, b, result), p in zip(pairs, adjusted)
    ]


def compare_entry(board: Board, records: list[RunRecord], cells: list[CellAggregate], entry: str,
                  method: str | None = None, skipped: list[str] | None = None) -> list[Comparison]:
    """``entry`` against every reference entry on every column both have: one corrected family.

    Pairs that cannot be compared (different test images, no paired scorer) are left out of the
    family and described in ``skipped`` when given.
    """
    references = {key for key, info in board.entries().items() if info.role == "reference"}
    mine = {cell.column: cell for cell in cells if cell.entry == entry}
    pairs = []
    for other in cells:
        if other.entry == entry or other.entry not in references or other.column not in mine:
            continue
        try:
            pairs.append((mine[other.column], other, compare_cells(board, records, mine[other.column], other)))
        except ComparisonError as error:
            if skipped is not None:
                skipped.append(f"{other.task}/{other.dataset} {other.fraction}% vs {other.entry}: {error}")
    return correct(board, pairs, method)


def ties_with_best(board: Board, records: list[RunRecord], cells: list[CellAggregate]) -> dict[tuple, dict[str, object]]:
    """Per column: the best entry (highest mean, lowest for a metric where lower is better) and the
    entries not significantly different from it.

    Each column is one family (best vs every other entry, corrected). Returns
    ``{column: {"best": entry, "ties": [entries], "comparisons": [Comparison]}}``.
    """
    by_column: dict[tuple, list[CellAggregate]] = {}
    for cell in cells:
        by_column.setdefault(cell.column, []).append(cell)
    out: dict[tuple, dict[str, object]] = {}
    for column, members in by_column.items():
        spec = board.protocol.metric(column[0], column[1])
        best = max(members, key=lambda cell: spec.ranking(cell.mean))
        pairs = []
        for other in members:
            if other.entry == best.entry:
                continue
            try:
                pairs.append((best, other, compare_cells(board, records, best, other)))
            except ComparisonError:
                continue  # not comparable (different test images): never marked as a tie
        comparisons = correct(board, pairs)
        out[column] = {"best": best.entry, "ties": [c.b for c in comparisons if not c.significant],
                       "comparisons": comparisons}
    return out
