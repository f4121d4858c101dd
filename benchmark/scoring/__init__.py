"""Scoring: one scorer per task family, bootstrap intervals and paired comparisons.

A task's scorer (:class:`TaskScorer`, registered in :data:`SCORERS` by its module in this
package) does two things from a run's saved files:

- ``score_files``: every metric with a seeded bootstrap interval, as a :class:`ScoreReport`
  (``benchmark/scoring/report.py``) whose ``to_dict()`` is the JSON that
  ``python -m benchmark score <task>`` prints and whose ``metric_values()`` the runner stores
  in the run record::

      {"task": ..., "dataset": ..., "primary_metric": ..., "n_images": n,
       "n_positive_images": m (segmentation only),
       "metrics": {name: {"value", "low", "high", "confidence", "n_resamples", "n_valid", "seed",
                          "per_class": {...} (optional)}},
       "warnings": [...], "predictions": ..., "targets": ...}

- ``per_image``: the per-image statistics of one run, computed once (:class:`PerImageRun`),
  from which the paired comparison evaluates the headline metric on thousands of resampled
  image sets, vectorised (``benchmark/scoring/compare.py``).
- ``metrics``: a :class:`MetricSpec` per metric (label, range, direction, display scale), which
  the board's aggregates, paired tests, best-of marks and tables read instead of assuming one.
- ``headline``: which of them is a dataset's headline metric (the number a board shows), the one
  place that says so (:func:`headline_spec`).
- ``target_set``: the digest of a targets file's ground truth alone (:class:`TargetSet`), which
  a board pins per (dataset, partition, test split) so that no record is scored on other labels.
- ``chance`` (optional): one run's metric against chance, a one-sided test against the null its
  :class:`MetricSpec` declares (``MetricSpec.chance``, a key of
  ``benchmark.scoring.chance.NULLS``), computed from the run's files (:func:`chance_test`).

:func:`scorer` imports this package's modules on demand, so ``score detection`` does not
need the detection task package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from benchmark.registry import Registry, RegistryError

if TYPE_CHECKING:
    from benchmark.scoring.bootstrap import BootstrapOptions
    from benchmark.scoring.chance import ChanceResult
    from benchmark.scoring.report import ScoreReport


@dataclass(frozen=True)
class PerImageRun:
    """One run's test set reduced to what a resampled metric needs.

    ``metric(weights)`` takes image multiplicities ``weights[R, n]`` (row r: how often each test
    image, in ``ids`` order, appears in resample r; all ones is the full test set) and returns
    the metric of each resample ``[R]`` (NaN where it is undefined).
    """

    ids: tuple[str, ...]
    labels_digest: str  # hash of the ground truth in sorted-id order: runs scored on other labels never pair
    metric: Callable[[np.ndarray], np.ndarray]
    # (targets, scores) in ``ids`` order when the metric is one binary AUROC: DeLong applies exactly
    binary_auroc: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class TargetSet:
    """A test split's ground truth as a scorer reads it, reduced to what a board pins."""

    digest: str  # equals PerImageRun.labels_digest of every run scored on these targets
    geometry: str = ""  # "" when the targets do not depend on the model; "HxW" for masks at its input size


@dataclass(frozen=True)
class MetricSpec:
    """What a board needs to know of a metric: how to label it, its range, which way is better, how to show it."""

    name: str
    label: str  # column wording, e.g. "AUROC"
    low: float = 0.0  # the metric's range: intervals are clipped to it
    high: float = 1.0
    higher_is_better: bool = True  # which end the best entry of a column is at
    scale: float = 100.0  # shown as value × scale (a fraction in [0, 1] as a percentage)
    chance: str = ""  # the null it is tested against for "beats chance" (benchmark.scoring.chance.NULLS); "" none

    def clip(self, value: float) -> float:
        return min(self.high, max(self.low, value))

    def shown(self, value: float) -> float:
        return self.scale * value

    def ranking(self, value: float) -> float:
        """A key under which larger is better, whichever way the metric runs."""
        return value if self.higher_is_better else -value


