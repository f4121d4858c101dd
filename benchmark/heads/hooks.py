"""One set of mmengine hooks for every head trained with mmengine's ``Runner`` (detection, segmentation).

:func:`training_hooks` gives them, :func:`train` runs the runner with them and returns the
:class:`~benchmark.heads.outcome.TrainingOutcome`:

- the best epoch's checkpoint: mmengine's ``CheckpointHook(save_best=...)`` on the task's
  :class:`~benchmark.heads.stopping.Selection` (the first best epoch kept, ``best_*.pth``);
- :class:`StrictEarlyStoppingHook`: the reference's early stopping (``stopping.py``);
- :class:`EpochHistoryHook`: one :class:`~benchmark.heads.outcome.EpochRecord` per epoch, in
  ``history.json`` and one log line;
- :class:`ResumePointHook`: ``epoch_<n>.pth`` and ``last_checkpoint`` written once the epoch's
  validation, selection, early stopping and history are done, so a cell resumed with
  ``Runner(resume=True)`` continues after its last finished epoch exactly as if never stopped (a
  cell killed during a validation repeats that epoch); a finished cell does not train again;
- :class:`PlainCheckpointHook`: checkpoints of tensors and plain Python only, which torch's
  ``weights_only`` unpickler (torch >= 2.6's default, which mmengine 0.10.7 relies on) reads with
  no allow-list.

A work folder written before this layer (``history.json`` of another format) is started afresh:
its checkpoints keep the early-stopping count elsewhere, so resuming from them would not be exact.
Imports mmengine: only the processes that train a head import this module.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import HistoryBuffer
from mmengine.runner import Runner

from benchmark.heads.outcome import HISTORY_FILE, HISTORY_FORMAT, EpochRecord, TrainingOutcome, read_history, write_history
from benchmark.heads.stopping import EarlyStopping, Selection

LAST_CHECKPOINT = "last_checkpoint"  # mmengine's pointer to the checkpoint a resumed run loads
VALIDATION_PREFIX = "val/"  # mmengine's prefix of the validation metrics (the evaluators' default_prefix)


# ------------------------------------------------------------------------------ checkpoints

def plain(value: Any, where: str) -> Any:
    """``value`` as tensors and plain Python only (what ``torch.load(weights_only=True)`` reads)."""
    if isinstance(value, dict):
        return {key: plain(item, f"{where}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(item, f"{where}[{index}]") for index, item in enumerate(value))
    if isinstance(value, (np.generic, np.ndarray)):
        return value.tolist()
    if value is None or isinstance(value, (str, int, float, bool, torch.Tensor)):
        return value
    raise TypeError(f"checkpoint entry {where} is a {type(value).__name__}; only tensors and plain Python are saved")


class PlainCheckpointHook(Hook):
    """Keeps checkpoints loadable by torch's ``weights_only`` unpickler.

    mmengine saves its message hub as pickled ``HistoryBuffer`` objects holding numpy arrays (and
    bound methods, pickled through ``builtins.getattr``). Saved here as plain lists and rebuilt on
    load, so a checkpoint holds tensors and plain Python only.
    """

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        hub = checkpoint["message_hub"]
        hub["log_scalars"] = {key: {"log_history": buffer.data[0].tolist(), "count_history": buffer.data[1].tolist(),
                                    "max_length": buffer.max_length} for key, buffer in hub["log_scalars"].items()}
        checkpoint["message_hub"] = plain(hub, "message_hub")
        checkpoint["meta"] = plain(checkpoint["meta"], "meta")

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        scalars = checkpoint.get("message_hub", {}).get("log_scalars", {})
        for key, state in scalars.items():
            if isinstance(state, dict):
                scalars[key] = HistoryBuffer(state["log_history"], state["count_history"], state["max_length"])


def best_checkpoint(runner: Runner) -> Path | None:
    """The checkpoint of the best epoch; None when no epoch had a finite monitored value."""
    path = runner.message_hub.get_info("best_ckpt")
    return Path(path) if path else None


def last_checkpoint(work_dir: Path) -> Path | None:
    pointer = Path(work_dir) / LAST_CHECKPOINT
    return Path(pointer.read_text().strip()) if pointer.is_file() else None


def resumed_epoch(work_dir: Path) -> int:
    """The epoch a resumed run continues after (0 for a fresh one): ``last_checkpoint``'s ``epoch_<n>.pth``."""
    path = last_checkpoint(work_dir)
    return int(path.stem.split("_")[-1]) if path is not None and path.stem.startswith("epoch_") else 0


