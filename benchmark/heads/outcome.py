"""What a head's training reports, the same for every task: one :class:`EpochRecord` per epoch and
one :class:`TrainingOutcome` (``TaskResult.training``; the run record's ``training`` object is its
:meth:`TrainingOutcome.to_json`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmark.files import write_atomically

HISTORY_FILE = "history.json"  # in a cell's work folder: {"format": HISTORY_FORMAT, "epochs": [EpochRecord, ...]}
HISTORY_FORMAT = 2  # 1: each task's own shape (a list, or {"epochs": [...]}), before benchmark/heads


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch: its training steps and loss, its validation, its time."""

    epoch: int  # 1-based
    iterations: int  # training steps of the epoch (of this process)
    train_loss: float  # mean training loss of the epoch (how each task averages: its training module)
    validation: Mapping[str, float]  # the validation's values by name: {"map": ...}, {"loss": ..., "dice": ...}
    train_seconds: float
    val_seconds: float

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.val_seconds

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EpochRecord:
        return cls(**{**data, "validation": dict(data["validation"])})


@dataclass(frozen=True)
class TrainingOutcome:
    """A head's training: which epoch was tested, how many ran, why it ended, and every epoch."""

    monitor: str  # the validation value that picked the tested epoch and stopped training ("map", "loss")
    best_epoch: int | None  # the tested epoch; None when no epoch had a finite monitored value
    epochs_run: int
    stopped_early: bool  # fewer epochs than the budget: early stopping ended the training
    resumed_from_epoch: int  # the epoch an interrupted run continued after (0: started fresh)
    history: list[EpochRecord] = field(default_factory=list)

    @property
    def best(self) -> EpochRecord | None:
        """The tested epoch's record."""
        return next((record for record in self.history if record.epoch == self.best_epoch), None)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def write_history(path: Path, epochs: Sequence[EpochRecord]) -> None:
    """``history.json`` of ``epochs``, replaced at once (a resumed run reads it)."""
    write_atomically(path, json.dumps({"format": HISTORY_FORMAT, "epochs": [asdict(item) for item in epochs]}, indent=1) + "\n")


def read_history(path: Path) -> list[EpochRecord]:
    """The epochs of a ``history.json`` of :data:`HISTORY_FORMAT`; ValueError for any other."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or data.get("format") != HISTORY_FORMAT:
        raise ValueError(f"{path}: not a training history of format {HISTORY_FORMAT}")
    return [EpochRecord.from_json(item) for item in data["epochs"]]
