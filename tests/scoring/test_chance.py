"""Tests against chance (benchmark/scoring/chance.py): hand-computed p-values, scipy, and the scorers' declarations."""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations, permutations, product
from math import comb, sqrt
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.scoring import SCORERS, chance_test, scorer
from benchmark.scoring.chance import (
    NULLS,
    ChanceError,
    ChanceResult,
    PERMUTATIONS,
    accuracy_against_independence,
    all_runs,
    auroc_against_half,
    binomial_above,
    hit_probability,
    matches_under_permutation,
    median_rank_against_random,
    precision_at_k_against_random,
    rank_cdf,
    recall_at_k_against_random,
    sum_above,
    sum_distribution,
)
from benchmark.scoring.classification import SCHEMES, write_predictions, write_targets


def test_binomial_tail_by_hand() -> None:
    # P(X >= 8), X ~ Bin(10, 1/2) = (C(10,8) + C(10,9) + C(10,10)) / 2^10 = 56 / 1024
    assert binomial_above(8, 10, 0.5) == pytest.approx(56 / 1024, rel=1e-12)
    assert binomial_above(0, 10, 0.3) == pytest.approx(1.0)
    with pytest.raises(ChanceError):
        binomial_above(11, 10, 0.5)


def _exact_matches(truth: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """The number correct under every one of the n! orderings of ``truth`` (repeats included: each
    ordering is one equally likely permutation), by enumeration."""
    return np.array([np.count_nonzero(np.array(order) == predicted) for order in permutations(truth.tolist())])


def _monte_carlo_tolerance(p: float, draws: int) -> float:
    """How far a Monte Carlo p of ``draws`` permutations may sit from the exact p: 4.5 binomial standard
    errors plus the 1/(1 + draws) the (1 + count)/(1 + draws) estimate adds (a miss has chance < 1e-5)."""
    return 4.5 * sqrt(p * (1 - p) / draws) + 1 / (1 + draws)


# (truth, predicted): 8 images, so all 8! = 40320 permutations are enumerated; exact p 0.036, 0.13, 0.35, 0.64
TINY_SETS = [
    (np.array([0, 0, 0, 0, 1, 1, 2, 2]), np.array([0, 0, 0, 1, 1, 2, 2, 0])),
    (np.array([0, 0, 0, 0, 1, 1, 2, 2]), np.array([0, 1, 2, 0, 1, 0, 2, 0])),
    (np.array([0, 0, 0, 0, 0, 0, 1, 1]), np.array([0, 0, 0, 0, 1, 1, 1, 0])),
    (np.array([0, 0, 1, 1, 2, 2, 3, 3]), np.array([0, 0, 1, 1, 3, 2, 2, 0])),
]


@pytest.mark.parametrize("truth,predicted", TINY_SETS)
def test_accuracy_permutation_p_matches_the_enumerated_exact_p(truth: np.ndarray, predicted: np.ndarray) -> None:
    exact = _exact_matches(truth, predicted)
    correct = int(np.count_nonzero(truth == predicted))
    exact_p = float(np.mean(exact >= correct))
    assert 0.01 < exact_p < 0.7  # a p where Monte Carlo error shows, not 1/(1 + draws) or 1
    classes = tuple("abcd")[: truth.max() + 1]
    for seed in (0, 1, 2):
        result = accuracy_against_independence(truth, predicted, classes, seed=seed)
        assert abs(result.p_value - exact_p) <= _monte_carlo_tolerance(exact_p, PERMUTATIONS), (seed, result.p_value, exact_p)
        assert result.null == "independence" and result.value == correct / truth.size
    # the chance level is the exact mean over all permutations, sum_k p_pred(k) * p_true(k)
    assert result.chance == pytest.approx(exact.mean() / truth.size, rel=1e-12)
    # and the Monte Carlo null distribution is the enumerated one, count by count
    drawn = np.bincount(matches_under_permutation(truth, predicted), minlength=truth.size + 1)
    exact_pmf = np.bincount(exact, minlength=truth.size + 1) / exact.size
    assert np.all(np.abs(drawn / PERMUTATIONS - exact_pmf) <= 4.5 * np.sqrt(exact_pmf * (1 - exact_pmf) / PERMUTATIONS) + 1e-12)


def test_accuracy_chance_level_by_hand_and_an_informative_model_below_the_majority_share() -> None:
    # 100 normal, 100 pneumonia, 200 COVID-19: the majority share is 0.5
    truth = np.array([0] * 100 + [1] * 100 + [2] * 200)
    predicted = np.array([0] * 60 + [1] * 40 + [1] * 60 + [0] * 40 + [2] * 70 + [0] * 65 + [1] * 65)
    result = accuracy_against_independence(truth, predicted, ("normal", "pneumonia", "COVID-19"))
    assert result.value == pytest.approx(190 / 400) and result.value < 0.5  # below the majority share, yet informative
    # predicted 165, 165, 70: chance = (100 * 165 + 100 * 165 + 200 * 70) / 400^2
    assert result.chance == pytest.approx(47_000 / 160_000)
    assert result.p_value == 1 / (1 + PERMUTATIONS)  # no permutation reaches 190 correct (mean 117.5)
    assert result.detail == "predicted normal 41%, pneumonia 41%, COVID-19 18%; 190 of 400 correct"
    again = accuracy_against_independence(truth, predicted, ("normal", "pneumonia", "COVID-19"))
    assert again == result  # a fixed seed: the same files always give the same p


def test_a_constant_predictor_is_exactly_at_chance_and_a_perfect_one_gets_the_smallest_p() -> None:
    truth = np.array([0] * 6 + [1] * 2 + [2] * 2)
    for answer in (0, 1, 2):  # always one class, the majority or not: p = 1, value = chance = its share
        constant = accuracy_against_independence(truth, np.full(10, answer), ("a", "b", "c"))
        assert constant.p_value == 1.0 and constant.value == constant.chance == np.mean(truth == answer)
    balanced = np.repeat(np.arange(5), 4)
    perfect = accuracy_against_independence(balanced, balanced, tuple("abcde"))
    assert (perfect.value, perfect.chance) == (1.0, pytest.approx(0.2))
    assert perfect.p_value == 1 / (1 + PERMUTATIONS)  # a permutation as good: chance (4!)^5 / 20! ~ 3e-11
    reversed_ = accuracy_against_independence(balanced, (balanced + 1) % 5, tuple("abcde"))
    assert reversed_.value == 0.0 and reversed_.p_value == 1.0  # worse than chance is not significant


def test_permutation_draws_depend_on_the_seed_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.scoring.chance as chance

    truth, predicted = np.repeat(np.arange(3), 7), np.tile(np.arange(3), 7)
    whole = matches_under_permutation(truth, predicted, 500, seed=3)
    monkeypatch.setattr(chance, "_PERMUTED_ELEMENTS", 50)  # batches of 2 rows
    assert np.array_equal(matches_under_permutation(truth, predicted, 500, seed=3), whole)
    assert not np.array_equal(matches_under_permutation(truth, predicted, 500, seed=4), whole)


def test_accuracy_permutation_rejects_malformed_input() -> None:
    with pytest.raises(ChanceError, match="one class index per image"):
        accuracy_against_independence(np.zeros(3, dtype=int), np.zeros(4, dtype=int), ("a", "b"))
    with pytest.raises(ChanceError, match=r"integers in \[0, 2\)"):
        accuracy_against_independence(np.array([0, 2]), np.array([0, 1]), ("a", "b"))
    with pytest.raises(ChanceError, match="at least one permutation"):
        matches_under_permutation(np.array([0, 1]), np.array([0, 1]), 0)


def test_auroc_against_one_half_by_hand_and_with_ties() -> None:
    # positives 3, 4 above negatives 1, 2: U = 4, AUROC 1; exact p = 1 / C(4, 2) (the one best arrangement)
    result = auroc_against_half(np.array([0, 0, 1, 1]), np.array([1.0, 2.0, 3.0, 4.0]))
    assert (result.value, result.chance, result.null) == (1.0, 0.5, "mann_whitney")
    assert result.p_value == pytest.approx(1 / 6)
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 400)
    scores = np.round(labels * 0.4 + rng.normal(size=400), 1)  # ties
    from sklearn.metrics import roc_auc_score

    tied = auroc_against_half(labels, scores)
    assert tied.value == pytest.approx(roc_auc_score(labels, scores))
    assert tied.p_value == pytest.approx(stats.mannwhitneyu(scores[labels == 1], scores[labels == 0], alternative="greater").pvalue)
    assert tied.p_value < 1e-3
    reversed_ = auroc_against_half(labels, -scores)
    assert reversed_.value < 0.5 and reversed_.p_value > 0.99  # worse than chance is not significant
    with pytest.raises(ChanceError, match="both classes"):
        auroc_against_half(np.ones(4), np.arange(4.0))


