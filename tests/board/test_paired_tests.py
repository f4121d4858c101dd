"""Paired tests (DeLong, paired bootstrap) and multiple-comparison corrections against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.classification import WEIGHTED_METRICS
from benchmark.scoring.compare import (
    ComparisonError,
    adjust,
    benjamini_hochberg,
    delong_components,
    delong_test,
    holm,
    paired_bootstrap,
)


def brute_force_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """DeLong's variance of AUC(a) - AUC(b) from the definition (Heaviside kernel, O(m·n))."""
    def placements(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = scores[y == 1], scores[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)
    v10a, v01a = placements(a)
    v10b, v01b = placements(b)
    m, n = v10a.size, v01a.size
    s10, s01 = np.cov(v10a, v10b), np.cov(v01a, v01b)
    variance = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    return v10a.mean() - v10b.mean(), variance


def test_delong_hand_computed_example() -> None:
    # positives 0.9, 0.4; negatives 0.6, 0.1: AUC 3/4, V10 = [1, 1/2], V01 = [1/2, 1],
    # var = 0.125/2 + 0.125/2 = 0.125; the perfect system b has zero variance, so
    # z = -0.25 / sqrt(0.125) and p = 2 * (1 - Phi(0.7071)) = 0.4795.
    y = np.array([1, 1, 0, 0])
    a = np.array([0.9, 0.4, 0.6, 0.1])
    b = np.array([0.9, 0.8, 0.2, 0.1])
    auc, v10, v01 = delong_components(y, a)
    assert auc == 0.75 and v10.tolist() == [1.0, 0.5] and v01.tolist() == [0.5, 1.0]
    result = delong_test(y, a, b)
    assert result.delta == pytest.approx(-0.25)
    assert result.se == pytest.approx(0.125 ** 0.5)
    assert result.p_value == pytest.approx(0.4795, abs=1e-4)


def test_delong_matches_the_definition_and_sklearn_with_ties() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 300)
    a = np.round(y + rng.normal(0, 1.0, 300), 1)  # rounding creates ties
    b = np.round(y + rng.normal(0, 1.5, 300), 1)
    result = delong_test(y, a, b)
    delta, variance = brute_force_delong(y, a, b)
    assert result.value_a == pytest.approx(roc_auc_score(y, a))
    assert result.value_b == pytest.approx(roc_auc_score(y, b))
    assert result.delta == pytest.approx(delta)
    assert result.se == pytest.approx(variance ** 0.5)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(delta) / variance ** 0.5))


def test_delong_over_several_runs_compares_mean_aurocs() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    runs_a = [y + rng.normal(0, 1, 200) for _ in range(3)]
    runs_b = [y + rng.normal(0, 2, 200) for _ in range(2)]
    result = delong_test(y, runs_a, runs_b)
    assert result.value_a == pytest.approx(np.mean([roc_auc_score(y, r) for r in runs_a]))
    assert result.value_b == pytest.approx(np.mean([roc_auc_score(y, r) for r in runs_b]))
    assert result.p_value < 0.05


def test_delong_needs_both_classes() -> None:
    with pytest.raises(ComparisonError, match="both classes"):
        delong_test(np.ones(5), np.arange(5.0), np.arange(5.0))


def accuracy_on(truth: np.ndarray, predicted: np.ndarray):
    """Accuracy on image multiplicities [R, n] (what PerImageRun.metric receives)."""
    correct = (truth == predicted).astype(float)
    return lambda weights: weights @ correct / weights.sum(axis=1)


def test_paired_bootstrap_is_deterministic_and_detects_a_real_gap() -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 3, 400)
    good = np.where(rng.random(400) < 0.9, truth, (truth + 1) % 3)
    bad = np.where(rng.random(400) < 0.6, truth, (truth + 1) % 3)
    options = BootstrapOptions(n_resamples=500, seed=7)
    first = paired_bootstrap([accuracy_on(truth, good)], [accuracy_on(truth, bad)], 400, options)
    again = paired_bootstrap([accuracy_on(truth, good)], [accuracy_on(truth, bad)], 400, options)
    assert first == again
    assert first.delta == pytest.approx(np.mean(good == truth) - np.mean(bad == truth))
    assert first.ci_low > 0 and first.p_value == pytest.approx(2 / 501)
    same = paired_bootstrap([accuracy_on(truth, good)], [accuracy_on(truth, good)], 400, options)
    assert same.delta == 0 and same.p_value == 1.0 and same.ci_low == same.ci_high == 0


