"""One system's result against chance: does it beat a model that knows nothing about the images?

A zero-shot or retrieval number means little until it is shown to be above what a model without
any information reaches. Each test here is one-sided (is the value *above* chance?) and exact,
standard or Monte Carlo with a fixed seed for its metric; the null hypothesis is always "the
model's outputs are independent of the ground truth", and the chance level is the metric's value
expected under it:

``independence`` (accuracy)
    One-sided permutation test of top-1 accuracy: the test set's labels are permuted against the
    predicted classes, which keeps both margins (how often each class is true, how often each is
    predicted) and breaks only their pairing, so it asks whether the predictions carry information
    about the labels. The chance level is the accuracy expected under the null,
    ``sum_k q_k * pi_k`` (``q``: the share of images predicted as class k, ``pi``: the class shares
    of the test set); a model that always answers one class sits exactly on it (p = 1), however
    large that class. ``PERMUTATIONS`` draws from ``np.random.default_rng(PERMUTATION_SEED)``, and
    p = (1 + draws at least as accurate) / (1 + draws), the standard Monte Carlo p-value (it counts
    the observed labelling as one draw: valid, P(p <= alpha) <= alpha under the null, and never 0;
    Phipson and Smyth 2010). Its smallest value, 1/20001, lets Holm at alpha = 0.05 reject over up to
    1000 columns. Not a test against the majority-class share: a model can predict far above
    chance while scoring below that share (a three-class set with half its images in one class),
    and a model that always answers the majority class reaches it with no information.
``mann_whitney`` (AUROC of one binary label)
    One-sided Mann-Whitney U test of AUROC = U / (n1 * n0) against 0.5 (scipy's ``mannwhitneyu``:
    the exact distribution for small samples without ties, else the normal approximation with
    the tie and continuity corrections).
``random_ranking_recall`` (recall@K: a query is a hit when a relevant item is among its top K)
    Under a random ranking of N candidates of which r are relevant, a query is a hit with
    probability ``1 - C(N - r, K) / C(N, K)`` (K / N for one relevant item), independently over
    queries: the number of hits is binomial (equal probabilities, scipy's exact ``binomtest``) or
    Poisson-binomial (the exact distribution, by convolution).
``random_ranking_precision`` (precision@K on a class-labelled pool)
    Under a random ranking the number of relevant items among a query's top K is hypergeometric
    (N candidates, r relevant, K drawn), independently over queries; the total over queries is
    tested against the exact distribution of a sum of hypergeometric counts (convolution); the
    chance precision is the mean of r / N.
``random_ranking_rank`` (median rank: the median over queries of the rank of each query's best relevant item)
    Under a random ranking of N candidates of which r are relevant, the rank of the first relevant
    one has the exact distribution ``P(rank <= k) = 1 - C(N - r, k) / C(N, k)``, k = 1 .. N - r + 1
    (:func:`rank_cdf`), independently over queries. The median of independent ranks with different
    distributions has no convenient closed form (for an even count it is the mean of two order
    statistics), so the test is Monte Carlo with the accuracy test's seed and draw count: each
    draw gives every query a rank from its exact distribution (inverse CDF of uniforms from
    ``np.random.default_rng(PERMUTATION_SEED)``) and takes the median as the metric does (numpy's:
    the mean of the two middle ranks for an even count); p = (1 + draws with a median at most the
    observed one) / (1 + draws), and the chance level is the mean median over the draws. It tests
    the reported median itself, not a mean or a rank sum standing in for it.

A metric without a declared null (macro-F1, Dice) has no test here: a scorer
declares per metric which null applies (``MetricSpec.chance``), and computes the test from its
files with the functions below (``TaskScorer.chance``). Several runs of one board column (label
draws, seeds) are combined by :func:`all_runs`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

from benchmark.registry import Registry


class ChanceError(ValueError):
    """No chance test applies as asked (an undeclared null, a single class, no query, ...)."""


@dataclass(frozen=True)
class ChanceNull:
    """A null hypothesis a metric can be tested against, described for people."""

    name: str
    metric_kind: str  # the kind of metric it applies to
    description: str


NULLS: Registry[ChanceNull] = Registry("chance null")
for _null in (
    ChanceNull("independence", "accuracy", "one-sided permutation test of accuracy, labels permuted against the "
               "predicted classes (both margins fixed; chance = sum_k p_pred(k) * p_true(k))"),
    ChanceNull("mann_whitney", "AUROC of one binary label", "one-sided Mann-Whitney U test of AUROC = U/(n1*n0) against 0.5"),
    ChanceNull("random_ranking_recall", "recall@K", "exact one-sided test of the hits against a random ranking "
               "(binomial, or Poisson-binomial when queries differ)"),
    ChanceNull("random_ranking_precision", "precision@K", "exact one-sided test of the relevant items in the top K "
               "against a random ranking (sum of hypergeometric counts)"),
    ChanceNull("random_ranking_rank", "median rank", "one-sided Monte Carlo test of the median rank against random "
               "rankings (each query's rank drawn from its exact distribution; chance = the mean null median)"),
):
    NULLS.add(_null.name, _null)


@dataclass(frozen=True)
class ChanceResult:
    """One run's metric against chance: its value, the value expected under the null, one-sided p."""

    null: str  # a key of NULLS
    test: str  # the test in a few words
    value: float  # the metric as the test computed it
    chance: float  # the metric's expected value under the null (its chance level)
    p_value: float  # one-sided: P(a result at least this good | null)
    n: int  # test items (images or queries)
    detail: str = ""  # what the null was, e.g. "predicted normal 35%, pneumonia 25%, COVID-19 40%; 70 of 120 correct"
    runs: int = 1  # runs combined (all_runs)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def p_text(p_value: float) -> str:
    """A p-value for people: three significant digits; below the range of a float it is not 0."""
    return "<1e-300" if p_value < 1e-300 else f"{p_value:.3g}"


