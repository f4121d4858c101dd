"""The typed score report: the JSON the score verb prints and the values a run record stores."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from benchmark.commands import print_json
from benchmark.records import MetricValue
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions, ConfidenceInterval
from benchmark.scoring.classification import SCHEMES, write_predictions, write_targets
from benchmark.scoring.report import ScoredMetric, ScoreReport

NAN = float("nan")


def interval(value: float, low: float, high: float, n_valid: int = 10) -> ConfidenceInterval:
    return ConfidenceInterval(value=value, low=low, high=high, confidence=0.95, n_resamples=10, n_valid=n_valid, seed=0)


REPORT = ScoreReport(
    task="classification", dataset="chexpert", primary_metric="auroc", n_images=4,
    metrics={
        "auroc": ScoredMetric(interval(0.8, 0.7, 0.9), {"A": 0.75, "B": NAN}),
        "accuracy": ScoredMetric(interval(NAN, NAN, NAN, n_valid=0), {}),
        "map": ScoredMetric(interval(0.5, NAN, NAN, n_valid=0)),  # a value without an interval
    },
    warnings=("AUROC undefined for B",), predictions="p.csv", targets="t.csv",
)


def test_metric_values_keep_defined_metrics_and_per_class_parts_with_a_standard_error_from_the_interval():
    values = REPORT.metric_values()
    assert list(values) == ["auroc", "auroc[A]", "map"]  # NaN metric and NaN class left out
    auroc = values["auroc"]
    assert (auroc.value, auroc.ci_low, auroc.ci_high) == (0.8, 0.7, 0.9)
    assert auroc.bootstrap_se == pytest.approx(0.2 / (2 * 1.959963984540054), abs=1e-15)  # 0.05102...
    assert values["auroc[A]"] == MetricValue(0.75)  # components carry no interval
    assert values["map"] == MetricValue(0.5, None, None, None)


def test_notes_name_each_left_out_metric_then_the_scorer_warnings():
    assert REPORT.undefined == ["accuracy"]
    assert REPORT.notes() == ["metric accuracy undefined on this test set (left out)", "AUROC undefined for B"]


def test_to_dict_is_the_score_verbs_json_with_nan_printed_as_null(capsys: pytest.CaptureFixture[str]):
    out = REPORT.to_dict()
    assert list(out) == ["task", "dataset", "primary_metric", "n_images", "metrics", "warnings", "predictions", "targets"]
    assert list(out["metrics"]["auroc"]) == ["value", "low", "high", "confidence", "n_resamples", "n_valid", "seed",
                                             "per_class"]
    assert "per_class" not in out["metrics"]["map"] and out["metrics"]["accuracy"]["per_class"] == {}
    print_json(out)
    printed = json.loads(capsys.readouterr().out)
    assert printed["metrics"]["auroc"]["per_class"] == {"A": 0.75, "B": None}
    assert printed["metrics"]["accuracy"]["value"] is None and printed["warnings"] == ["AUROC undefined for B"]
    segmentation = ScoreReport("segmentation", "siim", "dice", 3, {}, (), "p.npz", "t.npz", n_positive_images=1)
    assert list(segmentation.to_dict())[:5] == ["task", "dataset", "primary_metric", "n_images", "n_positive_images"]


def test_a_scored_file_gives_hand_computed_values(tmp_path: Path):
    """Four COVIDx images, labels normal, pneumonia, COVID-19, normal; the top score says normal, pneumonia,
    pneumonia, normal: accuracy 3/4, balanced accuracy (1 + 1 + 0) / 3."""
    scheme = SCHEMES.get("covidx")
    ids = ["a", "b", "c", "d"]
    targets = np.eye(3)[[0, 1, 2, 0]]
    scores = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.6, 0.3], [0.5, 0.3, 0.2]])
    report = scorer("classification").score_files(write_predictions(tmp_path / "p.csv", ids, scores, scheme),
                                                  write_targets(tmp_path / "t.csv", ids, targets, scheme), "covidx",
                                                  BootstrapOptions(n_resamples=20))
    assert (report.task, report.dataset, report.primary_metric, report.n_images) == ("classification", "covidx", "accuracy", 4)
    values = report.metric_values()
    assert values["accuracy"].value == 0.75 and values["balanced_accuracy"].value == pytest.approx(2 / 3, abs=1e-12)
    low, high = report.metrics["accuracy"].interval.low, report.metrics["accuracy"].interval.high
    assert 0 <= low <= high <= 1 and values["accuracy"].bootstrap_se == pytest.approx((high - low) / (2 * 1.959963984540054))
    assert report.predictions == str(tmp_path / "p.csv") and math.isfinite(report.metrics["auroc"].value)
