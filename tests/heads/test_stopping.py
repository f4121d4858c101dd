"""The one selection and early-stopping rule of every head (benchmark/heads/stopping.py), and the outcome it reports."""

from __future__ import annotations

import math

import pytest

from benchmark.heads.outcome import EpochRecord, TrainingOutcome
from benchmark.heads.stopping import EarlyStopping, Selection

DETECTION = Selection(monitor="map", rule="greater", patience=2)  # a non-finite map counts as no improvement
SEGMENTATION = Selection(monitor="loss", rule="less", patience=10, stop_on_non_finite=True)  # Lightning's check_finite


def stops(selection: Selection, values: list[float]) -> list[bool]:
    """Whether training stops after each validation value in turn."""
    stopping = EarlyStopping(selection)
    return [stopping.update(value) for value in values]


def record(epoch: int, **validation: float) -> EpochRecord:
    return EpochRecord(epoch=epoch, iterations=3, train_loss=1.0, validation=validation, train_seconds=0.5, val_seconds=0.25)


def test_a_tie_and_a_non_finite_map_count_as_validations_without_improvement():
    assert stops(DETECTION, [0.1, 0.1, 0.2, math.nan, 0.15]) == [False, False, False, False, True]


def test_a_tie_counts_as_no_improvement():
    # the reference's EarlyStopping(val_loss, patience=10, min_delta=0): only a strictly lower loss resets the count
    stopping = EarlyStopping(SEGMENTATION)
    stopped = [stopping.update(value) for value in [1.0, 0.5, *[0.5] * 9, 0.25, *[0.25] * 9, 0.5]]
    assert stopped == [False] * 21 + [True]  # the tenth validation after 0.25 (nine ties and a worse loss)
    assert (stopping.best, stopping.wait) == (0.25, 10)


def test_an_improvement_must_exceed_min_delta_and_a_non_finite_loss_stops_at_once_when_asked():
    chosen = Selection(monitor="loss", rule="less", patience=2, min_delta=0.25)  # exact in binary: exact comparisons
    # 0.75 is only min_delta below 1.0 (no improvement); 0.5 improves; 0.375 twice does not (more than 0.25 needed)
    stopping = EarlyStopping(chosen)
    assert [stopping.update(value) for value in [1.0, 0.75, 0.5, 0.375, 0.375]] == [False, False, False, False, True]
    assert stopping.best == 0.5
    assert stops(SEGMENTATION, [1.0, math.nan]) == [False, True]
    assert stops(SEGMENTATION, [1.0, math.inf]) == [False, True]
    assert stops(Selection("loss", "less", patience=2), [1.0, math.nan]) == [False, False]


def test_the_count_and_the_stop_survive_a_checkpoint():
    chosen = Selection(monitor="loss", rule="less", patience=3)
    stopping = EarlyStopping(chosen)
    [stopping.update(value) for value in [1.0, 1.0, 1.0]]
    resumed = EarlyStopping(chosen)
    resumed.load_state_dict(stopping.state_dict())
    assert resumed.update(1.0) and resumed.stopped
    finished = EarlyStopping(SEGMENTATION)
    finished.update(math.nan)  # stopped at once, with no count: a resumed run must still know
    again = EarlyStopping(SEGMENTATION)
    again.load_state_dict(finished.state_dict())
    assert again.stopped


def test_the_tested_epoch_is_the_first_best_finite_value():
    history = [record(1, loss=0.5, dice=0.1), record(2, loss=0.4, dice=0.9), record(3, loss=0.4, dice=0.2), record(4, loss=math.nan, dice=0.0)]
    assert SEGMENTATION.best_epoch(history) == 2  # the tie at epoch 3 keeps epoch 2 (CheckpointHook's strict rule)
    assert DETECTION.best_epoch([record(1, map=math.nan), record(2, map=0.0), record(3, map=0.0)]) == 2
    assert DETECTION.best_epoch([record(1, map=math.nan)]) is None


def test_the_outcome_counts_epochs_and_says_whether_training_stopped_early():
    history = [record(1, loss=0.5), record(2, loss=0.6)]
    outcome = SEGMENTATION.outcome(history, max_epochs=5, resumed_from_epoch=1)
    assert outcome == TrainingOutcome(monitor="loss", best_epoch=1, epochs_run=2, stopped_early=True, resumed_from_epoch=1,
                                      history=history)
    assert outcome.best == history[0] and history[0].seconds == 0.75
    assert not SEGMENTATION.outcome(history, max_epochs=2).stopped_early
    assert outcome.to_json()["history"][1] == {"epoch": 2, "iterations": 3, "train_loss": 1.0, "validation": {"loss": 0.6},
                                               "train_seconds": 0.5, "val_seconds": 0.25}


def test_a_selection_is_checked_when_it_is_made():
    with pytest.raises(ValueError, match="rule"):
        Selection(monitor="loss", rule="lower", patience=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="patience"):
        Selection(monitor="loss", rule="less", patience=0)