# --------------------------------------------------------------------------- building blocks

def binomial_above(successes: int, trials: int, rate: float) -> float:
    """Exact one-sided binomial p-value P(X >= successes), X ~ Binomial(trials, rate)."""
    if trials <= 0:
        raise ChanceError("a binomial test needs at least one trial")
    if not 0 <= successes <= trials:
        raise ChanceError(f"{successes} successes in {trials} trials")
    if not 0 <= rate <= 1:
        raise ChanceError(f"a chance rate must lie in [0, 1], got {rate}")
    return float(stats.binomtest(int(successes), int(trials), float(rate), alternative="greater").pvalue)


def sum_distribution(pmfs: Sequence[np.ndarray]) -> np.ndarray:
    """The exact distribution of a sum of independent counts, ``pmfs[i][j] = P(X_i = j)``: their
    convolution. Equal distributions are grouped and raised to their multiplicity by squaring, so
    a thousand queries of one kind cost a few convolutions."""
    groups: dict[bytes, list] = {}
    for pmf in pmfs:
        pmf = np.asarray(pmf, dtype=np.float64)
        if pmf.ndim != 1 or pmf.size == 0 or (pmf < 0).any() or not np.isclose(pmf.sum(), 1.0):
            raise ChanceError(f"not a probability mass function over 0, 1, ...: {pmf.tolist()}")
        groups.setdefault(pmf.tobytes(), [pmf, 0])[1] += 1
    total = np.ones(1)
    for pmf, count in groups.values():
        power, base = np.ones(1), pmf
        while count:
            if count & 1:
                power = np.convolve(power, base)
            count >>= 1
            if count:
                base = np.convolve(base, base)
        total = np.convolve(total, power)
    return total


def sum_above(observed: int, pmfs: Sequence[np.ndarray]) -> float:
    """Exact one-sided p-value P(sum_i X_i >= observed) for independent counts with ``pmfs``."""
    if not len(pmfs):
        raise ChanceError("no counts to test")
    distribution = sum_distribution(pmfs)
    return float(min(1.0, max(0.0, distribution[max(0, int(observed)):].sum())))


def _as_per_query(value: int | Sequence[int] | np.ndarray, n_queries: int, what: str) -> np.ndarray:
    array = np.broadcast_to(np.asarray(value, dtype=np.int64), (n_queries,))
    if (array < 0).any():
        raise ChanceError(f"{what} must not be negative")
    return array


# --------------------------------------------------------------------------- tests

PERMUTATIONS = 20_000  # Monte Carlo draws of an accuracy test: its smallest p is 1 / 20001
PERMUTATION_SEED = 0  # the same files always give the same p
_PERMUTED_ELEMENTS = 1 << 22  # labels permuted per vectorised batch (bounds memory, not the result)