# ------------------------------------------------------------------------------ hooks

def validation_values(metrics: dict[str, float] | None) -> dict[str, float]:
    """mmengine's validation metrics by their names without the prefix (``val/map`` -> ``map``)."""
    return {key.removeprefix(VALIDATION_PREFIX): float(value) for key, value in (metrics or {}).items()}


class StrictEarlyStoppingHook(Hook):
    """:class:`~benchmark.heads.stopping.EarlyStopping` on each validation; its count is saved in
    every checkpoint, so a resumed run keeps counting and a stopped one does not train again."""

    priority = "LOW"  # before ResumePointHook, which saves the count

    def __init__(self, selection: Selection) -> None:
        self.stopping = EarlyStopping(selection)

    def before_train(self, runner: Runner) -> None:
        if self.stopping.stopped:  # a finished cell, resumed: nothing left to train
            runner.train_loop.stop_training = True

    def after_val_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        monitor = self.stopping.selection.monitor
        values = validation_values(metrics)
        if monitor not in values:
            raise KeyError(f"early stopping monitors {monitor!r}, which the validation did not give: {sorted(values)}")
        if self.stopping.update(values[monitor]):
            runner.train_loop.stop_training = True

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["early_stopping"] = self.stopping.state_dict()

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        self.stopping.load_state_dict(checkpoint["early_stopping"])  # every checkpoint of this layer holds it


class EpochHistoryHook(Hook):
    """One :class:`EpochRecord` per epoch, written to ``history.json`` after the epoch's validation
    (before its resume point) and printed as one line; a resumed run keeps the epochs its checkpoint
    has seen. ``loss_over_processes``: the training loss is the mean over every process's steps
    (segmentation: each process's loss is a mean over its images) or this process's own
    (detection: mmdet's losses sum over images, so neither mean is the global batch's loss)."""

    priority = "LOW"

    def __init__(self, selection: Selection, description: str, loss_over_processes: bool) -> None:
        self.selection, self.description, self.loss_over_processes = selection, description, loss_over_processes
        self.epochs: list[EpochRecord] = []
        self._losses: list[float] = []
        self._started = self._train_seconds = 0.0

    def before_train(self, runner: Runner) -> None:
        path = Path(runner.work_dir) / HISTORY_FILE
        if path.is_file():  # resumed: the epochs up to the checkpoint's
            self.epochs = [record for record in read_history(path) if record.epoch <= runner.epoch]

    def before_train_epoch(self, runner: Runner) -> None:
        self._losses, self._started = [], time.perf_counter()

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None, outputs: dict | None = None) -> None:
        self._losses.append(outputs["loss"].item() if outputs and "loss" in outputs else math.nan)

    def after_train_epoch(self, runner: Runner) -> None:
        self._train_seconds = time.perf_counter() - self._started

    def after_val_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        record = EpochRecord(epoch=runner.epoch, iterations=len(self._losses), train_loss=self._train_loss(),
                             validation=validation_values(metrics), train_seconds=self._train_seconds,
                             val_seconds=time.perf_counter() - self._started - self._train_seconds)
        self.epochs = [*(item for item in self.epochs if item.epoch < record.epoch), record]
        if dist.is_main_process():
            write_history(Path(runner.work_dir) / HISTORY_FILE, self.epochs)
            print(self._line(record, runner.max_epochs), flush=True)

    def _train_loss(self) -> float:
        if not self.loss_over_processes:
            return float(np.mean(self._losses)) if self._losses else math.nan
        totals = torch.tensor([sum(self._losses), float(len(self._losses))], dtype=torch.float64)
        dist.all_reduce(totals)  # a no-op in one process
        return float(totals[0] / totals[1]) if totals[1] else math.nan

    def _line(self, record: EpochRecord, max_epochs: int) -> str:
        values = ", ".join(f"val {name} {value:.4f}" for name, value in record.validation.items())
        best = self.selection.best_epoch(self.epochs)
        chosen = f"best {self.selection.monitor} at epoch {best}" if best is not None else f"no finite {self.selection.monitor} yet"
        return (f"{self.description}: epoch {record.epoch}/{max_epochs}: train loss {record.train_loss:.4f}, {values} "
                f"({chosen}; {record.train_seconds:.1f} s training, {record.val_seconds:.1f} s validation)")


