"""The typed training outcome as the task contract carries it."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.heads.outcome import TrainingOutcome
from tasks.registry import TaskResult


def result(training: object) -> TaskResult:
    return TaskResult(predictions_file=Path("p"), targets_file=Path("t"), split_fingerprints={"test": "0" * 64}, config={},
                      training=training)  # type: ignore[arg-type]


def test_a_task_result_carries_a_training_outcome_or_none():
    outcome = TrainingOutcome(monitor="loss", best_epoch=None, epochs_run=0, stopped_early=False, resumed_from_epoch=0)
    assert result(outcome).training is outcome and result(None).training is None
    with pytest.raises(TypeError, match="training is a dict: it must be a benchmark.heads.outcome.TrainingOutcome"):
        result({"best_epoch": 3})  # the untyped summary of the adapters before benchmark/heads
