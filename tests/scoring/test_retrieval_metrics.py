"""Retrieval metrics against hand-computed values, their weighted (bootstrap) forms against the resampled rows,
the file formats and their errors, and ``score retrieval`` on files written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.cli import main as cli_main
from benchmark.scoring import chance_test, scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.chance import PERMUTATIONS
from benchmark.scoring.retrieval import (
    RETRIEVAL_SCHEMES,
    RetrievalFileError,
    median_rank,
    precision_at_k,
    recall_at_k,
    relevant_ranks,
    weighted_mean,
    weighted_median,
    write_predictions,
    write_targets,
)

# Four studies a, b, c1, c2; c1 and c2 have reports of the same words (one group "c1"). Rows: images; columns: texts.
IMAGES, TEXTS = ["ia", "ib", "ic1", "ic2"], ["a", "b", "c1", "c2"]
GROUPS = ["a", "b", "c1", "c1"]
SIMILARITY = np.array([
    [0.9, 0.1, 0.3, 0.2],  # relevant a 0.9, nothing above: rank 1
    [0.5, 0.4, 0.6, 0.1],  # relevant b 0.4; a 0.5 and c1 0.6 above: rank 3
    [0.2, 0.2, 0.1, 0.7],  # relevant c1, c2: best 0.7, nothing above: rank 1
    [0.3, 0.3, 0.3, 0.3],  # best relevant 0.3 ties with a and b, counted against the model: rank 3
])
I2T_RANKS = [1, 3, 1, 3]
# columns as queries: a: ia 0.9 first -> 1; b: ib 0.4 above all -> 1; c1: best relevant 0.3 (ic2), ia 0.3 (tie) and
# ib 0.6 -> 3; c2: ic1 0.7 -> 1
T2I_RANKS = [1, 1, 3, 1]
RELEVANT = np.array(GROUPS)[:, None] == np.array(GROUPS)[None, :]


def test_ranks_recall_and_median_rank_by_hand() -> None:
    assert relevant_ranks(SIMILARITY, RELEVANT).tolist() == I2T_RANKS
    assert relevant_ranks(SIMILARITY.T, RELEVANT.T).tolist() == T2I_RANKS
    assert recall_at_k(np.array(I2T_RANKS), 1) == 0.5 and recall_at_k(np.array(I2T_RANKS), 2) == 0.5
    assert recall_at_k(np.array(I2T_RANKS), 3) == 1.0 and recall_at_k(np.array(T2I_RANKS), 1) == 0.75
    assert median_rank(np.array(I2T_RANKS)) == 2.0 and median_rank(np.array(T2I_RANKS)) == 1.0
    assert median_rank(np.array([4, 1, 2])) == 2.0
    # a constant model ranks every relevant item last, never first
    flat = np.zeros((3, 3))
    assert relevant_ranks(flat, np.eye(3, dtype=bool)).tolist() == [3, 3, 3]
    with pytest.raises(ValueError, match="query row 1 has no relevant candidate"):
        relevant_ranks(flat, np.array([[1, 0, 0], [0, 0, 0], [0, 0, 1]], dtype=bool))


def test_precision_at_k_by_hand() -> None:
    similarity = np.array([
        [0.8, 0.2, 0.9, 0.1, 0.5],  # x: order t2(y) t0(x) t4(x) t1(x) t3(y): P@1 0, P@2 1/2, P@3 2/3
        [0.4, 0.4, 0.4, 0.3, 0.0],  # y: the tie t0, t1 (x) and t2 (y) puts x first: P@1 0, P@2 0, P@3 1/3
        [0.1, 0.6, 0.3, 0.2, 0.7],  # x: t4(x) t1(x) t2(y): P@1 1, P@2 1, P@3 2/3
    ])
    relevant = np.array(["x", "y", "x"])[:, None] == np.array(["x", "x", "y", "y", "x"])[None, :]
    assert precision_at_k(similarity, relevant, 1).tolist() == [0, 0, 1]
    assert precision_at_k(similarity, relevant, 2).tolist() == [0.5, 0, 1]
    np.testing.assert_allclose(precision_at_k(similarity, relevant, 3), [2 / 3, 1 / 3, 2 / 3])
    with pytest.raises(ValueError, match="precision@6 needs at least 6 candidates"):
        precision_at_k(similarity, relevant, 6)


def test_weighted_mean_and_median_are_the_metrics_of_the_resampled_rows() -> None:
    rng = np.random.default_rng(0)
    values = rng.integers(1, 9, size=7).astype(float)
    weights = rng.integers(0, 3, size=(40, 7)).astype(float)
    weights[weights.sum(axis=1) == 0, 0] = 1
    for row, got_mean, got_median in zip(weights, weighted_mean(values, weights), weighted_median(values, weights)):
        resampled = np.repeat(values, row.astype(int))
        assert got_mean == pytest.approx(resampled.mean(), abs=1e-12)
        assert got_median == np.median(resampled)


def write_files(folder: Path, images: list[str], image_groups: list[str], texts: list[str], text_groups: list[str],
                similarity: np.ndarray) -> tuple[Path, Path]:
    return (write_predictions(folder / "predictions.npz", images, texts, similarity.astype(np.float32)),
            write_targets(folder / "targets.csv", images, image_groups, texts, text_groups))


def test_the_mimic_scheme_scores_both_directions_and_its_runs_resample_their_own_queries(tmp_path: Path) -> None:
    retrieval = scorer("retrieval")
    # the prediction file in another row and column order than the targets: aligned by ID
    predictions = write_predictions(tmp_path / "p.npz", IMAGES[::-1], TEXTS[::-1], SIMILARITY[::-1, ::-1])
    targets = write_targets(tmp_path / "t.csv", IMAGES, GROUPS, TEXTS, GROUPS)
    report = retrieval.score_files(predictions, targets, "mimic", BootstrapOptions(n_resamples=50))
    values = {name: metric.value for name, metric in report.metrics.items()}
    assert report.primary_metric == "i2t_recall_at_5" and report.n_images == 4 and report.warnings == ()
    assert values == pytest.approx({"i2t_recall_at_1": 0.5, "i2t_recall_at_5": 1.0, "i2t_recall_at_10": 1.0,
                                    "t2i_recall_at_1": 0.75, "t2i_recall_at_5": 1.0, "t2i_recall_at_10": 1.0,
                                    "i2t_median_rank": 2.0, "t2i_median_rank": 1.0}, abs=1e-12)
    low, high = report.metrics["i2t_recall_at_1"].interval.low, report.metrics["i2t_recall_at_1"].interval.high
    assert 0 <= low <= 0.5 <= high <= 1
    assert report.metric_values()["i2t_median_rank"].value == 2.0
    i2t = retrieval.per_image(predictions, targets, "mimic", "i2t_median_rank")
    t2i = retrieval.per_image(predictions, targets, "mimic", "t2i_recall_at_1")
    assert i2t.ids == tuple(IMAGES) and t2i.ids == tuple(TEXTS) and i2t.labels_digest == t2i.labels_digest
    # images ia twice and ic1: ranks 1, 1, 1; images ib and ic2 twice: ranks 3, 3, 3
    assert i2t.metric(np.array([[2, 0, 1, 0], [0, 1, 0, 2], [1, 1, 1, 1]], dtype=float)).tolist() == [1, 3, 2]
    # texts c1 three times and b: ranks 3, 3, 3, 1
    assert t2i.metric(np.array([[0, 1, 3, 0]], dtype=float)).tolist() == [0.25]
    assert retrieval.target_set(targets, "mimic").digest == i2t.labels_digest
    with pytest.raises(RetrievalFileError, match="mimic is not scored on 'precision_at_5'"):
        retrieval.per_image(predictions, targets, "mimic", "precision_at_5")


def test_the_chexpert_scheme_gives_the_hand_computed_precision(tmp_path: Path) -> None:
    # two classes of six texts each; image x ranks x1, then y1, then x2..x6, then y2..y6; image y sees every text at
    # 0.0, and the ties put the six x texts first
    x, y = "Atelectasis", "Edema"
    texts = [f"x{k}" for k in range(1, 7)] + [f"y{k}" for k in range(1, 7)]
    groups = [x] * 6 + [y] * 6
    similarity = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.85, 0.1, 0.1, 0.1, 0.1, 0.1], [0.0] * 12])
    report = scorer("retrieval").score_files(*write_files(tmp_path, ["ix", "iy"], [x, y], texts, groups, similarity),
                                             "chexpert", BootstrapOptions(n_resamples=20))
    values = {name: metric.value for name, metric in report.metrics.items()}
    # x: P@1 1, P@5 4/5, P@10 6/10; y: 0, 0, 4/10
    assert values == pytest.approx({"precision_at_5": 0.4, "precision_at_1": 0.5, "precision_at_10": 0.5}, abs=1e-12)
    assert report.primary_metric == "precision_at_5"
    assert report.warnings == (f"precision_at_10: group(s) {[x, y]} have fewer than 10 texts; their images cannot reach 1",)


def test_recall_and_median_rank_against_a_random_ranking_by_hand(tmp_path: Path) -> None:
    """Every query ranks 4 candidates; ia, ib (texts a, b) have one relevant, ic1 and ic2 two (c1, c2): a hit at K = 1
    has chance 1/4 for one relevant and 1 - C(2,1)/C(4,1) = 1/2 for two."""
    files = write_files(tmp_path, IMAGES, GROUPS, TEXTS, GROUPS, SIMILARITY)
    # image -> text R@1: ia and ic1 hit (ranks 1, 3, 1, 3). P(at least 2 hits) = 1 - P(0) - P(1) with
    # P(0) = (3/4)^2 (1/2)^2 = 9/64, P(1) = 2 (1/4)(3/4)(1/4) + 2 (1/2)(1/2)(3/4)^2 = 24/64: 31/64
    i2t = chance_test("retrieval", *files, "mimic", "i2t_recall_at_1")
    assert (i2t.null, i2t.test, i2t.n) == ("random_ranking_recall", "exact Poisson-binomial", 4)
    assert (i2t.value, i2t.chance) == (0.5, pytest.approx(3 / 8)) and i2t.p_value == pytest.approx(31 / 64, rel=1e-12)
    # text -> image R@1: texts a, b, c2 hit (ranks 1, 1, 3, 1), the same chances by text;
    # P(4 hits) = 1/64, P(3) = 2 (3/4)(1/4)(1/2)^2 + 2 (1/2)(1/4)^2(1/2) = 8/64: 9/64
    t2i = chance_test("retrieval", *files, "mimic", "t2i_recall_at_1")
    assert t2i.value == 0.75 and t2i.p_value == pytest.approx(9 / 64, rel=1e-12)
    # R@5 with 4 candidates: every query hits under any ranking, p = 1
    assert chance_test("retrieval", *files, "mimic", "i2t_recall_at_5").p_value == pytest.approx(1.0)
    # median image -> text rank 2; null ranks uniform on 1..4 (ia, ib) and 1, 2, 3 with 1/2, 1/3, 1/6 (ic1, ic2):
    # P(median <= 2) = 49/72 and the mean null median 63/32, enumerated over the 4 * 4 * 3 * 3 rank combinations
    median = chance_test("retrieval", *files, "mimic", "i2t_median_rank")
    assert (median.null, median.value) == ("random_ranking_rank", 2.0)
    assert abs(median.p_value - 49 / 72) <= 4.5 * np.sqrt(49 / 72 * 23 / 72 / PERMUTATIONS) + 1 / PERMUTATIONS
    assert abs(median.chance - 63 / 32) <= 0.05
    # a constant model: ties put every relevant item last, never above chance
    (tmp_path / "flat").mkdir()
    flat = write_files(tmp_path / "flat", IMAGES, GROUPS, TEXTS, GROUPS, np.zeros((4, 4)))
    assert chance_test("retrieval", *flat, "mimic", "i2t_recall_at_1").p_value == 1.0
    assert chance_test("retrieval", *flat, "mimic", "t2i_median_rank").p_value == 1.0
    with pytest.raises(RetrievalFileError, match="mimic is not scored on 'precision_at_5'"):
        scorer("retrieval").chance(*files, "mimic", "precision_at_5")


def test_precision_against_a_random_ranking_by_hand(tmp_path: Path) -> None:
    """Two images against 12 texts, 6 of each image's class: the top-K relevant count is hypergeometric (12, 6, K)."""
    x, y = "Atelectasis", "Edema"
    texts = [f"x{k}" for k in range(1, 7)] + [f"y{k}" for k in range(1, 7)]
    groups = [x] * 6 + [y] * 6
    similarity = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.85, 0.1, 0.1, 0.1, 0.1, 0.1], [0.0] * 12])
    files = write_files(tmp_path, ["ix", "iy"], [x, y], texts, groups, similarity)
    # P@1: x's top text relevant, y's not (ties against the model); each 1/2 under the null: P(S >= 1) = 3/4
    at_1 = chance_test("retrieval", *files, "chexpert", "precision_at_1")
    assert (at_1.null, at_1.test, at_1.value, at_1.chance) == ("random_ranking_precision", "exact hypergeometric sum", 0.5, 0.5)
    assert at_1.p_value == pytest.approx(3 / 4, rel=1e-12)
    # P@5: 4 + 0 relevant; per image (6, 90, 300, 300, 90, 6) / 792 for 0..5 relevant: P(S >= 4) = 1289/1452
    at_5 = chance_test("retrieval", *files, "chexpert", "precision_at_5")
    assert at_5.value == pytest.approx(0.4) and at_5.p_value == pytest.approx(1289 / 1452, rel=1e-12)
    assert at_5.detail == "K=5, 12 candidates, 6 relevant; 4 relevant of 10 retrieved"


