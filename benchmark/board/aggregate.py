"""Aggregate run records into board cells: mean ± std over seeds and draws, and a 95% interval.

The interval combines two sources of uncertainty (LANDSCAPE.md: nobody reports both):

* run variance (training seed, label-fraction draw): the sample variance ``s²`` of the ``n``
  run scores ``x_r``; it shrinks with more runs: ``v_runs = s² / n``;
* test-set variance: every run is scored on the *same* test images, so this error is shared
  by all runs and does not average out; it is the mean of the runs' bootstrap variances,
  ``v_test = mean_r(se_r²)``, with ``se_r`` the run's test-set bootstrap standard error.

    mean  m  = mean_r(x_r)
    SE       = sqrt(v_runs + v_test)
    df       = SE⁴ / (v_runs² / (n - 1))      (Welch-Satterthwaite; the bootstrap term is taken
                                               to have infinite degrees of freedom)
    95% CI   = m ± t(0.975, df) · SE            (t = normal quantile when n = 1 or v_runs = 0),
               clipped to the metric's declared range (``MetricSpec``: [0, 1] for AUROC, accuracy,
               Dice and mAP)

With one run the interval is the test-set interval alone; with no bootstrap error recorded it
is the usual t interval over runs. Raw per-run scores are kept in every aggregate, so any other
summary can be recomputed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from benchmark.records import RunRecord
from benchmark.scoring import MetricSpec


@dataclass(frozen=True)
class RunScore:
    draw: int
    seed: int
    value: float
    bootstrap_se: float | None
    record: str  # cell key of the run record, to trace the number back


@dataclass(frozen=True)
class CellAggregate:
    """One board cell: an entry's runs of one head on one (task, dataset, fraction, mode)."""

    entry: str  # entry key name@sha12
    backbone: str
    task: str
    dataset: str
    partition: str
    head: str
    fraction: int
    mode: str
    metric: str
    runs: tuple[RunScore, ...]
    mean: float
    std: float | None  # sample std over runs (ddof = 1); None with a single run
    se_runs: float  # sqrt(v_runs)
    se_test: float | None  # sqrt(v_test); None when no run recorded a bootstrap error
    se: float
    df: float  # math.inf when the normal quantile applies
    ci_low: float
    ci_high: float

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def column(self) -> tuple[str, str, int, str]:
        return (self.task, self.dataset, self.fraction, self.mode)

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["n"] = self.n
        data["df"] = None if math.isinf(self.df) else self.df
        return data


def combine(values: list[float], bootstrap_ses: list[float | None],
            spec: MetricSpec) -> tuple[float, float | None, float, float | None, float, float, tuple[float, float]]:
    """(mean, std, se_runs, se_test, se, df, (low, high)) by the formula in the module docstring."""
    x = np.asarray(values, dtype=float)
    n = x.size
    if n == 0:
        raise ValueError("no runs to aggregate")
    mean = float(x.mean())
    std = float(x.std(ddof=1)) if n > 1 else None
    v_runs = (std ** 2) / n if std is not None else 0.0
    known = [se for se in bootstrap_ses if se is not None]
    v_test = float(np.mean(np.square(known))) if known else None
    variance = v_runs + (v_test or 0.0)
    se = math.sqrt(variance)
    df = variance ** 2 / (v_runs ** 2 / (n - 1)) if v_runs > 0 else math.inf
    quantile = float(stats.t.ppf(0.975, df)) if math.isfinite(df) else float(stats.norm.ppf(0.975))
    low, high = spec.clip(mean - quantile * se), spec.clip(mean + quantile * se)
    return (mean, std, math.sqrt(v_runs), None if v_test is None else math.sqrt(v_test), se, df, (low, high))


def shown_runs(records: list[RunRecord], modes: dict[str, str], heads: dict[str, tuple[str, ...]]) -> list[RunRecord]:
    """The runs a table shows: each task's selected mode, and one head per entry and task.

    An entry evaluated with several heads of a task (YOLOv3 and Faster R-CNN) is shown with the
    head it has most runs of, ties going to the board's first-declared head (``heads[task]``);
    every run stays in the exports.
    """
    in_mode = [r for r in records if modes.get(r.identity.task) == r.identity.mode]
    counts: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for record in in_mode:
        counts[(record.identity.entry_key, record.identity.task)][record.identity.head] += 1
    declared = {task: {head: rank for rank, head in enumerate(order)} for task, order in heads.items()}

    def preference(task: str, head: str, runs: int) -> tuple[int, int, str]:
        return (-runs, declared.get(task, {}).get(head, len(declared.get(task, {}))), head)

    chosen = {key: min(by_head, key=lambda head: preference(key[1], head, by_head[head])) for key, by_head in counts.items()}
    return [r for r in in_mode if chosen[(r.identity.entry_key, r.identity.task)] == r.identity.head]


def aggregate(records: list[RunRecord], spec_of: Callable[[str, str], MetricSpec]) -> list[CellAggregate]:
    """One :class:`CellAggregate` per (entry, task, dataset, partition, head, fraction, mode);
    ``spec_of(task, dataset)``: the headline metric's spec (``BoardProtocol.metric``)."""
    groups: dict[tuple, list[RunRecord]] = defaultdict(list)
    for record in records:
        groups[record.identity.group_key].append(record)
    cells = []
    for (entry, task, dataset, partition, head, fraction, mode), runs in sorted(groups.items()):
        runs.sort(key=lambda r: (r.identity.draw, r.identity.seed))
        metric = runs[0].headline_metric
        scores = tuple(RunScore(r.identity.draw, r.identity.seed, r.headline.value, r.headline.bootstrap_se,
                                r.identity.cell_key) for r in runs)
        mean, std, se_runs, se_test, se, df, (low, high) = combine(
            [s.value for s in scores], [s.bootstrap_se for s in scores], spec_of(task, dataset))
        cells.append(CellAggregate(
            entry=entry, backbone=runs[0].identity.backbone, task=task, dataset=dataset, partition=partition,
            head=head, fraction=fraction, mode=mode, metric=metric, runs=scores, mean=mean, std=std, se_runs=se_runs,
            se_test=se_test, se=se, df=df, ci_low=low, ci_high=high,
        ))
    return cells
