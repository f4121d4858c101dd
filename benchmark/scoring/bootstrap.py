"""Seeded percentile bootstrap over test images.

A statistic is any function of a vector of row indices (a resample of the test set) that
returns a float, so the same resampling serves a single system's confidence interval here and
paired comparisons elsewhere (draw the indices once, apply them to both systems). Resamples
on which the statistic is undefined (NaN, e.g. an AUROC on a resample holding a single class)
are left out and counted, never turned into an error or a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 0
DEFAULT_CONFIDENCE = 0.95


@dataclass(frozen=True)
class BootstrapOptions:
    n_resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED
    confidence: float = DEFAULT_CONFIDENCE


@dataclass(frozen=True)
class ConfidenceInterval:
    value: float  # the statistic on the full test set
    low: float  # percentile interval over the valid resamples; NaN when none was valid
    high: float
    confidence: float
    n_resamples: int
    n_valid: int  # resamples on which the statistic was defined
    seed: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def resample_indices(n_items: int, options: BootstrapOptions = BootstrapOptions()) -> np.ndarray:
    """``[n_resamples, n_items]`` row indices drawn with replacement from ``options.seed``."""
    if n_items < 1:
        raise ValueError("bootstrap needs at least one item")
    if options.n_resamples < 1:
        raise ValueError(f"n_resamples must be positive, got {options.n_resamples}")
    return np.random.default_rng(options.seed).integers(0, n_items, size=(options.n_resamples, n_items))


def resample_weights(n_items: int, options: BootstrapOptions = BootstrapOptions(), chunk: int = 250) -> Iterator[np.ndarray]:
    """The resamples of :func:`resample_indices` as image multiplicities, ``[<=chunk, n_items]`` at a time.

    Row r counts how often each item appears in resample r, so a metric written as a weighted sum
    over images (``PerImageRun.metric``) evaluates many resamples in one vectorised call.
    """
    indices = resample_indices(n_items, options)
    for start in range(0, len(indices), chunk):
        block = indices[start:start + chunk]
        offsets = (block + n_items * np.arange(len(block))[:, None]).ravel()
        yield np.bincount(offsets, minlength=len(block) * n_items).reshape(len(block), n_items).astype(np.float64)


def percentile_interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile interval of the finite ``values`` (NaN, NaN when there are none)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def bootstrap_ci(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    options: BootstrapOptions = BootstrapOptions(),
) -> ConfidenceInterval:
    """Value of ``statistic`` on all rows, with a seeded percentile interval over resamples."""
    full = float(statistic(np.arange(n_items)))
    values = np.array([statistic(rows) for rows in resample_indices(n_items, options)], dtype=float)
    low, high = percentile_interval(values, options.confidence)
    return ConfidenceInterval(
        value=full, low=low, high=high, confidence=options.confidence, n_resamples=options.n_resamples,
        n_valid=int(np.isfinite(values).sum()), seed=options.seed,
    )


def bootstrap_ci_weighted(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    options: BootstrapOptions = BootstrapOptions(),
) -> ConfidenceInterval:
    """:func:`bootstrap_ci` for a statistic of image multiplicities ``[R, n] -> [R]`` (vectorised).

    Same resamples as :func:`bootstrap_ci` (:func:`resample_weights`), so both give the same
    interval; this one evaluates hundreds of resamples per call.
    """
    full = float(statistic(np.ones((1, n_items)))[0])
    values = np.concatenate([statistic(weights) for weights in resample_weights(n_items, options)])
    low, high = percentile_interval(values, options.confidence)
    return ConfidenceInterval(
        value=full, low=low, high=high, confidence=options.confidence, n_resamples=options.n_resamples,
        n_valid=int(np.isfinite(values).sum()), seed=options.seed,
    )