def test_chexpert_targets_pin_the_digest_of_the_images_labels_that_zero_shot_classification_pins(tmp_path: Path) -> None:
    """One ground truth per test split on a board: the 5x200 images' one-hot labels, whichever task reads them."""
    from benchmark.data.datasets.chexpert import COMPETITION_TASKS
    from benchmark.registry import Registry
    from benchmark.scoring.classification import ClassificationScheme, ClassificationScorer
    from benchmark.scoring.classification import write_targets as write_class_targets

    images = ["p3", "p1", "p2", "p0"]
    labels = np.eye(5, dtype=np.int64)[[3, 0, 4, 3]]
    schemes = Registry("test scheme")
    schemes.add("chexpert", ClassificationScheme("chexpert", COMPETITION_TASKS, "multiclass", "accuracy", COMPETITION_TASKS))
    classification = ClassificationScorer(task="zeroshot", schemes=schemes).target_set(
        write_class_targets(tmp_path / "class.csv", images, labels, schemes.get("chexpert")), "chexpert")
    groups = [COMPETITION_TASKS[k] for k in labels.argmax(1)]
    pool, pool_groups = ["t1", "t2", "t3"], ["Edema", "Atelectasis", "Pleural Effusion"]
    targets = write_targets(tmp_path / "t.csv", images, groups, pool, pool_groups)
    ours = scorer("retrieval").target_set(targets, "chexpert")
    assert ours.digest == classification.digest and ours.geometry == ""
    relabelled = write_targets(tmp_path / "r.csv", images, ["Edema", "Atelectasis", "Edema", "Edema"], pool, pool_groups)
    assert scorer("retrieval").target_set(relabelled, "chexpert").digest != classification.digest
    predictions = write_predictions(tmp_path / "p.npz", images, pool, np.zeros((4, 3)))
    assert scorer("retrieval").per_image(predictions, targets, "chexpert", "precision_at_1").labels_digest == ours.digest
    with pytest.raises(RetrievalFileError, match=r"image group\(s\) \['Nodule'\] are not classes of this dataset"):
        scorer("retrieval").target_set(write_targets(tmp_path / "n.csv", ["p0"], ["Nodule"], ["t"], ["Nodule"]), "chexpert")


