"""Scoring: one scorer per task family, bootstrap intervals and paired comparisons.

A task's scorer (:class:`TaskScorer`, registered in :data:`SCORERS` by its module in this
package) does two things from a run's saved files:

- ``score_files``: every metric with a seeded bootstrap interval, as the JSON that
  ``python -m benchmark score <task>`` prints and the runner stores in the run record::

      {"task": ..., "dataset": ..., "primary_metric": ..., "n_images": n,
       "metrics": {name: {"value", "low", "high", "confidence", "n_resamples", "n_valid", "seed",
                          "per_class": {...} (optional)}},
       "warnings": [...]}

- ``per_image``: the per-image statistics of one run, computed once (:class:`PerImageRun`),
  from which the paired comparison evaluates the headline metric on thousands of resampled
  image sets, vectorised (``benchmark/scoring/compare.py``).

:func:`scorer` imports this package's modules on demand, so ``score detection`` does not
need the detection task package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from benchmark.registry import Registry

if TYPE_CHECKING:
    from benchmark.scoring.bootstrap import BootstrapOptions


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


class TaskScorer(Protocol):
    def score_files(self, predictions: Path, targets: Path, dataset: str, options: BootstrapOptions) -> dict:
        """Every metric of the prediction file against the targets file (JSON-ready)."""

    def per_image(self, predictions: Path, targets: Path, dataset: str, metric: str) -> PerImageRun:
        """Per-image statistics of ``metric`` for paired resampling."""


SCORERS: Registry[TaskScorer] = Registry("scorer")


def scorer(name: str) -> TaskScorer:
    """The scorer registered as ``name``, after importing every module of this package."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SCORERS.get(name)