def test_sum_of_counts_is_the_exact_convolution() -> None:
    # Poisson-binomial with p = 1/2, 1/4: P(S >= 2) = 1/8, P(S >= 1) = 1 - 1/2 * 3/4
    pmfs = [np.array([0.5, 0.5]), np.array([0.75, 0.25])]
    assert sum_above(2, pmfs) == pytest.approx(0.125) and sum_above(1, pmfs) == pytest.approx(0.625)
    # 300 equal Bernoulli(0.1) counts (grouped, raised by squaring) are Binomial(300, 0.1)
    distribution = sum_distribution([np.array([0.9, 0.1])] * 300)
    assert np.allclose(distribution, stats.binom.pmf(np.arange(301), 300, 0.1), rtol=1e-9, atol=1e-300)
    with pytest.raises(ChanceError):
        sum_distribution([np.array([0.5, 0.6])])


def test_recall_at_k_against_a_random_ranking() -> None:
    # one relevant of 4 candidates, K = 1: a hit with probability 1/4; three hits of three: (1/4)^3
    result = recall_at_k_against_random(np.array([True, True, True]), k=1, n_candidates=4)
    assert result.chance == pytest.approx(0.25) and result.p_value == pytest.approx(1 / 64)
    assert result.test == "exact binomial" and result.null == "random_ranking_recall"
    # two relevant of 4, K = 1: 1 - C(2,1)/C(4,1) = 1/2; two of 10 relevant, K = 3: 1 - C(8,3)/C(10,3)
    assert hit_probability(1, 4, 2) == pytest.approx(0.5)
    assert hit_probability(3, 10, 2) == pytest.approx(1 - comb(8, 3) / comb(10, 3))
    assert hit_probability(20, 10, 1) == 1.0  # K beyond the pool retrieves everything
    # queries with different pools: Poisson-binomial, P(both hit) = 1/2 * 1/4
    mixed = recall_at_k_against_random(np.array([True, True]), k=1, n_candidates=[2, 4])
    assert mixed.test == "exact Poisson-binomial" and mixed.p_value == pytest.approx(1 / 8)
    assert mixed.chance == pytest.approx(0.375)