def test_the_targets_digest_is_the_relevance_structure_in_any_row_order(tmp_path: Path) -> None:
    retrieval = scorer("retrieval")
    first = write_targets(tmp_path / "a.csv", IMAGES, GROUPS, TEXTS, GROUPS)
    shuffled = tmp_path / "b.csv"
    pd.read_csv(first, dtype=str).sample(frac=1, random_state=3).to_csv(shuffled, index=False)
    other = write_targets(tmp_path / "c.csv", IMAGES, ["a", "b", "c1", "c2"], TEXTS, ["a", "b", "c1", "c2"])
    digests = [retrieval.target_set(path, "mimic").digest for path in (first, shuffled, other)]
    assert digests[0] == digests[1] != digests[2]


@pytest.mark.parametrize("problem, message", [
    ("missing_text", r"1 test text id\(s\) missing, e.g. \['c2'\]"),
    ("extra_image", r"1 image id\(s\) not in the targets, e.g. \['iz'\]"),
    ("duplicated_image", r"1 duplicated image_id\(s\), e.g. \['ia'\]"),
    ("nan", r"1 non-finite similarity value\(s\), first for image 'ib' and text 'c1'"),
    ("shape", r"similarity must be a real \[image_ids, text_ids\] = \[4, 4\] array, got float64 \(4, 3\)"),
    ("pickled", r"not a readable NPZ predictions file of plain arrays"),
    ("not_npz", r"not an NPZ predictions file"),
    ("lonely_text", r"1 text\(s\) without a relevant image .*e.g. \['c2'\]"),
    ("bad_side", r"side 'caption' on line 2; one of \['image', 'text'\]"),
])
def test_a_malformed_file_is_one_error_naming_it(problem: str, message: str, tmp_path: Path) -> None:
    predictions, targets = write_files(tmp_path, IMAGES, GROUPS, TEXTS, GROUPS, SIMILARITY)
    if problem == "missing_text":
        write_predictions(predictions, IMAGES, TEXTS[:3], SIMILARITY[:, :3])
    elif problem == "extra_image":
        write_predictions(predictions, [*IMAGES, "iz"], TEXTS, np.vstack([SIMILARITY, SIMILARITY[:1]]))
    elif problem == "duplicated_image":
        write_predictions(predictions, ["ia", *IMAGES[1:3], "ia"], TEXTS, SIMILARITY)
    elif problem == "nan":
        broken = SIMILARITY.copy()
        broken[1, 2] = np.nan
        write_predictions(predictions, IMAGES, TEXTS, broken)
    elif problem == "shape":
        np.savez(predictions, image_ids=np.array(IMAGES), text_ids=np.array(TEXTS), similarity=SIMILARITY[:, :3])
    elif problem == "pickled":
        np.savez(predictions, image_ids=np.array(IMAGES, dtype=object), text_ids=np.array(TEXTS), similarity=SIMILARITY)
    elif problem == "not_npz":
        predictions.write_text("id,a\n")
    elif problem == "lonely_text":
        write_targets(targets, IMAGES, GROUPS, TEXTS, [*GROUPS[:3], "nobody"])
    elif problem == "bad_side":
        targets.write_text("id,side,group\nia,caption,a\n")
    with pytest.raises(RetrievalFileError, match=message):
        scorer("retrieval").score_files(predictions, targets, "mimic", BootstrapOptions(n_resamples=5))


