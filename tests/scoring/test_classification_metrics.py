"""Classification metrics against hand-computed values, bootstrap intervals, file validation, score verb."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.cli import main
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions, bootstrap_ci, percentile_interval, resample_indices
from benchmark.scoring.classification import (
    METRICS,
    SCHEMES,
    PredictionFileError,
    accuracy,
    balanced_accuracy,
    compute_metrics,
    flat_metrics,
    labels_to_matrix,
    macro_auroc,
    read_predictions,
    WEIGHTED_METRICS,
    ClassificationScorer,
    read_targets,
    write_predictions,
    write_targets,
)

score_files = ClassificationScorer().score_files
COVIDX = SCHEMES.get("covidx")
RSNA = SCHEMES.get("rsna")
CHEXPERT = SCHEMES.get("chexpert")


def column(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=float)[:, None]


# ------------------------------------------------------------------------------ metric values

def test_auroc_of_a_small_ranking_is_three_quarters():
    # positives 0.35 and 0.8 against negatives 0.1 and 0.4: 3 of the 4 pairs are ordered correctly
    result = macro_auroc(column([0, 0, 1, 1]), column([0.1, 0.4, 0.35, 0.8]), ["Target"])
    assert result.value == pytest.approx(0.75)
    assert result.per_class == {"Target": pytest.approx(0.75)}
    assert result.warnings == ()


def test_auroc_counts_a_tie_as_half():
    assert macro_auroc(column([0, 1, 0, 1]), column([0.5, 0.5, 0.2, 0.9]), ["c"]).value == pytest.approx(0.875)


def test_macro_auroc_is_the_unweighted_mean_of_classes():
    targets = np.array([[0, 1], [0, 0], [1, 1], [1, 0]])
    scores = np.array([[0.1, 0.9], [0.4, 0.2], [0.35, 0.3], [0.8, 0.6]])
    # a: 0.75 as above; b: positives 0.9, 0.3 vs negatives 0.2, 0.6 -> 0.3 < 0.6 is the one wrong pair of 4
    result = macro_auroc(targets, scores, ["a", "b"])
    assert result.per_class == {"a": pytest.approx(0.75), "b": pytest.approx(0.75)}
    targets[:, 1] = [1, 0, 0, 1]  # b: positives 0.9, 0.6 vs 0.2, 0.3 -> 1.0
    assert macro_auroc(targets, scores, ["a", "b"]).value == pytest.approx((0.75 + 1.0) / 2)


def test_a_class_with_a_single_label_value_gives_nan_and_a_warning_not_a_crash():
    targets = np.array([[0, 1], [1, 1], [0, 1]])
    result = macro_auroc(targets, np.random.default_rng(0).random((3, 2)), ["Edema", "Cardiomegaly"])
    assert np.isnan(result.value)
    assert np.isnan(result.per_class["Cardiomegaly"]) and not np.isnan(result.per_class["Edema"])
    assert len(result.warnings) == 1 and "Cardiomegaly" in result.warnings[0]


def test_accuracy_and_balanced_accuracy_by_hand():
    truth = labels_to_matrix(np.array([0, 0, 0, 1, 2, 2]), COVIDX)
    predicted = labels_to_matrix(np.array([0, 0, 1, 1, 2, 0]), COVIDX).astype(float)
    assert accuracy(truth, predicted, COVIDX.classes).value == pytest.approx(4 / 6)
    balanced = balanced_accuracy(truth, predicted, COVIDX.classes)
    assert balanced.value == pytest.approx((2 / 3 + 1 + 1 / 2) / 3)
    assert balanced.per_class == {"normal": pytest.approx(2 / 3), "pneumonia": 1.0, "COVID-19": 0.5}


def test_balanced_accuracy_names_a_class_absent_from_the_test_set():
    truth = labels_to_matrix(np.array([0, 0, 1]), COVIDX)
    result = balanced_accuracy(truth, truth.astype(float), COVIDX.classes)
    assert result.value == 1.0 and "COVID-19" in result.warnings[0]


def test_one_vs_rest_auroc_matches_scikit_learn():
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.arange(30) % 3)
    scores = rng.dirichlet(np.ones(3), size=30)
    expected = roc_auc_score(labels, scores, multi_class="ovr", average="macro")
    assert macro_auroc(labels_to_matrix(labels, COVIDX), scores, COVIDX.classes).value == pytest.approx(expected)


@pytest.mark.parametrize("dataset", SCHEMES.names())
def test_every_scheme_names_registered_metrics_and_scores_perfect_predictions(dataset):
    scheme = SCHEMES.get(dataset)
    for name in scheme.metric_names:
        assert name in METRICS
    n_classes = len(scheme.classes)
    if scheme.target_format == "multiclass":
        targets = labels_to_matrix(np.arange(6) % n_classes, scheme)
    else:
        targets = np.array([[1] * n_classes, [0] * n_classes] * 3)
    results = compute_metrics(targets, targets.astype(float), scheme)
    assert all(result.value == pytest.approx(1.0) for result in results.values())
    assert scheme.primary in flat_metrics(results)


def test_compute_metrics_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="must both be"):
        compute_metrics(np.zeros((4, 5)), np.zeros((4, 4)), CHEXPERT)


# --------------------------------------------------------------------------------- bootstrap

def test_bootstrap_is_seeded_and_brackets_the_value():
    targets, scores = column([0, 0, 1, 1, 0, 1, 1, 0]), column([0.1, 0.4, 0.35, 0.8, 0.3, 0.9, 0.6, 0.2])

    def statistic(rows):
        return macro_auroc(targets[rows], scores[rows], ["c"]).value

    first = bootstrap_ci(statistic, len(targets), BootstrapOptions(n_resamples=200, seed=7))
    again = bootstrap_ci(statistic, len(targets), BootstrapOptions(n_resamples=200, seed=7))
    other = bootstrap_ci(statistic, len(targets), BootstrapOptions(n_resamples=200, seed=8))
    assert first == again
    assert (first.low, first.high) != (other.low, other.high) or first.n_valid != other.n_valid
    assert first.low <= first.value <= first.high
    # some resamples of 8 images hold a single class: they are left out and counted, not an error
    assert 0 < first.n_valid < 200


@pytest.mark.parametrize("scheme", [CHEXPERT, RSNA, COVIDX], ids=lambda scheme: scheme.dataset)
def test_weighted_metrics_equal_the_metrics_of_the_resampled_rows(scheme):
    """A resample drawing image i k times is the test set with weight k on image i; ties included."""
    rng = np.random.default_rng(0)
    n = 40
    if scheme.target_format == "multiclass":
        targets = labels_to_matrix(rng.integers(0, len(scheme.classes), n), scheme)
    else:
        targets = rng.integers(0, 2, (n, len(scheme.classes)))
    scores = np.round(rng.random((n, len(scheme.classes))), 1)  # rounded: many tied scores
    rows = resample_indices(n, BootstrapOptions(n_resamples=30, seed=1))
    weights = np.stack([np.bincount(row, minlength=n) for row in rows]).astype(float)
    for name in scheme.metric_names:
        expected = [METRICS.get(name)(targets[row], scores[row], scheme.classes).value for row in rows]
        assert WEIGHTED_METRICS.get(name)(targets, scores, weights) == pytest.approx(expected, abs=1e-12, nan_ok=True)


def test_weighted_auroc_by_hand():
    targets, scores = np.array([1, 0, 1, 0]), np.array([0.9, 0.5, 0.5, 0.1])
    weights = np.array([[1, 1, 1, 1], [2, 1, 0, 1], [1, 0, 1, 0]], dtype=float)
    # all: pairs (pos, neg) = (.9,.5) 1, (.9,.1) 1, (.5,.5) 0.5, (.5,.1) 1 -> 3.5 / 4
    # second: positive .9 twice vs negatives .5 and .1 -> 1; third: no negative -> undefined
    result = WEIGHTED_METRICS.get("auroc")(targets[:, None], scores[:, None], weights)
    assert result[:2].tolist() == [0.875, 1.0] and np.isnan(result[2])


def test_bootstrap_of_an_always_undefined_statistic_is_nan():
    interval = bootstrap_ci(lambda rows: float("nan"), 5, BootstrapOptions(n_resamples=20))
    assert interval.n_valid == 0 and np.isnan(interval.low) and np.isnan(interval.high)


def test_resample_indices_and_percentiles():
    rows = resample_indices(10, BootstrapOptions(n_resamples=5, seed=1))
    assert rows.shape == (5, 10) and rows.min() >= 0 and rows.max() < 10
    assert percentile_interval(np.array([np.nan, *range(101)]), 0.9) == pytest.approx((5.0, 95.0))
    with pytest.raises(ValueError):
        resample_indices(0)


# -------------------------------------------------------------------------------------- files

def write_pair(folder: Path, scheme, n: int = 12, seed: int = 0) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if scheme.target_format == "multiclass":
        targets = labels_to_matrix(np.arange(n) % len(scheme.classes), scheme)
    else:
        targets = (rng.random((n, len(scheme.classes))) < 0.5).astype(int)
        targets[0], targets[1] = 1, 0
    scores = rng.random(targets.shape)
    ids = [f"img{index}" for index in range(n)]
    return (write_predictions(folder / "pred.csv", ids, scores, scheme), write_targets(folder / "targets.csv", ids, targets, scheme),
            targets, scores)


@pytest.mark.parametrize("dataset", SCHEMES.names())
def test_files_round_trip_exactly(tmp_path, dataset):
    scheme = SCHEMES.get(dataset)
    predictions, targets_path, targets, scores = write_pair(tmp_path, scheme)
    assert np.array_equal(read_predictions(predictions, scheme).to_numpy(), scores)
    assert np.array_equal(read_targets(targets_path, scheme).to_numpy(), targets)
    header = targets_path.read_text().splitlines()[0]
    assert header == ("id,label" if scheme.target_format == "multiclass" else ",".join(["id", *scheme.classes]))


def test_score_files_accepts_any_row_and_column_order(tmp_path):
    predictions, targets_path, targets, scores = write_pair(tmp_path, CHEXPERT)
    frame = pd.read_csv(predictions, dtype={"id": str})
    frame = frame[["id", *reversed(CHEXPERT.classes)]].iloc[::-1]
    frame.to_csv(predictions, index=False)
    result = score_files(predictions, targets_path, "chexpert", BootstrapOptions(n_resamples=50))
    assert result.metrics["auroc"].value == pytest.approx(macro_auroc(targets, scores, CHEXPERT.classes).value)


def corrupt(path: Path, edit) -> Path:
    lines = path.read_text().splitlines()
    path.write_text("\n".join(edit(lines)) + "\n")
    return path


BAD_PREDICTIONS = {
    "missing id": (lambda lines: lines[:-1], "missing"),
    "extra id": (lambda lines: [*lines, "stranger,0.5"], "not in the test set"),
    "wrong column": (lambda lines: ["id,pneumonia", *lines[1:]], "wrong columns"),
    "extra column": (lambda lines: [lines[0] + ",extra", *[line + ",1" for line in lines[1:]]], "unexpected \\['extra'\\]"),
    "duplicated column": (lambda lines: ["id,Target,Target", *[line + ",1" for line in lines[1:]]], "duplicated column"),
    "NaN score": (lambda lines: [*lines[:3], lines[3].split(",")[0] + ",nan", *lines[4:]], "line 4"),
    "empty score": (lambda lines: [*lines[:2], lines[2].split(",")[0] + ",", *lines[3:]], "line 3"),
    "text score": (lambda lines: [*lines[:2], lines[2].split(",")[0] + ",high", *lines[3:]], "non-numeric"),
    "duplicated id": (lambda lines: [*lines[:-1], lines[1]], "duplicated id"),
}


@pytest.mark.parametrize("problem", BAD_PREDICTIONS)
def test_bad_prediction_files_name_the_file_and_the_problem(tmp_path, problem):
    edit, message = BAD_PREDICTIONS[problem]
    predictions, targets_path, _, _ = write_pair(tmp_path, RSNA)
    corrupt(predictions, edit)
    with pytest.raises(PredictionFileError, match=message) as error:
        score_files(predictions, targets_path, "rsna", BootstrapOptions(n_resamples=10))
    assert str(predictions) in str(error.value)


def test_bad_target_values_and_missing_files(tmp_path):
    predictions, targets_path, _, _ = write_pair(tmp_path, COVIDX)
    corrupt(targets_path, lambda lines: [*lines[:1], lines[1].split(",")[0] + ",3", *lines[2:]])
    with pytest.raises(PredictionFileError, match="allowed values are \\[0, 1, 2\\]"):
        score_files(predictions, targets_path, "covidx")
    predictions, targets_path, _, _ = write_pair(tmp_path, COVIDX)
    with pytest.raises(PredictionFileError, match="absent.csv: predictions file not found"):
        score_files(tmp_path / "absent.csv", targets_path, "covidx")


def test_unknown_dataset_suggests_close_names(tmp_path):
    predictions, targets_path, _, _ = write_pair(tmp_path, RSNA)
    with pytest.raises(KeyError, match="chexpert"):
        score_files(predictions, targets_path, "chexpret")


# -------------------------------------------------------------------------------- score verb

def test_score_verb_prints_the_official_metrics_with_intervals(tmp_path, capsys):
    predictions, targets_path, targets, scores = write_pair(tmp_path, COVIDX, n=30)
    assert isinstance(scorer("classification"), ClassificationScorer)
    code = main(["score", "classification", "--predictions", str(predictions), "--targets", str(targets_path),
                 "--dataset", "covidx", "--n-resamples", "100", "--seed", "3"])
    output = json.loads(capsys.readouterr().out)
    assert code == 0
    assert output["primary_metric"] == "accuracy" and output["n_images"] == 30
    entry = output["metrics"]["accuracy"]
    assert entry["value"] == pytest.approx(np.mean(targets.argmax(1) == scores.argmax(1)))
    assert entry["low"] <= entry["value"] <= entry["high"] and entry["n_resamples"] == 100 and entry["seed"] == 3
    assert set(output["metrics"]) == {"accuracy", "balanced_accuracy", "auroc"}


def test_score_verb_reports_a_bad_file_without_a_traceback(tmp_path, capsys):
    predictions, targets_path, _, _ = write_pair(tmp_path, RSNA)
    corrupt(predictions, lambda lines: lines[:-1])
    code = main(["score", "classification", "--predictions", str(predictions), "--targets", str(targets_path), "--dataset", "rsna"])
    assert code == 2 and "1 test id(s) missing" in capsys.readouterr().err


@pytest.mark.parametrize("arguments, message", [
    (["--n-resamples", "0"], "whole number from 1 to 10000"),
    (["--confidence", "1.5"], "between 0 and 1"),
])
def test_score_verb_validates_its_arguments(tmp_path, capsys, arguments, message):
    predictions, targets_path, _, _ = write_pair(tmp_path, RSNA)
    with pytest.raises(SystemExit) as exit_info:
        main(["score", "classification", "--predictions", str(predictions), "--targets", str(targets_path),
              "--dataset", "rsna", *arguments])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_score_verb_on_header_only_files_is_one_error_line(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,Target\n")
    (tmp_path / "p.csv").write_text("id,Target\n")
    code = main(["score", "classification", "--predictions", str(tmp_path / "p.csv"), "--targets", str(tmp_path / "t.csv"),
                 "--dataset", "rsna"])
    assert code == 2 and "has no rows" in capsys.readouterr().err


def test_an_undefined_metric_prints_as_null_with_the_reason(tmp_path, capsys):
    (tmp_path / "t.csv").write_text("id,Target\na,0\nb,0\n")
    (tmp_path / "p.csv").write_text("id,Target\na,0.2\nb,0.4\n")
    assert main(["score", "classification", "--predictions", str(tmp_path / "p.csv"), "--targets",
                 str(tmp_path / "t.csv"), "--dataset", "rsna", "--n-resamples", "5"]) == 0
    output = json.loads(capsys.readouterr().out, parse_constant=lambda name: pytest.fail(f"{name} is not valid JSON"))
    assert output["metrics"]["auroc"]["value"] is None
    assert any("AUROC undefined for Target" in warning for warning in output["warnings"])


@pytest.mark.parametrize("line", [2, 3])
def test_a_row_with_too_many_fields_names_its_line_not_an_empty_id(tmp_path, capsys, line):
    (tmp_path / "t.csv").write_text("id,Target\na,0\nb,1\n")
    rows = ["id,Target", "a,0.2", "b,0.4"]
    rows[line - 1] += ",0.9"  # in the first data row, pandas would silently take the ids as an index
    (tmp_path / "p.csv").write_text("\n".join(rows) + "\n")
    assert main(["score", "classification", "--predictions", str(tmp_path / "p.csv"), "--targets",
                 str(tmp_path / "t.csv"), "--dataset", "rsna", "--n-resamples", "5"]) == 2
    error = capsys.readouterr().err
    assert f"p.csv line {line}: 3 fields, the header has 2" in error and "Traceback" not in error, error


@pytest.mark.parametrize("dataset", SCHEMES.names())
def test_the_target_set_is_the_ground_truth_digest_paired_runs_compare(tmp_path, dataset):
    scheme = SCHEMES.get(dataset)
    predictions, targets_path, targets, _ = write_pair(tmp_path, scheme)
    found = scorer("classification").target_set(targets_path, dataset)
    assert found.geometry == ""
    assert found.digest == scorer("classification").per_image(predictions, targets_path, dataset, scheme.primary).labels_digest
    relabelled = targets.copy()
    relabelled[[0, 1]] = relabelled[[1, 0]]  # two images swap their labels
    other = write_targets(tmp_path / "other.csv", [f"img{index}" for index in range(len(targets))], relabelled, scheme)
    assert scorer("classification").target_set(other, dataset).digest != found.digest