def test_paired_bootstrap_leaves_out_single_class_resamples() -> None:
    y = np.array([0] * 9 + [1])
    a, b = np.linspace(0, 1, 10), np.linspace(1, 0, 10)

    def auroc(scores: np.ndarray):
        return lambda weights: WEIGHTED_METRICS.get("auroc")(y[:, None], scores[:, None], weights)

    result = paired_bootstrap([auroc(a)], [auroc(b)], 10, BootstrapOptions(n_resamples=200, seed=0))
    assert 0 < result.n_valid < 200  # about (0.9)^10 = 35% of resamples hold no positive


def test_holm_and_benjamini_hochberg_hand_computed() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005·4, 0.01·3, 0.03·2, 0.04·1 = 0.02, 0.03, 0.06, 0.04 → running max 0.02, 0.03, 0.06, 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: sorted p·4/rank = 0.02, 0.02, 0.04, 0.04 → running min from the top leaves them unchanged
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert adjust([0.6, 0.9], "holm") == pytest.approx([1.0, 1.0])
    assert adjust(p, "none") == pytest.approx(p)
    with pytest.raises(ComparisonError, match="unknown correction"):
        adjust(p, "bonferroni")


def test_run_variance_widens_a_gap_made_by_one_label_draw() -> None:
    from benchmark.scoring.compare import PairedResult, with_run_variance

    test_only = PairedResult("delong", 0.8, 0.7, 0.1, 0.1 - 1.96 * 0.02, 0.1 + 1.96 * 0.02, 5e-7, se=0.02)
    # per-run deltas 0.0 and 0.2: v_runs = 0.02 / 2 = 0.01; SE = sqrt(0.01 + 0.0004); df = SE^4 / 0.01^2
    combined = with_run_variance(test_only, [0.0, 0.2])
    se = (0.01 + 0.0004) ** 0.5
    assert combined.se_runs == pytest.approx(0.1) and combined.se == pytest.approx(se)
    df = se ** 4 / 0.01 ** 2
    assert combined.p_value == pytest.approx(2 * stats.t.sf(0.1 / se, df)) and combined.p_value > 0.3
    assert combined.delta == 0.1 and combined.ci_low < 0 < combined.ci_high
    assert with_run_variance(test_only, [0.1]) == test_only  # one run: nothing to add


