"""Tests against chance (benchmark/scoring/chance.py): hand-computed p-values, scipy, and the scorers' declarations."""

from __future__ import annotations

from math import comb
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmark.scoring import SCORERS, chance_test, scorer
from benchmark.scoring.chance import (
    NULLS,
    ChanceError,
    ChanceResult,
    accuracy_against_majority,
    all_runs,
    auroc_against_half,
    binomial_above,
    hit_probability,
    precision_at_k_against_random,
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


def test_accuracy_is_tested_against_the_majority_share_not_one_over_k() -> None:
    truth = np.array([0] * 6 + [1] * 2 + [2] * 2)  # majority share 0.6, not 1/3
    always_majority = accuracy_against_majority(truth, np.zeros(10, dtype=int), ("a", "b", "c"))
    assert (always_majority.value, always_majority.chance) == (0.6, 0.6)
    assert always_majority.p_value == pytest.approx(stats.binom.sf(5, 10, 0.6))  # P(X >= 6): far from significant
    assert always_majority.p_value > 0.5 and "majority class a: 6 of 10" in always_majority.detail
    perfect = accuracy_against_majority(truth, truth, ("a", "b", "c"))
    assert perfect.p_value == pytest.approx(0.6 ** 10)  # every image right: P(X = 10)
    balanced = accuracy_against_majority(np.repeat(np.arange(5), 4), np.repeat(np.arange(5), 4), tuple("abcde"))
    assert balanced.chance == pytest.approx(0.2) and balanced.p_value == pytest.approx(0.2 ** 20)


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


def test_several_runs_need_every_run_to_beat_chance() -> None:
    def run(value: float, p: float) -> ChanceResult:
        return ChanceResult("majority_class", "exact binomial", value, 0.5, p, 100, "d")

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
    assert ("zeroshot", "accuracy", "majority_class") in declared and ("zeroshot", "auroc", "mann_whitney") in declared


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
    assert result.value == pytest.approx(50 / 60) and result.chance == pytest.approx(0.5)
    assert result.p_value == pytest.approx(stats.binom.sf(49, 60, 0.5))
    assert "COVID-19" in result.detail
    with pytest.raises(ChanceError, match="declares no chance null for 'macro_f1'"):
        chance_test("zeroshot", predictions, targets, "covidx", "macro_f1")
    with pytest.raises(ChanceError, match="macro AUROC over 3 classes"):
        chance_test("zeroshot", predictions, targets, "covidx", "auroc")
