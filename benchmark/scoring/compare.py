"""Paired comparisons of two systems on the same test images, and multiple-comparison corrections.

Why paired: two backbones scored on the same test images share the test-set noise, so the
variance of their *difference* is far smaller than the sum of their separate variances. An
unpaired test (lm-evaluation-harness' comparator) wastes that and calls real gaps ties.

- :func:`delong_test`: DeLong, DeLong & Clarke-Pearson (1988) test for two correlated binary
  AUROCs, with the midrank placement values of Sun & Xu (2014). Several runs per system (seeds,
  label draws) are handled exactly: the mean AUROC over runs is the AUROC-like mean of the
  run-averaged placement values, so the same variance formula applies to the run-averaged
  structural components.
- :func:`paired_bootstrap`: any metric (macro AUROC, accuracy, Dice, mAP). Each resample draws
  one set of test rows and evaluates *both* systems (all their runs) on it; the p-value is the
  two-sided bootstrap p-value of the difference, with resamples on which the metric is
  undefined (a single class) left out and counted.
- :func:`holm` and :func:`benjamini_hochberg`: adjusted p-values for a family of tests.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal, get_args

import numpy as np
from scipy import stats

from benchmark.scoring.bootstrap import BootstrapOptions, percentile_interval, resample_weights

Correction = Literal["holm", "bh", "none"]
CORRECTIONS: tuple[str, ...] = get_args(Correction)


class ComparisonError(ValueError):
    """Two systems cannot be compared as asked (different test rows, one class only, ...)."""


@dataclass(frozen=True)
class PairedResult:
    """Difference ``a - b`` of one metric on the same test images."""

    test: Literal["delong", "paired_bootstrap"]
    value_a: float
    value_b: float
    delta: float  # value_a - value_b
    ci_low: float  # 95% interval of the difference
    ci_high: float
    p_value: float  # two-sided, unadjusted
    se: float | None = None  # DeLong standard error of the difference
    n_resamples: int | None = None  # bootstrap only
    n_valid: int | None = None  # bootstrap resamples on which the metric was defined
    se_runs: float | None = None  # run (seed/draw) part of the error, when added by with_run_variance

    @property
    def se_test(self) -> float:
        """Test-set standard error of the difference (DeLong's, or the bootstrap interval's width / 3.92)."""
        if self.se is not None and self.se_runs is None:
            return self.se
        return (self.ci_high - self.ci_low) / (2 * stats.norm.ppf(0.975))

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# --------------------------------------------------------------------------- DeLong

def _midranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given their average rank."""
    return stats.rankdata(values, method="average")