def test_precision_at_k_against_a_random_ranking() -> None:
    # 4 candidates, 2 relevant, K = 2: X ~ hypergeometric with P(2) = 1/6; two queries with X = 2: (1/6)^2
    result = precision_at_k_against_random(np.array([2, 2]), k=2, n_candidates=4, n_relevant=2)
    assert (result.value, result.chance) == (1.0, 0.5)
    assert result.p_value == pytest.approx(1 / 36)
    # P(S >= 3) for the same two queries: P(2,1) + P(1,2) + P(2,2) = 2 * 1/6 * 4/6 + 1/36
    assert precision_at_k_against_random(np.array([2, 1]), 2, 4, 2).p_value == pytest.approx(2 * 4 / 36 + 1 / 36)
    # a class-balanced pool of 5 x 200 at K = 10, a third of the top 10 right on each of 1000 queries: far above 1/5
    balanced = precision_at_k_against_random(np.full(1000, 3), 10, 1000, 200)
    assert balanced.chance == pytest.approx(0.2) and balanced.p_value < 1e-20
    chance_like = precision_at_k_against_random(np.full(1000, 2), 10, 1000, 200)
    assert 0.4 < chance_like.p_value < 0.6  # exactly the chance mean: about half the mass above
    with pytest.raises(ChanceError):
        precision_at_k_against_random(np.array([3]), 2, 4, 2)  # 3 relevant in a top 2


def test_the_rank_of_the_first_relevant_item_has_the_hypergeometric_distribution() -> None:
    # 4 candidates, 2 relevant: P(rank 1) = 2/4, P(rank <= 2) = 1 - C(2,2)/C(4,2) = 5/6, rank 3 at the latest
    np.testing.assert_allclose(rank_cdf(4, 2), [1 / 2, 5 / 6, 1], rtol=1e-12)
    np.testing.assert_allclose(rank_cdf(3, 1), [1 / 3, 2 / 3, 1], rtol=1e-12)  # one relevant: uniform
    np.testing.assert_allclose(rank_cdf(10, 2), [1 - comb(8, k) / comb(10, k) for k in range(1, 10)], rtol=1e-12)
    # every placement of 3 relevant among 7 candidates, equally likely: the rank is the first relevant position
    firsts = np.array([min(places) + 1 for places in combinations(range(7), 3)])
    np.testing.assert_allclose(rank_cdf(7, 3), [np.mean(firsts <= k) for k in range(1, 6)], rtol=1e-12)
    assert rank_cdf(5, 5).tolist() == [1.0]  # every candidate relevant: rank 1
    with pytest.raises(ChanceError, match="0 relevant among 3"):
        rank_cdf(3, 0)