def test_score_retrieval_prints_the_metrics_of_files_written_outside_the_grid(tmp_path: Path, capsys) -> None:
    predictions, targets = write_files(tmp_path, IMAGES, GROUPS, TEXTS, GROUPS, SIMILARITY)
    assert cli_main(["score", "retrieval", "--predictions", str(predictions), "--targets", str(targets),
                     "--dataset", "mimic", "--n-resamples", "100"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "retrieval" and printed["primary_metric"] == "i2t_recall_at_5" and printed["n_images"] == 4
    assert printed["metrics"]["t2i_recall_at_1"]["value"] == pytest.approx(0.75, abs=1e-12)
    assert printed["metrics"]["i2t_recall_at_5"]["n_resamples"] == 100
    assert cli_main(["score", "retrieval", "--predictions", str(predictions), "--targets", str(targets),
                     "--dataset", "rsna"]) != 0
    assert "unknown retrieval dataset 'rsna'" in capsys.readouterr().err


def test_every_scheme_metric_is_declared_and_the_headline_is_first() -> None:
    retrieval = scorer("retrieval")
    for name, scheme in RETRIEVAL_SCHEMES.items():
        assert retrieval.headline(name) == scheme.metric_names[0] and set(scheme.metric_names) <= set(retrieval.metrics)
    assert retrieval.metrics["i2t_median_rank"].higher_is_better is False