def delong_components(y_true: np.ndarray, scores: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUROC and its structural components (placement values) for one score vector.

    ``v10[i]`` = P(score of positive i > score of a random negative) (+ half the ties), and
    ``v01[j]`` = P(score of a random positive > score of negative j); the AUROC is the mean of
    either. Computed with midranks in O(n log n) (Sun & Xu 2014, eqs. 7-9).
    """
    y_true = np.asarray(y_true).astype(bool)
    scores = np.asarray(scores, dtype=float)
    positives, negatives = scores[y_true], scores[~y_true]
    m, n = positives.size, negatives.size
    if m == 0 or n == 0:
        raise ComparisonError(f"AUROC needs both classes; got {m} positive and {n} negative test images")
    ranks_all = _midranks(np.concatenate([positives, negatives]))
    ranks_pos, ranks_neg = _midranks(positives), _midranks(negatives)
    v10 = (ranks_all[:m] - ranks_pos) / n
    v01 = 1.0 - (ranks_all[m:] - ranks_neg) / m
    return float(v10.mean()), v10, v01


def delong_test(
    y_true: np.ndarray,
    scores_a: np.ndarray | Sequence[np.ndarray],
    scores_b: np.ndarray | Sequence[np.ndarray],
) -> PairedResult:
    """DeLong test of AUROC(a) = AUROC(b) on the same test images.

    ``scores_a`` / ``scores_b``: one score vector, or several (one per run); with several, the
    compared quantity is the mean AUROC over that system's runs.
    """
    y_true = np.asarray(y_true)
    runs_a, runs_b = _as_runs(scores_a, y_true.size), _as_runs(scores_b, y_true.size)
    auc_a, v10_a, v01_a = _mean_components(y_true, runs_a)
    auc_b, v10_b, v01_b = _mean_components(y_true, runs_b)
    m, n = v10_a.size, v01_a.size
    if m < 2 or n < 2:
        raise ComparisonError(f"DeLong needs at least two positive and two negative images; got {m} and {n}")
    s10 = np.cov(np.vstack([v10_a, v10_b]))  # 2x2 covariance over positives
    s01 = np.cov(np.vstack([v01_a, v01_b]))
    contrast = np.array([1.0, -1.0])
    variance = float(contrast @ (s10 / m + s01 / n) @ contrast)
    delta = auc_a - auc_b
    if variance <= 0:  # identical placement values: no evidence of a difference
        se, p_value = 0.0, 1.0 if delta == 0 else 0.0
    else:
        se = variance ** 0.5
        p_value = float(2 * stats.norm.sf(abs(delta) / se))
    z = stats.norm.ppf(0.975)
    return PairedResult(
        test="delong", value_a=auc_a, value_b=auc_b, delta=delta,
        ci_low=delta - z * se, ci_high=delta + z * se, p_value=p_value, se=se,
    )


def _as_runs(scores: np.ndarray | Sequence[np.ndarray], n_items: int) -> np.ndarray:
    runs = np.atleast_2d(np.asarray(scores, dtype=float))
    if runs.shape[1] != n_items:
        raise ComparisonError(f"scores have {runs.shape[1]} test rows, the targets {n_items}")
    return runs


def _mean_components(y_true: np.ndarray, runs: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    parts = [delong_components(y_true, run) for run in runs]
    return (float(np.mean([auc for auc, _, _ in parts])),
            np.mean([v10 for _, v10, _ in parts], axis=0), np.mean([v01 for _, _, v01 in parts], axis=0))


# --------------------------------------------------------------------------- paired bootstrap

# image multiplicities [R, n] of R resamples -> metric of one run on each resample [R]
WeightedMetric = Callable[[np.ndarray], np.ndarray]


def paired_bootstrap(
    metrics_a: Sequence[WeightedMetric],
    metrics_b: Sequence[WeightedMetric],
    n_items: int,
    options: BootstrapOptions = BootstrapOptions(),
) -> PairedResult:
    """Bootstrap test of mean-over-runs metric(a) = mean-over-runs metric(b).

    Each element of ``metrics_a`` evaluates one run of system a on image multiplicities
    ``[R, n]`` (``benchmark.scoring.PerImageRun.metric``: per-image statistics computed once,
    resamples evaluated vectorised), so any task plugs in through its scorer. Every resample
    applies the *same* images to all runs of both systems. The p-value is
    ``2 * min(P*(delta <= 0), P*(delta >= 0))`` over the valid resamples with the +1 correction
    of Davison & Hinkley (1997), which never returns 0 from a finite number of resamples.
    """
    if not metrics_a or not metrics_b:
        raise ComparisonError("paired bootstrap needs at least one run per system")

    def mean_of(metrics: Sequence[WeightedMetric], weights: np.ndarray) -> np.ndarray:
        return np.mean([metric(weights) for metric in metrics], axis=0)

    everything = np.ones((1, n_items))
    value_a, value_b = float(mean_of(metrics_a, everything)[0]), float(mean_of(metrics_b, everything)[0])
    deltas = np.concatenate([mean_of(metrics_a, weights) - mean_of(metrics_b, weights)
                             for weights in resample_weights(n_items, options)])
    valid = deltas[np.isfinite(deltas)]
    if valid.size == 0:
        raise ComparisonError("the metric was undefined on every bootstrap resample (a single class in the test set?)")
    low, high = percentile_interval(valid, options.confidence)
    tail = min((valid <= 0).sum(), (valid >= 0).sum())
    p_value = min(1.0, 2 * (tail + 1) / (valid.size + 1))
    return PairedResult(
        test="paired_bootstrap", value_a=value_a, value_b=value_b, delta=value_a - value_b,
        ci_low=low, ci_high=high, p_value=float(p_value),
        n_resamples=options.n_resamples, n_valid=int(valid.size),
    )


DELTA_BOUND = 1.0  # |a - b| for metrics in [0, 1]


def with_run_variance(result: PairedResult, run_deltas: Sequence[float]) -> PairedResult:
    """Add the seed/draw variance of the difference to a test-set paired result.

    ``run_deltas`` are the per-run differences a_r - b_r of runs matched on (draw, seed). The test
    above conditions on the runs it was given; a gap that one lucky label draw produced is not a
    property of the backbone. With ``d`` the deltas (n >= 2): ``v_runs = var(d) / n``,
    ``SE = sqrt(v_runs + se_test²)``, Welch-Satterthwaite ``df = SE⁴ / (v_runs² / (n - 1))``,
    two-sided t p-value and interval (the board's aggregation formula, applied to the difference).
    """
    deltas = np.asarray(run_deltas, dtype=float)
    if deltas.size < 2:
        return result
    v_runs = float(deltas.var(ddof=1)) / deltas.size
    se_test = result.se_test
    se = float(np.sqrt(v_runs + se_test ** 2))
    if se == 0:
        return result
    df = se ** 4 / (v_runs ** 2 / (deltas.size - 1)) if v_runs > 0 else np.inf
    quantile = float(stats.t.ppf(0.975, df))
    p_value = float(2 * stats.t.sf(abs(result.delta) / se, df))
    # Every metric of the suite lies in [0, 1], so no difference leaves [-1, 1]; with two runs the
    # t quantile (12.7 at df = 1) would otherwise print intervals wider than the metric's range.
    low, high = max(-DELTA_BOUND, result.delta - quantile * se), min(DELTA_BOUND, result.delta + quantile * se)
    return replace(result, ci_low=low, ci_high=high, p_value=p_value, se=se, se_runs=float(np.sqrt(v_runs)))


# --------------------------------------------------------------------------- corrections

def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm (1979) step-down adjusted p-values: controls the family-wise error rate."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    k = p.size
    adjusted_sorted = np.maximum.accumulate((k - np.arange(k)) * p[order])
    adjusted = np.empty(k)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> np.ndarray:
    """Benjamini & Hochberg (1995) step-up adjusted p-values: controls the false discovery rate."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p, kind="stable")
    k = p.size
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(k)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return adjusted


_ADJUSTERS: dict[str, Callable[[Sequence[float]], np.ndarray]] = {
    "holm": holm, "bh": benjamini_hochberg, "none": lambda p: np.asarray(p, dtype=float),
}


def adjust(p_values: Sequence[float], method: Correction) -> np.ndarray:
    """Adjusted p-values of one family of tests (``holm``, ``bh`` or ``none``)."""
    if method not in _ADJUSTERS:
        raise ComparisonError(f"unknown correction {method!r}; one of {CORRECTIONS}")
    if len(p_values) == 0:
        return np.zeros(0)
    return _ADJUSTERS[method](p_values)
