"""Aggregation over seeds and draws: mean, std and the two-level 95% interval, by hand."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats

from benchmark.board.aggregate import aggregate, combine
from benchmark.records import MetricValue
from benchmark.scoring import MetricSpec

sys.path.insert(0, str(Path(__file__).parent.parent))
from test_records import make_record  # noqa: E402

FRACTION = MetricSpec("auroc", "AUROC")  # in [0, 1], higher is better, shown × 100


def test_combine_three_runs_hand_computed() -> None:
    # x = 0.80, 0.84, 0.82: mean 0.82, std 0.02; v_runs = 0.0004 / 3; v_test = (0.03² + 0.04²) / 2 = 0.00125
    mean, std, se_runs, se_test, se, df, (low, high) = combine([0.80, 0.84, 0.82], [0.03, 0.04, None], FRACTION)
    v_runs, v_test = 0.0004 / 3, 0.00125
    assert mean == pytest.approx(0.82) and std == pytest.approx(0.02)
    assert se_runs == pytest.approx(math.sqrt(v_runs)) and se_test == pytest.approx(math.sqrt(v_test))
    assert se == pytest.approx(math.sqrt(v_runs + v_test))
    assert df == pytest.approx((v_runs + v_test) ** 2 / (v_runs ** 2 / 2))  # = 215.3
    half = stats.t.ppf(0.975, df) * se
    assert (low, high) == pytest.approx((0.82 - half, 0.82 + half))
    assert half == pytest.approx(0.0733, abs=1e-4)


def test_single_run_uses_the_test_set_interval_alone() -> None:
    mean, std, _, _, se, df, (low, high) = combine([0.7], [0.05], FRACTION)
    assert std is None and se == 0.05 and math.isinf(df)
    assert (low, high) == pytest.approx((0.7 - 1.959964 * 0.05, 0.7 + 1.959964 * 0.05))


def test_runs_without_bootstrap_error_give_a_t_interval_clipped_to_the_metric_range() -> None:
    mean, std, _, se_test, se, df, (low, high) = combine([0.97, 0.99], [None, None], FRACTION)
    assert se_test is None and df == pytest.approx(1) and se == pytest.approx(0.01)
    assert low == pytest.approx(0.98 - stats.t.ppf(0.975, 1) * 0.01) and high == 1.0


def test_the_interval_is_clipped_to_the_declared_range_not_to_zero_one() -> None:
    loss = MetricSpec("loss", "loss", low=0.0, high=math.inf, higher_is_better=False, scale=1.0)
    *_, (low, high) = combine([2.0, 4.0], [None, None], loss)
    half = stats.t.ppf(0.975, 1) * 1.0  # std sqrt(2), se = std / sqrt(2) = 1
    assert low == 0.0 and high == pytest.approx(3.0 + half) and high > 1.0
    assert max([2.0, 4.0], key=loss.ranking) == 2.0 and loss.shown(0.25) == 0.25


def test_aggregate_groups_by_entry_and_column_and_keeps_raw_scores() -> None:
    records = []
    for draw, seed, value in [(0, 0, 0.80), (1, 0, 0.84), (0, 1, 0.82)]:
        record = make_record(draw=draw, seed=seed)
        record.metrics = {"auroc": MetricValue(value, bootstrap_se=0.03)}
        records.append(record)
    other = make_record(fraction=100, draw=0)
    records.append(other)
    cells = aggregate(records, lambda task, dataset: FRACTION)
    assert [(c.fraction, c.n) for c in cells] == [(10, 3), (100, 1)]
    ten = cells[0]
    assert ten.mean == pytest.approx(0.82) and ten.std == pytest.approx(0.02)
    assert sorted(run.value for run in ten.runs) == [0.80, 0.82, 0.84]
    assert ten.as_dict()["n"] == 3 and replace(ten).entry == records[0].identity.entry_key