class ResumePointHook(Hook):
    """Saves the resume checkpoint after each validation, with everything the validation changed.

    mmengine's ``CheckpointHook`` saves the epoch's checkpoint before validation, so a cell resumed
    from it would forget that validation's best-checkpoint record and early-stopping count (and may
    point at a best checkpoint since deleted). Here ``CheckpointHook`` keeps only the best
    checkpoint, and this hook, run last, writes ``epoch_<n>.pth`` (the previous one removed) and
    ``last_checkpoint``.
    """

    priority = "LOWEST"

    def after_val_epoch(self, runner: Runner, metrics: dict | None = None) -> None:
        work_dir = Path(runner.work_dir)
        name = f"epoch_{runner.epoch}.pth"
        runner.save_checkpoint(str(work_dir), name, save_param_scheduler=False, meta={"epoch": runner.epoch, "iter": runner.iter})
        if dist.is_main_process():
            (work_dir / LAST_CHECKPOINT).write_text(str(work_dir / name))
            for old in work_dir.glob("epoch_*.pth"):
                if old.name != name:
                    old.unlink()


# ------------------------------------------------------------------------------ training

def training_hooks(selection: Selection, description: str, loss_over_processes: bool) -> tuple[CheckpointHook, list[Hook]]:
    """The runner's ``default_hooks["checkpoint"]`` (the best epoch's checkpoint) and the hooks that
    go first in its ``custom_hooks``."""
    checkpoint = CheckpointHook(interval=-1, by_epoch=True, save_last=False, save_best=VALIDATION_PREFIX + selection.monitor,
                                rule=selection.rule, save_param_scheduler=False)
    return checkpoint, [PlainCheckpointHook(), StrictEarlyStoppingHook(selection),
                        EpochHistoryHook(selection, description, loss_over_processes), ResumePointHook()]


def restart_if_stale(work_dir: Path) -> bool:
    """Remove the resume state of a work folder whose ``history.json`` is not of :data:`HISTORY_FORMAT`
    (written before this layer, or missing beside a checkpoint), so that its cell trains afresh."""
    work_dir = Path(work_dir)
    history = work_dir / HISTORY_FILE
    if not (work_dir / LAST_CHECKPOINT).is_file() and not history.is_file():
        return False
    try:
        read_history(history)
        return False
    except (OSError, ValueError, KeyError, TypeError):
        pass
    for path in [work_dir / LAST_CHECKPOINT, history, *work_dir.glob("epoch_*.pth"), *work_dir.glob("best_*.pth")]:
        path.unlink(missing_ok=True)
    print(f"{work_dir}: no history.json of format {HISTORY_FORMAT} beside its checkpoints (written before "
          "benchmark/heads?); the cell trains from its first epoch", flush=True)
    return True


def train(runner: Runner, selection: Selection) -> TrainingOutcome:
    """Train (or resume) ``runner``, built with :func:`training_hooks`, to its end; the outcome of every epoch."""
    work_dir = Path(runner.work_dir)
    if dist.is_main_process():
        restart_if_stale(work_dir)
    dist.barrier()
    resumed_from = resumed_epoch(work_dir)
    runner.train()
    dist.barrier()  # the first process writes the checkpoints; the others read them once it is done
    [history] = [hook for hook in runner.hooks if isinstance(hook, EpochHistoryHook)]
    return selection.outcome(history.epochs, runner.max_epochs, resumed_from)
