"""Paired comparisons between board entries on the same test images.

A comparison is between two entries' runs on one (task, dataset, fraction, mode) column: the
mean-over-runs headline metric of each, tested on the test images both were scored on (their
test-split fingerprints and labels must match; predictions are aligned by image ID). Binary AUROC uses
DeLong; every other metric (macro AUROC, accuracy, Dice, mAP) the paired bootstrap
(``benchmark/scoring/compare.py``). A family of comparisons is corrected with the board's
method (Holm by default).

How a task's per-image files are read and scored on a subset of images is a
:class:`PairedScorer` in :data:`PAIRED_SCORERS`, keyed by task; detection and segmentation
register theirs next to their adapters, and nothing here changes.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol as TypingProtocol

import numpy as np

from benchmark.board.aggregate import CellAggregate
from benchmark.board.store import Board
from benchmark.records import RunRecord, write_atomically
from benchmark.registry import Registry
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.compare import (
    ComparisonError,
    PairedResult,
    adjust,
    delong_test,
    paired_bootstrap,
    with_run_variance,
)


@dataclass(frozen=True)
class PerImageRun:
    """One run's test-set outputs, rows in ``ids`` order."""

    ids: tuple[str, ...]
    targets: np.ndarray
    outputs: np.ndarray


class PairedScorer(TypingProtocol):
    def load(self, board: Board, record: RunRecord) -> PerImageRun: ...

    def statistic(self, dataset: str, metric: str, run: PerImageRun) -> Callable[[np.ndarray], float]:
        """metric of ``run`` on a vector of row indices."""

    def binary_auroc(self, dataset: str, metric: str) -> bool:
        """True when ``metric`` is a single binary AUROC (DeLong applies)."""


PAIRED_SCORERS: Registry[PairedScorer] = Registry("paired scorer")
CACHE_VERSION = 1  # bump when a test's computation changes


class ClassificationPairs:
    """Classification prediction/target CSVs (``benchmark/scoring/classification.py``)."""

    def load(self, board: Board, record: RunRecord) -> PerImageRun:
        return _load_classification(str(board.root / record.predictions.path),
                                    str(board.root / record.targets.path) if record.targets else "",
                                    record.identity.dataset,
                                    record.predictions.sha256 + (record.targets.sha256 if record.targets else ""))

    def statistic(self, dataset: str, metric: str, run: PerImageRun) -> Callable[[np.ndarray], float]:
        from benchmark.scoring.classification import METRICS, SCHEMES

        function, classes = METRICS.get(metric), SCHEMES.get(dataset).classes
        return lambda rows: function(run.targets[rows], run.outputs[rows], classes).value

    def binary_auroc(self, dataset: str, metric: str) -> bool:
        from benchmark.scoring.classification import SCHEMES

        return metric == "auroc" and len(SCHEMES.get(dataset).classes) == 1


@functools.lru_cache(maxsize=512)
def _load_classification(predictions: str, targets: str, dataset: str, content: str) -> PerImageRun:
    """Parsed files, memoised by path *and* content hash (``content``): a cell re-run at the same
    path with new predictions is read again, never served from memory."""
    del content  # part of the memo key only
    from benchmark.scoring.classification import SCHEMES, align, read_predictions, read_targets

    if not targets:
        raise ComparisonError(f"{predictions}: the record has no targets file, cannot compare")
    scheme = SCHEMES.get(dataset)
    target_frame = read_targets(Path(targets), scheme)
    scores = align(read_predictions(Path(predictions), scheme), target_frame, Path(predictions))
    return PerImageRun(tuple(target_frame.index), target_frame.to_numpy(), scores.to_numpy())


PAIRED_SCORERS.add("classification", ClassificationPairs())