class TaskScorer(Protocol):
    metrics: Mapping[str, MetricSpec]  # every metric score_files reports, declared

    def headline(self, dataset: str) -> str:
        """The name of ``dataset``'s headline metric (a key of ``metrics``); an unknown dataset raises."""

    def score_files(self, predictions: Path, targets: Path, dataset: str, options: BootstrapOptions) -> ScoreReport:
        """Every metric of the prediction file against the targets file."""

    def per_image(self, predictions: Path, targets: Path, dataset: str, metric: str) -> PerImageRun:
        """Per-image statistics of ``metric`` for paired resampling."""

    def target_set(self, targets: Path, dataset: str) -> TargetSet:
        """The digest (and geometry) of the ground truth in ``targets``, validated as for scoring."""

    # Optional, and required once a spec declares a null (MetricSpec.chance): ``chance(predictions, targets,
    # dataset, metric) -> ChanceResult``, the run's ``metric`` against that null (benchmark/scoring/chance.py).


SCORERS: Registry[TaskScorer] = Registry("scorer")


def unique_string_ids(ids: np.ndarray, path: Path, array: str, item: str, error: type[Exception]) -> list[str]:
    """The IDs of an NPZ array as strings; ``error`` naming ``path`` when the array is not a 1-D string array or
    repeats an ID (the NPZ prediction files' one rule)."""
    if ids.ndim != 1 or ids.dtype.kind not in "US":
        raise error(f"{path}: {array!r} must be a 1-D string array, got {ids.dtype} {ids.shape}")
    values = [str(value) for value in ids]
    seen: set[str] = set()
    repeated = [value for value in values if value in seen or seen.add(value)]
    if repeated:
        raise error(f"{path}: {len(repeated)} duplicated {item}(s), e.g. {repeated[:3]}")
    return values


def record_target_set(scorer_name: str, targets: Path, dataset: str, partition: str) -> dict[str, str]:
    """A run record's ``target_set``: the board's pin key of ``targets`` and the scorer's digest of them."""
    from benchmark.records import target_pin_key

    found = scorer(scorer_name).target_set(Path(targets), dataset)
    return {"key": target_pin_key(dataset, partition, found.geometry), "digest": found.digest}


def metric_spec(scorer_name: str, metric: str) -> MetricSpec:
    """The declared spec of ``metric`` in scorer ``scorer_name``; an undeclared metric is an error."""
    specs = scorer(scorer_name).metrics
    if metric not in specs:
        raise RegistryError(f"scorer {scorer_name!r} declares no metric {metric!r}; it declares {sorted(specs)}")
    return specs[metric]


def headline_spec(scorer_name: str, dataset: str) -> MetricSpec:
    """The spec of ``dataset``'s headline metric as scorer ``scorer_name`` declares it: what a board's
    column of that dataset shows, ranks and clips. An unknown scorer or dataset, or an undeclared
    headline, raises :class:`RegistryError` naming what is known."""
    return metric_spec(scorer_name, scorer(scorer_name).headline(dataset))


def chance_test(scorer_name: str, predictions: Path, targets: Path, dataset: str, metric: str) -> ChanceResult:
    """One run's ``metric`` against chance, by the null its spec declares, from the run's files.

    A metric that declares no null, a scorer without a ``chance`` method, or a result against
    another null than the declared one is a :class:`~benchmark.scoring.chance.ChanceError` naming it.
    """
    from benchmark.scoring.chance import NULLS, ChanceError

    spec = metric_spec(scorer_name, metric)
    if not spec.chance:
        raise ChanceError(f"scorer {scorer_name!r} declares no chance null for {metric!r} (MetricSpec.chance)")
    NULLS.get(spec.chance)  # a declared null that does not exist fails here, by name
    test = getattr(scorer(scorer_name), "chance", None)
    if test is None:
        raise ChanceError(f"scorer {scorer_name!r} declares a chance null for {metric!r} but has no chance method")
    result = test(Path(predictions), Path(targets), dataset, metric)
    if result.null != spec.chance:
        raise ChanceError(f"scorer {scorer_name!r} tested {metric!r} against {result.null!r}; its spec declares {spec.chance!r}")
    return result


def scorer(name: str) -> TaskScorer:
    """The scorer registered as ``name``, after importing every module of this package."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SCORERS.get(name)