def test_runs_scored_against_different_labels_are_not_compared(tmp_path) -> None:
    """The board refuses a record whose ground truth is not its pin; the comparison refuses such runs on its own too."""
    from benchmark.board.aggregate import aggregate
    from benchmark.board.compare import compare_cells
    from benchmark.board.store import Board, BoardEntry, BoardError, copy_board_protocol, default_board
    from benchmark.records import CellIdentity, MetricValue, RunRecord
    from benchmark.scoring import record_target_set

    demo = Board(default_board(demo=True))
    board = copy_board_protocol(demo, tmp_path / "labels-test", "labels-test")
    y = np.tile([0, 1], 20)
    ids = [f"p{k:02d}" for k in range(y.size)]
    scores = np.linspace(0.1, 0.9, y.size)
    records = []
    for name, sha, labels in [("a", "a" * 64, y), ("b", "b" * 64, np.r_[1 - y[:2], y[2:]])]:
        board.register_entry(BoardEntry(name, sha, "resnet18", "reference", [], "test", "random", "2026-01-01"))
        identity = CellIdentity(board.name, name, sha, "classification", "rsna", "classification", "linear", 100, 0, 0, "cached")
        (tmp_path / "p.csv").write_text("id,Target\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, scores)))
        (tmp_path / "t.csv").write_text("id,Target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, labels)))
        records.append(RunRecord(
            identity=identity, protocol_version=board.protocol.protocol_version, scorer="classification",
            metrics={"auroc": MetricValue(float(roc_auc_score(labels, scores)))}, headline_metric="auroc",
            predictions=board.store_artifact(identity, "predictions", tmp_path / "p.csv"),
            targets=board.store_artifact(identity, "targets", tmp_path / "t.csv"),
            target_set=record_target_set("classification", tmp_path / "t.csv", "rsna", "classification"),
            timings={}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={}, provenance={},
            created="2026-01-01T00:00:00+00:00",
        ))
    board.add(records[0])  # pins rsna/classification/test
    with pytest.raises(BoardError, match="not those the board pins"):
        board.add(records[1])
    cell_a, cell_b = aggregate(records, board.protocol.metric)
    with pytest.raises(ComparisonError, match="different labels"):
        compare_cells(board, records, cell_a, cell_b)


def test_a_rewritten_prediction_file_is_read_again(tmp_path) -> None:
    from pathlib import Path

    from benchmark.board.compare import per_image_run
    from benchmark.board.store import Board, copy_board_protocol, default_board
    from benchmark.records import CellIdentity, MetricValue, RunRecord
    from benchmark.scoring import record_target_set

    demo = Board(default_board(demo=True))
    board = copy_board_protocol(demo, tmp_path / "reload-test", "reload-test")
    identity = CellIdentity(board.name, "a", "a" * 64, "classification", "rsna", "classification", "linear", 100, 0, 0, "cached")
    (tmp_path / "t.csv").write_text("id,Target\nx,0\ny,1\n")

    def record_with(scores: str) -> RunRecord:
        (tmp_path / "p.csv").write_text(f"id,Target\n{scores}")
        return RunRecord(
            identity=identity, protocol_version=board.protocol.protocol_version, scorer="classification",
            metrics={"auroc": MetricValue(1.0)}, headline_metric="auroc",
            predictions=board.store_artifact(identity, "predictions", tmp_path / "p.csv"),
            targets=board.store_artifact(identity, "targets", tmp_path / "t.csv"),
            target_set=record_target_set("classification", tmp_path / "t.csv", "rsna", "classification"),
            timings={}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={}, provenance={},
            created="2026-01-01T00:00:00+00:00",
        )

    first = per_image_run(board, record_with("x,0.1\ny,0.9\n"))
    second = per_image_run(board, record_with("x,0.7\ny,0.2\n"))
    assert first.binary_auroc[1].tolist() == [0.1, 0.9]
    assert second.binary_auroc[1].tolist() == [0.7, 0.2]


def test_generic_paired_path_aligns_runs_written_in_different_row_orders(tmp_path) -> None:
    """The same predictions in two row orders are the same system: delta 0, p 1, for DeLong (binary AUROC)
    and for the paired bootstrap (COVIDx accuracy), both reached through the task's scorer only."""
    from pathlib import Path

    from benchmark.board.aggregate import aggregate
    from benchmark.board.compare import compare_cells
    from benchmark.board.store import Board, BoardEntry, copy_board_protocol, default_board
    from benchmark.records import CellIdentity, MetricValue, RunRecord
    from benchmark.scoring import record_target_set

    demo = Board(default_board(demo=True))
    board = copy_board_protocol(demo, tmp_path / "order-test", "order-test")
    rng = np.random.default_rng(0)
    ids = [f"p{k:02d}" for k in range(30)]
    labels, scores = rng.integers(0, 3, 30), rng.random((30, 3))
    files = {"rsna": ("Target", lambda k: f"{scores[k, 0]}", lambda k: f"{int(labels[k] > 0)}", "auroc"),
             "covidx": ("normal,pneumonia,COVID-19", lambda k: ",".join(map(str, scores[k])), lambda k: f"{labels[k]}",
                        "accuracy")}
    for dataset, (header, prediction, target, metric) in files.items():
        target_header = "label" if dataset == "covidx" else header
        for name, sha, order in [("a", "a" * 64, range(30)), ("b", "b" * 64, reversed(range(30)))]:
            rows = list(order)
            (tmp_path / "p.csv").write_text(f"id,{header}\n" + "".join(f"{ids[k]},{prediction(k)}\n" for k in rows))
            (tmp_path / "t.csv").write_text(f"id,{target_header}\n" + "".join(f"{ids[k]},{target(k)}\n" for k in rows))
            board.register_entry(BoardEntry(name, sha, "resnet18", "reference", [], "test", "random", "2026-01-01"))
            identity = CellIdentity(board.name, name, sha, "classification", dataset, "classification", "linear", 100, 0, 0, "cached")
            board.add(RunRecord(
                identity=identity, protocol_version=board.protocol.protocol_version, scorer="classification",
                metrics={metric: MetricValue(0.5)}, headline_metric=metric,
                predictions=board.store_artifact(identity, "predictions", tmp_path / "p.csv"),
                targets=board.store_artifact(identity, "targets", tmp_path / "t.csv"),
                target_set=record_target_set("classification", tmp_path / "t.csv", dataset, "classification"),
                timings={}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={}, provenance={},
                created="2026-01-01T00:00:00+00:00",
            ))
    records = board.records()
    cells = {(cell.dataset, cell.backbone): cell for cell in aggregate(records, board.protocol.metric)}
    exact = compare_cells(board, records, cells[("rsna", "a")], cells[("rsna", "b")])
    resampled = compare_cells(board, records, cells[("covidx", "a")], cells[("covidx", "b")])
    assert (exact.test, exact.delta, exact.p_value) == ("delong", 0.0, 1.0)
    assert (resampled.test, resampled.delta, resampled.p_value) == ("paired_bootstrap", 0.0, 1.0)
    assert resampled.value_a == pytest.approx(np.mean(scores.argmax(1) == labels))