def _exact_median_p(ranks: list[int], pools: list[tuple[int, int]]) -> tuple[float, float]:
    """(P(median <= observed), E[median]) under random rankings, by enumerating every combination of ranks with
    its probability (the product of each query's exact probabilities, as fractions)."""
    pmfs = []
    for candidates, relevant in pools:
        cdf = [Fraction(1) - Fraction(comb(candidates - relevant, k), comb(candidates, k))
               for k in range(1, candidates - relevant + 2)]
        pmfs.append({k + 1: cdf[k] - (cdf[k - 1] if k else 0) for k in range(len(cdf))})
    observed = Fraction(int(np.median(ranks) * 2), 2)
    below, mean = Fraction(0), Fraction(0)
    for combination in product(*(pmf.items() for pmf in pmfs)):
        probability = np.prod([p for _, p in combination])
        ordered = sorted(rank for rank, _ in combination)
        median = Fraction(ordered[(len(ordered) - 1) // 2] + ordered[len(ordered) // 2], 2)
        mean += probability * median
        below += probability if median <= observed else 0
    return float(below), float(mean)


# (ranks, (candidates, relevant) per query, the exact p by hand where short): odd and even counts, mixed pools
MEDIAN_SETS = [
    # uniform ranks 1..3, median 1: at least two of three queries at rank 1, 3 * (1/3)^2 * (2/3) + (1/3)^3 = 7/27
    ([1, 1, 2], [(3, 1)] * 3, 7 / 27),
    # two queries, median 1.5: rank sum at most 3, (1,1), (1,2), (2,1) of 9
    ([1, 2], [(3, 1)] * 2, 3 / 9),
    ([1, 3, 1, 3], [(4, 1), (4, 1), (4, 2), (4, 2)], 49 / 72),
    ([2, 1, 4, 2, 1], [(6, 1), (5, 2), (6, 1), (4, 1), (7, 3)], None),
]


@pytest.mark.parametrize("ranks,pools,by_hand", MEDIAN_SETS)
def test_median_rank_monte_carlo_p_matches_the_enumerated_exact_p(ranks: list[int], pools: list[tuple[int, int]],
                                                                  by_hand: float | None) -> None:
    exact_p, exact_mean = _exact_median_p(ranks, pools)
    if by_hand is not None:
        assert exact_p == pytest.approx(by_hand, rel=1e-12)
    assert 0.01 < exact_p < 0.9  # a p where Monte Carlo error shows
    candidates, relevant = [c for c, _ in pools], [r for _, r in pools]
    for seed in (0, 1, 2):
        result = median_rank_against_random(np.array(ranks), candidates, relevant, seed=seed)
        assert abs(result.p_value - exact_p) <= _monte_carlo_tolerance(exact_p, PERMUTATIONS), (seed, result.p_value, exact_p)
        assert result.null == "random_ranking_rank" and result.value == np.median(ranks) and result.n == len(ranks)
        # the chance level: the mean null median, within 4.5 standard errors (the median spans at most 1 .. N)
        assert abs(result.chance - exact_mean) <= 4.5 * max(candidates) / np.sqrt(PERMUTATIONS)


def test_a_median_rank_at_the_bottom_is_not_significant_and_one_at_the_top_gets_the_smallest_p(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmark.scoring.chance as chance

    # a constant model: ties against it put every relevant item last (N - r + 1); no draw is worse
    worst = median_rank_against_random(np.array([7, 7, 6, 6, 7]), 8, [2, 2, 3, 3, 2])
    assert worst.p_value == 1.0 and worst.value == 7 and worst.chance < 7
    # 50 queries of 100 candidates, all at rank 1: a null median of 1 has chance below (1/100)^25
    perfect = median_rank_against_random(np.ones(50), 100)
    assert perfect.p_value == 1 / (1 + PERMUTATIONS) and perfect.chance == pytest.approx(50.5, abs=1.0)
    assert perfect.detail == "100 candidates, 1 relevant; median rank 1 of 50 queries"
    assert median_rank_against_random(np.ones(50), 100) == perfect  # a fixed seed
    monkeypatch.setattr(chance, "_PERMUTED_ELEMENTS", 120)  # batches of 2 draws: the same stream, the same p
    ranks = np.array([3, 1, 4, 2, 5, 1, 2, 3, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2, 3, 8, 4, 6, 2, 6, 4, 3, 3, 8,
                      3, 2, 7, 9, 5, 2, 1, 4, 1, 9, 7, 1, 6, 9, 3, 9, 9, 3, 7, 5, 1, 0, 5, 8, 2, 0, 9, 7, 4, 9]) + 1
    batched = median_rank_against_random(ranks, 20, draws=500, seed=3)
    monkeypatch.setattr(chance, "_PERMUTED_ELEMENTS", 1 << 22)
    assert median_rank_against_random(ranks, 20, draws=500, seed=3) == batched
    for bad in (np.array([0, 1]), np.array([1, 20]), np.array([1.5, 2])):  # rank 20 of 20 with 2 relevant: at most 19
        with pytest.raises(ChanceError, match="a rank must be a whole number"):
            median_rank_against_random(bad, 20, 2)
    with pytest.raises(ChanceError, match="at least one query"):
        median_rank_against_random(np.array([]), 20)


def test_several_runs_need_every_run_to_beat_chance() -> None:
    def run(value: float, p: float) -> ChanceResult:
        return ChanceResult("independence", "permutation (20000)", value, 0.5, p, 100, "d")

    combined = all_runs([run(0.7, 1e-5), run(0.6, 0.03)])
    assert (combined.p_value, combined.runs) == (0.03, 2) and combined.value == pytest.approx(0.65)
    assert all_runs([run(0.7, 1e-5)]) == run(0.7, 1e-5)
    with pytest.raises(ChanceError):
        all_runs([run(0.7, 0.1), ChanceResult("mann_whitney", "Mann-Whitney U", 0.7, 0.5, 0.1, 10)])


def test_every_declared_null_exists() -> None:
    scorer("classification")  # imports every scorer module of the package
    declared = {(name, metric, spec.chance) for name in SCORERS.names() for metric, spec in SCORERS.get(name).metrics.items()
                if spec.chance}
    assert {null for *_, null in declared} <= set(NULLS.names())
    assert ("zeroshot", "accuracy", "independence") in declared and ("zeroshot", "auroc", "mann_whitney") in declared
    assert {("retrieval", "i2t_recall_at_5", "random_ranking_recall"), ("retrieval", "precision_at_5", "random_ranking_precision"),
            ("retrieval", "t2i_median_rank", "random_ranking_rank")} <= declared


def _covidx_files(folder: Path, truth: np.ndarray, predicted: np.ndarray) -> tuple[Path, Path]:
    scheme = SCHEMES.get("covidx")
    ids = [f"i{k:03d}" for k in range(truth.size)]
    eye = np.eye(len(scheme.classes))
    return (write_predictions(folder / "p.csv", ids, eye[predicted] + 0.01, scheme),
            write_targets(folder / "t.csv", ids, eye[truth], scheme))


def test_the_zeroshot_scorer_tests_its_files_against_the_declared_null(tmp_path: Path) -> None:
    truth = np.array([2] * 30 + [0] * 15 + [1] * 15)  # COVID-19 the majority, half the images
    predicted = truth.copy()
    predicted[:10] = 0  # 50 of 60 right
    predictions, targets = _covidx_files(tmp_path, truth, predicted)
    result = chance_test("zeroshot", predictions, targets, "covidx", "accuracy")
    # predicted normal 25, pneumonia 15, COVID-19 20 of 60: chance (15 * 25 + 15 * 15 + 30 * 20) / 60^2 = 1/3
    assert result.value == pytest.approx(50 / 60) and result.chance == pytest.approx(1 / 3)
    assert result.p_value == 1 / (1 + PERMUTATIONS) and result.null == "independence"
    assert result.detail == "predicted normal 42%, pneumonia 25%, COVID-19 33%; 50 of 60 correct"
    with pytest.raises(ChanceError, match="declares no chance null for 'macro_f1'"):
        chance_test("zeroshot", predictions, targets, "covidx", "macro_f1")
    with pytest.raises(ChanceError, match="macro AUROC over 3 classes"):
        chance_test("zeroshot", predictions, targets, "covidx", "auroc")
