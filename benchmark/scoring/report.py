"""What a scorer's ``score_files`` returns: every metric of one prediction file, typed.

``python -m benchmark score`` prints :meth:`ScoreReport.to_dict` as JSON; the runner (and
``verify --rescore``, and the CPU selftest) store :meth:`ScoreReport.metric_values` in the run
record, so the board holds exactly the numbers the verb prints and nobody parses them back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from benchmark.records import MetricValue
from benchmark.scoring.bootstrap import ConfidenceInterval

# A percentile interval at 95 % spans about 2 · Z_95 standard errors: how a record's bootstrap_se is derived.
Z_95 = 1.959963984540054


def _finite(number: float) -> float | None:
    return float(number) if math.isfinite(number) else None


@dataclass(frozen=True)
class ScoredMetric:
    """One metric on the full test set with its bootstrap interval (value and bounds NaN where undefined)."""

    interval: ConfidenceInterval
    per_class: Mapping[str, float] | None = None  # the per-class values it is the mean of (classification)

    @property
    def value(self) -> float:
        return self.interval.value

    def to_dict(self) -> dict[str, Any]:
        """``value, low, high, confidence, n_resamples, n_valid, seed`` and, when there is one, ``per_class``."""
        out: dict[str, Any] = self.interval.as_dict()
        if self.per_class is not None:
            out["per_class"] = dict(self.per_class)
        return out


@dataclass(frozen=True)
class ScoreReport:
    """Every metric a scorer computes from one prediction file against its targets file."""

    task: str  # the scorer's task family
    dataset: str | None  # whose metric definitions applied (None where the scorer has one for all)
    primary_metric: str  # the scorer's headline metric
    n_images: int  # test images scored
    metrics: Mapping[str, ScoredMetric]
    warnings: tuple[str, ...]  # why a metric or some bootstrap resamples are undefined, and similar facts
    predictions: str  # the files scored, as given
    targets: str
    n_positive_images: int | None = None  # segmentation: test images whose ground-truth mask is not empty

    def to_dict(self) -> dict[str, Any]:
        """The JSON the ``score`` verb prints (undefined values stay NaN here; the printer writes null)."""
        out: dict[str, Any] = {"task": self.task, "dataset": self.dataset, "primary_metric": self.primary_metric,
                               "n_images": self.n_images}
        if self.n_positive_images is not None:
            out["n_positive_images"] = self.n_positive_images
        out |= {"metrics": {name: metric.to_dict() for name, metric in self.metrics.items()},
                "warnings": list(self.warnings), "predictions": self.predictions, "targets": self.targets}
        return out

    @property
    def undefined(self) -> list[str]:
        """Metrics with no value on this test set (NaN): a record leaves them out."""
        return [name for name, metric in self.metrics.items() if _finite(metric.value) is None]

    def metric_values(self) -> dict[str, MetricValue]:
        """The defined metrics as a run record stores them, per-class components as ``name[class]``.

        The standard error is read off the percentile interval as ``(high - low) / (2 * Z_95)``.
        """
        values = {}
        for name, metric in self.metrics.items():
            value = _finite(metric.value)
            if value is None:
                continue
            low, high = _finite(metric.interval.low), _finite(metric.interval.high)
            se = (high - low) / (2 * Z_95) if low is not None and high is not None else None
            values[name] = MetricValue(value, low, high, se)
            for part, number in (metric.per_class or {}).items():
                if _finite(number) is not None:
                    values[f"{name}[{part}]"] = MetricValue(float(number))
        return values

    def notes(self) -> list[str]:
        """What a run record's notes say of the scoring: each metric left out, then the scorer's warnings."""
        return [f"metric {name} undefined on this test set (left out)" for name in self.undefined] + list(self.warnings)
