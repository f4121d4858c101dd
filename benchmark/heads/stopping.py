"""Which epoch is tested and when training stops: the reference's Lightning ``ModelCheckpoint`` and
``EarlyStopping`` rule, once for every task (no mmengine here: classification's plain loop uses it
as it is, ``hooks.py`` wraps it for mmengine's Runner).

- The tested epoch is the first one with the best finite monitored value (a later tie does not
  replace it), as ``ModelCheckpoint`` and mmengine's ``CheckpointHook(save_best=..., rule=...)`` keep it.
- Training stops after ``patience`` validations without a value strictly better than the best by
  more than ``min_delta``: a tie counts as no improvement (mmengine's own ``EarlyStoppingHook``
  resets its count on a tie). A non-finite value either stops at once (Lightning's
  ``check_finite``: segmentation) or counts as a validation without improvement (detection,
  classification); both are kept because they stop training at different epochs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from benchmark.heads.outcome import EpochRecord, TrainingOutcome

Rule = Literal["greater", "less"]


@dataclass(frozen=True)
class Selection:
    """The monitored validation value, its direction and the early-stopping settings of one task."""

    monitor: str  # a validation metric's name as EpochRecord.validation holds it: "map", "loss", ...
    rule: Rule  # "greater": higher is better
    patience: int  # validations without improvement before training stops
    min_delta: float = 0.0  # an improvement must exceed the best by more than this
    stop_on_non_finite: bool = False  # a NaN or infinite value stops at once (else: no improvement)

    def __post_init__(self) -> None:
        if self.rule not in ("greater", "less"):
            raise ValueError(f"selection rule {self.rule!r}: one of 'greater', 'less'")
        if self.patience < 1 or self.min_delta < 0:
            raise ValueError(f"selection of {self.monitor!r}: patience must be >= 1 and min_delta >= 0 "
                             f"(got {self.patience}, {self.min_delta})")

    @property
    def worst(self) -> float:
        return -math.inf if self.rule == "greater" else math.inf

    def better(self, value: float, best: float, margin: float = 0.0) -> bool:
        """``value`` strictly better than ``best`` by more than ``margin`` (never for NaN)."""
        return value > best + margin if self.rule == "greater" else value < best - margin

    def best_epoch(self, history: Sequence[EpochRecord]) -> int | None:
        """The epoch tested: the first with the best finite monitored value; None when none is finite."""
        best, epoch = self.worst, None
        for record in history:
            value = record.validation[self.monitor]
            if math.isfinite(value) and self.better(value, best):
                best, epoch = value, record.epoch
        return epoch

    def outcome(self, history: Sequence[EpochRecord], max_epochs: int, resumed_from_epoch: int = 0) -> TrainingOutcome:
        """The training summary of ``history`` (every epoch run, resumed ones included)."""
        epochs_run = history[-1].epoch if history else 0
        return TrainingOutcome(monitor=self.monitor, best_epoch=self.best_epoch(history), epochs_run=epochs_run,
                               stopped_early=epochs_run < max_epochs, resumed_from_epoch=resumed_from_epoch,
                               history=list(history))


class EarlyStopping:
    """The early-stopping count of one training run; its state survives a resume (``state_dict``)."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.best, self.wait, self.stopped = selection.worst, 0, False

    def update(self, value: float) -> bool:
        """Count one validation's monitored value; True when training must stop now."""
        if not math.isfinite(value) and self.selection.stop_on_non_finite:
            self.stopped = True
        elif math.isfinite(value) and self.selection.better(value, self.best, self.selection.min_delta):
            self.best, self.wait = value, 0
        else:
            self.wait += 1
            self.stopped = self.wait >= self.selection.patience
        return self.stopped

    def state_dict(self) -> dict[str, float | int | bool]:
        return {"best": float(self.best), "wait": int(self.wait), "stopped": bool(self.stopped)}

    def load_state_dict(self, state: dict[str, float | int | bool]) -> None:
        self.best, self.wait, self.stopped = float(state["best"]), int(state["wait"]), bool(state["stopped"])