def matches_under_permutation(truth: np.ndarray, predicted: np.ndarray, permutations: int = PERMUTATIONS,
                              seed: int = PERMUTATION_SEED) -> np.ndarray:
    """For each of ``permutations`` uniform random permutations of ``truth`` (one label per image),
    how many images' permuted label equals their predicted class: the null distribution of the
    number correct when predictions and labels are independent with both margins fixed. Rows are
    permuted in batches by ``Generator.permuted``; each row consumes the stream in order, so the
    draws depend on ``seed``, not on the batch size."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if permutations <= 0:
        raise ChanceError(f"a permutation test needs at least one permutation, got {permutations}")
    rng = np.random.default_rng(seed)
    rows = max(1, _PERMUTED_ELEMENTS // truth.size)
    matches = np.empty(permutations, dtype=np.int64)
    for start in range(0, permutations, rows):
        stop = min(permutations, start + rows)
        permuted = rng.permuted(np.broadcast_to(truth, (stop - start, truth.size)), axis=1)
        matches[start:stop] = np.count_nonzero(permuted == predicted, axis=1)
    return matches


def accuracy_against_independence(truth: np.ndarray, predicted: np.ndarray, classes: Sequence[str],
                                  permutations: int = PERMUTATIONS, seed: int = PERMUTATION_SEED) -> ChanceResult:
    """Top-1 accuracy of ``predicted`` (class indices) against predictions independent of ``truth``
    (class indices): one-sided permutation test, labels permuted against the predicted classes
    (module docstring, ``independence``)."""
    truth, predicted = np.asarray(truth), np.asarray(predicted)
    if truth.shape != predicted.shape or truth.ndim != 1 or truth.size == 0:
        raise ChanceError(f"truth {truth.shape} and predictions {predicted.shape} must be one class index per image")
    if not (np.issubdtype(truth.dtype, np.integer) and np.issubdtype(predicted.dtype, np.integer)) or (
            min(truth.min(), predicted.min()) < 0 or max(truth.max(), predicted.max()) >= len(classes)):
        raise ChanceError(f"class indices must be integers in [0, {len(classes)}) for classes {list(classes)}")
    n = truth.size
    true_counts = np.bincount(truth, minlength=len(classes))
    predicted_counts = np.bincount(predicted, minlength=len(classes))
    correct = int(np.count_nonzero(truth == predicted))
    at_least = int(np.count_nonzero(matches_under_permutation(truth, predicted, permutations, seed) >= correct))
    shares = ", ".join(f"{name} {count / n:.0%}" for name, count in zip(classes, predicted_counts) if count)
    return ChanceResult(
        null="independence", test=f"permutation ({permutations})", value=correct / n,
        chance=float(true_counts @ predicted_counts) / n**2, p_value=(1 + at_least) / (1 + permutations), n=int(n),
        detail=f"predicted {shares}; {correct} of {n} correct",
    )


def auroc_against_half(targets: np.ndarray, scores: np.ndarray) -> ChanceResult:
    """AUROC of one binary label against 0.5: one-sided Mann-Whitney U test (``mann_whitney``)."""
    targets = np.asarray(targets).astype(bool)
    scores = np.asarray(scores, dtype=np.float64)
    positives, negatives = scores[targets], scores[~targets]
    if positives.size == 0 or negatives.size == 0:
        raise ChanceError(f"AUROC needs both classes; got {positives.size} positive and {negatives.size} negative images")
    test = stats.mannwhitneyu(positives, negatives, alternative="greater", method="auto")
    auroc = float(test.statistic) / (positives.size * negatives.size)
    return ChanceResult(
        null="mann_whitney", test="Mann-Whitney U", value=auroc, chance=0.5, p_value=float(test.pvalue),
        n=int(targets.size), detail=f"{positives.size} positive, {negatives.size} negative images",
    )


def hit_probability(k: int, n_candidates: int, n_relevant: int) -> float:
    """P(at least one of ``n_relevant`` relevant items among the top ``k`` of ``n_candidates`` randomly
    ranked ones) = 1 - C(N - r, K) / C(N, K); K is capped at N (the whole pool is then retrieved)."""
    if n_candidates <= 0 or not 0 <= n_relevant <= n_candidates or k <= 0:
        raise ChanceError(f"no random ranking of {n_relevant} relevant among {n_candidates} candidates at K={k}")
    return float(stats.hypergeom.sf(0, n_candidates, n_relevant, min(k, n_candidates)))


def recall_at_k_against_random(hits: np.ndarray, k: int, n_candidates: int | Sequence[int] | np.ndarray,
                               n_relevant: int | Sequence[int] | np.ndarray = 1) -> ChanceResult:
    """Recall@K (the share of queries with a relevant item in their top K; ``hits`` one boolean per
    query) against a random ranking of each query's ``n_candidates`` of which ``n_relevant`` are
    relevant (``random_ranking_recall``): exact binomial when every query has the same hit
    probability, else the exact Poisson-binomial distribution."""
    hits = np.asarray(hits).astype(bool).reshape(-1)
    if hits.size == 0:
        raise ChanceError("recall@K needs at least one query")
    candidates = _as_per_query(n_candidates, hits.size, "candidate counts")
    relevant = _as_per_query(n_relevant, hits.size, "relevant counts")
    cache: dict[tuple[int, int], float] = {}
    probabilities = np.array([cache.setdefault((int(c), int(r)), hit_probability(k, int(c), int(r)))
                              for c, r in zip(candidates, relevant)])
    observed = int(hits.sum())
    if np.all(probabilities == probabilities[0]):
        p_value, test = binomial_above(observed, hits.size, float(probabilities[0])), "exact binomial"
    else:
        p_value, test = sum_above(observed, [np.array([1 - p, p]) for p in probabilities]), "exact Poisson-binomial"
    pool = (f"{candidates[0]} candidates" if np.all(candidates == candidates[0]) else "various pool sizes") + (
        f", {relevant[0]} relevant" if np.all(relevant == relevant[0]) else ", various relevant counts")
    return ChanceResult(
        null="random_ranking_recall", test=test, value=observed / hits.size, chance=float(probabilities.mean()),
        p_value=p_value, n=int(hits.size), detail=f"K={k}, {pool}; {observed} of {hits.size} queries hit",
    )


def precision_at_k_against_random(relevant_in_top_k: np.ndarray, k: int, n_candidates: int | Sequence[int] | np.ndarray,
                                  n_relevant: int | Sequence[int] | np.ndarray) -> ChanceResult:
    """Precision@K (relevant items among each query's top K, averaged over queries and divided by K;
    ``relevant_in_top_k`` one count per query) against a random ranking of each query's
    ``n_candidates`` of which ``n_relevant`` are relevant (``random_ranking_precision``): the exact
    distribution of a sum of independent hypergeometric counts."""
    found = np.asarray(relevant_in_top_k, dtype=np.int64).reshape(-1)
    if found.size == 0:
        raise ChanceError("precision@K needs at least one query")
    candidates = _as_per_query(n_candidates, found.size, "candidate counts")
    relevant = _as_per_query(n_relevant, found.size, "relevant counts")
    if k <= 0 or (k > candidates).any():
        raise ChanceError(f"precision@{k} needs K between 1 and every query's candidate count ({int(candidates.min())})")
    if (relevant > candidates).any() or (found > np.minimum(k, relevant)).any() or (found < 0).any():
        raise ChanceError("a query has more relevant items in its top K than K or than it has relevant candidates")
    cache: dict[tuple[int, int], np.ndarray] = {}
    pmfs = [cache.setdefault((int(c), int(r)), stats.hypergeom.pmf(np.arange(k + 1), int(c), int(r), k))
            for c, r in zip(candidates, relevant)]
    total = int(found.sum())
    pool = (f"{candidates[0]} candidates" if np.all(candidates == candidates[0]) else "various pool sizes") + (
        f", {relevant[0]} relevant" if np.all(relevant == relevant[0]) else ", various relevant counts")
    return ChanceResult(
        null="random_ranking_precision", test="exact hypergeometric sum", value=total / (k * found.size),
        chance=float(np.mean(relevant / candidates)), p_value=sum_above(total, pmfs), n=int(found.size),
        detail=f"K={k}, {pool}; {total} relevant of {k * found.size} retrieved",
    )


def rank_cdf(n_candidates: int, n_relevant: int) -> np.ndarray:
    """``P(rank <= k)`` for k = 1 .. N - r + 1: the rank of the first of ``n_relevant`` relevant items among
    ``n_candidates`` randomly ranked ones (1 + the non-relevant items ranked before it) is at most k exactly when
    a relevant item is among the top k, ``1 - C(N - r, k) / C(N, k)``; the last entry is 1."""
    if n_candidates <= 0 or not 1 <= n_relevant <= n_candidates:
        raise ChanceError(f"no rank of a relevant item: {n_relevant} relevant among {n_candidates} candidates")
    cdf = stats.hypergeom.sf(0, n_candidates, n_relevant, np.arange(1, n_candidates - n_relevant + 2))
    cdf[-1] = 1.0  # every non-relevant item before the first relevant one: certain, whatever the rounding
    return np.minimum(np.maximum.accumulate(cdf), 1.0)


def median_rank_against_random(ranks: np.ndarray, n_candidates: int | Sequence[int] | np.ndarray,
                               n_relevant: int | Sequence[int] | np.ndarray = 1, draws: int = PERMUTATIONS,
                               seed: int = PERMUTATION_SEED) -> ChanceResult:
    """The median of ``ranks`` (one per query: the rank of its best relevant item, lower is better) against
    random rankings of each query's ``n_candidates`` of which ``n_relevant`` are relevant
    (``random_ranking_rank``): Monte Carlo over ``draws`` draws of every query's rank from its exact
    distribution (:func:`rank_cdf`), one-sided towards lower ranks. Uniforms are drawn query-major within
    each draw, in batches of draws that consume the stream in order, so the result depends on ``seed``
    alone."""
    ranks = np.asarray(ranks, dtype=np.float64).reshape(-1)
    if ranks.size == 0:
        raise ChanceError("a median rank needs at least one query")
    if draws <= 0:
        raise ChanceError(f"a Monte Carlo test needs at least one draw, got {draws}")
    candidates = _as_per_query(n_candidates, ranks.size, "candidate counts")
    relevant = _as_per_query(n_relevant, ranks.size, "relevant counts")
    if (ranks < 1).any() or (ranks > candidates - relevant + 1).any() or (ranks != np.round(ranks)).any():
        raise ChanceError("a rank must be a whole number from 1 to (candidates - relevant + 1) of its query")
    pools: dict[tuple[int, int], list[int]] = {}
    for query, key in enumerate(zip(candidates.tolist(), relevant.tolist())):
        pools.setdefault(key, []).append(query)
    cdfs = {key: rank_cdf(*key) for key in pools}
    observed = float(np.median(ranks))
    rng = np.random.default_rng(seed)
    rows = max(1, _PERMUTED_ELEMENTS // ranks.size)
    medians = np.empty(draws, dtype=np.float64)
    for start in range(0, draws, rows):
        uniforms = rng.random((min(draws, start + rows) - start, ranks.size))
        drawn = np.empty_like(uniforms)
        for key, queries in pools.items():
            drawn[:, queries] = 1 + np.searchsorted(cdfs[key], uniforms[:, queries], side="left")
        medians[start:start + len(uniforms)] = np.median(drawn, axis=1)
    at_most = int(np.count_nonzero(medians <= observed))
    pool = (f"{candidates[0]} candidates" if np.all(candidates == candidates[0]) else "various pool sizes") + (
        f", {relevant[0]} relevant" if np.all(relevant == relevant[0]) else ", various relevant counts")
    return ChanceResult(
        null="random_ranking_rank", test=f"Monte Carlo ({draws})", value=observed, chance=float(medians.mean()),
        p_value=(1 + at_most) / (1 + draws), n=int(ranks.size),
        detail=f"{pool}; median rank {observed:g} of {ranks.size} queries",
    )


def all_runs(results: Sequence[ChanceResult]) -> ChanceResult:
    """Several runs of one column (label draws, seeds) against chance, as one result: the mean value
    and chance level, and the *largest* p-value. Rejecting with it claims that every run beats
    chance (an intersection-union test: valid at the level of each run's test, with no assumption
    about how the runs depend on each other, which they do: they share the test images)."""
    if not results:
        raise ChanceError("no runs to test against chance")
    nulls = {result.null for result in results}
    if len(nulls) != 1:
        raise ChanceError(f"runs of one column were tested against different nulls: {sorted(nulls)}")
    if len(results) == 1:
        return results[0]
    worst = max(results, key=lambda result: result.p_value)
    return ChanceResult(
        null=worst.null, test=worst.test, value=float(np.mean([r.value for r in results])),
        chance=float(np.mean([r.chance for r in results])), p_value=worst.p_value,
        n=worst.n, detail=f"largest p of {len(results)} runs: {worst.detail}", runs=len(results),
    )