def paired_scorer(task: str) -> PairedScorer:
    """The task's paired scorer; task packages (which may register one) are imported first."""
    if task not in PAIRED_SCORERS:
        from tasks.registry import all_tasks

        all_tasks()
    if task not in PAIRED_SCORERS:
        raise ComparisonError(f"no paired scorer for task {task!r}: register one in "
                              f"benchmark.board.compare.PAIRED_SCORERS next to the task adapter")
    return PAIRED_SCORERS.get(task)


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


def _runs_of(board: Board, records: list[RunRecord], cell: CellAggregate) -> list[RunRecord]:
    keys = {run.record for run in cell.runs}
    return [r for r in records if r.identity.entry_key == cell.entry and r.identity.cell_key in keys]


def _cache_path(board: Board, a: CellAggregate, runs_a: list[RunRecord], runs_b: list[RunRecord]) -> Path:
    """Where the result of one comparison is kept: keyed by the content of every file it reads."""
    def files(runs: list[RunRecord]) -> list[str]:
        return sorted(r.predictions.sha256 + (r.targets.sha256 if r.targets else "") for r in runs)

    payload = {"version": CACHE_VERSION, "task": a.task, "dataset": a.dataset, "metric": a.metric,
               "a": files(runs_a), "b": files(runs_b), "settings": asdict(board.protocol.comparison)}
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    return board.root / ".cache" / "comparisons" / f"{key}.json"


def compare_cells(board: Board, records: list[RunRecord], a: CellAggregate, b: CellAggregate) -> PairedResult:
    """Paired test of ``a``'s mean-over-runs metric against ``b``'s on the same test images.

    Results are cached under the board's ``.cache/`` by the hashes of the files they read, so
    re-rendering a board only tests the pairs whose runs changed.
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
    scorer = paired_scorer(a.task)
    loaded_a = [scorer.load(board, r) for r in runs_a]
    loaded_b = [scorer.load(board, r) for r in runs_b]
    reference_ids = loaded_a[0].ids
    order = {image: row for row, image in enumerate(reference_ids)}
    aligned = []
    for run in loaded_a + loaded_b:
        if set(run.ids) != set(reference_ids):
            raise ComparisonError(f"{a.dataset}: runs cover different test images; cannot pair them")
        rows = np.array([order[image] for image in run.ids])
        inverse = np.empty_like(rows)
        inverse[rows] = np.arange(rows.size)
        aligned.append(PerImageRun(reference_ids, run.targets[inverse], run.outputs[inverse]))
    if any(not np.array_equal(run.targets, aligned[0].targets) for run in aligned[1:]):
        raise ComparisonError(f"{a.dataset}: {a.entry} and {b.entry} were scored against different labels for the "
                              f"same test images (datasets prepared differently?); re-run them on one preparation")
    aligned_a, aligned_b = aligned[:len(loaded_a)], aligned[len(loaded_a):]
    if scorer.binary_auroc(a.dataset, a.metric):
        targets = aligned_a[0].targets.reshape(-1)
        return delong_test(targets, [run.outputs.reshape(-1) for run in aligned_a],
                           [run.outputs.reshape(-1) for run in aligned_b])
    settings = board.protocol.comparison
    options = BootstrapOptions(n_resamples=settings.bootstrap_resamples, seed=settings.bootstrap_seed)
    return paired_bootstrap([scorer.statistic(a.dataset, a.metric, run) for run in aligned_a],
                            [scorer.statistic(b.dataset, b.metric, run) for run in aligned_b],
                            len(reference_ids), options)


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
    """Per column: the best entry (highest mean) and the entries not significantly below it.

    Each column is one family (best vs every other entry, corrected). Returns
    ``{column: {"best": entry, "ties": [entries], "comparisons": [Comparison]}}``.
    """
    by_column: dict[tuple, list[CellAggregate]] = {}
    for cell in cells:
        by_column.setdefault(cell.column, []).append(cell)
    out: dict[tuple, dict[str, object]] = {}
    for column, members in by_column.items():
        best = max(members, key=lambda cell: cell.mean)
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
