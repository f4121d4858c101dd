"""Training the detector with mmengine's Runner: AdamW, validation map every epoch, early stopping,
best-epoch selection, checkpoints in the cell's work folder, resume, several processes.

- Validation: :class:`ValidationMap` scores the validation split with the headline metric
  (``map`` of ``benchmark/scoring/detection.py``: every image, every detection) after each epoch.
- Selection: mmengine's ``CheckpointHook`` (as :class:`CheckpointAfterValidation`) keeps the last
  epoch (for resuming) and the epoch of the strictly highest validation map; :class:`EarlyStopping`
  stops after ``patience`` epochs without a strictly higher one (Lightning's
  ``EarlyStopping(mode="max", min_delta=0)`` of the reference; mmengine's own hook resets on ties
  and forgets its count on resume).
- Resume: a cell whose work folder holds checkpoints continues after the last finished epoch
  (optimiser, best value, early-stopping count and history included), exactly as if it had not
  stopped; a finished cell does not train again.
- Checkpoints are mmengine's own files; torch >= 2.6 loads them with ``weights_only=True``, so
  loading allows exactly the classes mmengine writes into them (:func:`checkpoint_globals`),
  nothing that could run code. They hold the head only (the encoder is not a submodule).
- Several processes (``torchrun``): DistributedDataParallel over the per-process shares of the
  global batch, BatchNorm statistics of the global batch (``distributed.py``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pickle
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import CheckpointHook, Hook
from mmengine.model import BaseModel, MMDistributedDataParallel
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from benchmark.scoring.detection import score
from tasks.detection.data import Split
from tasks.detection.distributed import global_batchnorm, world_size
from tasks.detection.protocol import DetectionProtocol, Schedule

MONITOR = "val/map"
HISTORY_FILE = "history.json"


def _history_statistic(owner: type, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: mmengine's ``HistoryBuffer`` pickles its
    statistics methods as ``getattr(HistoryBuffer, "mean")``; nothing else may be looked up."""
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is HistoryBuffer and name in {"min", "max", "current", "mean", *HistoryBuffer._statistics_methods}:
        return getattr(owner, name)
    raise pickle.UnpicklingError(f"checkpoint asks for getattr({owner!r}, {name!r}): not an mmengine checkpoint")


def checkpoint_globals() -> list[Any]:
    """What mmengine 0.10.7 pickles into its checkpoints besides tensors (message hub history, numpy values)."""
    from mmengine.logging.history_buffer import HistoryBuffer

    return [HistoryBuffer, (_history_statistic, "builtins.getattr"), np.ndarray, np.dtype,
            np._core.multiarray._reconstruct, np._core.multiarray.scalar,
            np.dtypes.Float64DType, np.dtypes.Float32DType, np.dtypes.Int64DType, np.dtypes.Int32DType]


@contextlib.contextmanager
def mmengine_checkpoints() -> Iterator[None]:
    """``torch.load(weights_only=True)`` (torch's default, which mmengine relies on) of mmengine's
    own checkpoints inside the block: exactly :func:`checkpoint_globals` are allowed."""
    with torch.serialization.safe_globals(checkpoint_globals()):
        yield


def load_head_weights(detector: BaseModel, path: Path) -> None:
    """The detector's weights from one of its mmengine checkpoints (strict: every key)."""
    with mmengine_checkpoints():
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    detector.load_state_dict(checkpoint["state_dict"], strict=True)


class ValidationMap(BaseMetric):
    """``map`` of the validation split after each epoch (predictions mapped to original pixels)."""

    default_prefix = "val"

    def __init__(self, split: Split, protocol: DetectionProtocol, clip: bool = True) -> None:
        super().__init__()
        self.split, self.protocol, self.clip = split, protocol, clip

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        del data_batch
        # one result per image: mmengine gathers them across processes and drops sampler padding by count
        self.results.extend(detections_of(self.split, [sample], self.protocol, self.clip) for sample in data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        return {"map": score(self.split.targets, [item for image in results for item in image], ["map"]).values["map"]}


def detections_of(split: Split, outputs: Sequence[Any], protocol: DetectionProtocol, clip: bool = True) -> list[dict]:
    """COCO results in original pixels from the detector's outputs (``DetDataSample`` or their dicts),
    clipped to the image when ``clip`` (the head's ``clip_to_image``)."""
    detections = []
    for output in outputs:
        output = output.to_dict() if hasattr(output, "to_dict") else output
        found = output["pred_instances"]
        detections += split.detections(output["index"], found["bboxes"].cpu().numpy(), found["scores"].cpu().numpy(),
                                       found["labels"].cpu().numpy(), protocol.min_score, protocol.max_per_image, clip)
    return detections


class CheckpointAfterValidation(CheckpointHook):
    """mmengine's ``CheckpointHook`` with the epoch checkpoint written after the epoch's validation
    instead of before it, so that it holds the validation's outcome (best value and checkpoint,
    early-stopping count): a cell resumed from it continues as if never interrupted."""

    def after_train_epoch(self, runner: Runner) -> None:
        pass  # saved in after_val_epoch

    def after_val_epoch(self, runner: Runner, metrics: dict[str, float]) -> None:
        super().after_val_epoch(runner, metrics)  # the best checkpoint, when this epoch is the best
        self._save_checkpoint_with_step(runner, runner.epoch, dict(epoch=runner.epoch, iter=runner.iter))


class EarlyStopping(Hook):
    """Stop after ``patience`` validations without a strictly higher monitored value; the state
    lives in the message hub, which every checkpoint saves, so a resumed run keeps counting."""

    priority = "LOW"

    def __init__(self, monitor: str, patience: int) -> None:
        self.monitor, self.patience = monitor, patience

    def before_train(self, runner: Runner) -> None:
        if runner.message_hub.get_info("early_stopping_wait", 0) >= self.patience:
            runner.train_loop.stop_training = True  # a finished cell, resumed: nothing left to train

    def after_val_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        value = (metrics or {}).get(self.monitor, math.nan)
        best = runner.message_hub.get_info("early_stopping_best", -math.inf)
        wait = runner.message_hub.get_info("early_stopping_wait", 0)
        if math.isfinite(value) and value > best:
            best, wait = value, 0
        else:
            wait += 1
        runner.message_hub.update_info("early_stopping_best", best)
        runner.message_hub.update_info("early_stopping_wait", wait)
        if wait >= self.patience:
            runner.train_loop.stop_training = True


@dataclass
class EpochRecord:
    epoch: int
    train_loss: float  # mean over the epoch's iterations (of this process's batches)
    val_map: float
    seconds: float  # training and validation
    iterations: int


class History(Hook):
    """Per-epoch training loss, validation map and time, written to ``history.json`` after every
    epoch's validation, before the checkpoint (and kept across resumes); one log line per epoch."""

    priority = "LOW"

    def __init__(self, path: Path, max_epochs: int, description: str) -> None:
        self.path, self.max_epochs, self.description = path, max_epochs, description
        self.epochs: list[EpochRecord] = []
        self.iteration_losses: list[float] = []  # every iteration of this run (tests, benchmarks)

    def before_train(self, runner: Runner) -> None:
        if self.path.is_file():  # resumed: keep the epochs the checkpoint has seen
            kept = [EpochRecord(**item) for item in json.loads(self.path.read_text())]
            self.epochs = [item for item in kept if item.epoch <= runner.epoch]

    def before_train_epoch(self, runner: Runner) -> None:
        self._started, self._losses = time.perf_counter(), []

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None, outputs: dict | None = None) -> None:
        loss = outputs["loss"].item() if outputs and "loss" in outputs else math.nan
        self._losses.append(loss)
        self.iteration_losses.append(loss)

    def after_val_epoch(self, runner: Runner, metrics: dict[str, float] | None = None) -> None:
        record = EpochRecord(runner.epoch, float(np.mean(self._losses)) if self._losses else math.nan,
                             float((metrics or {}).get(MONITOR, math.nan)), time.perf_counter() - self._started, len(self._losses))
        self.epochs.append(record)
        if runner.rank == 0:
            self.path.write_text(json.dumps([item.__dict__ for item in self.epochs], indent=1) + "\n")
            best = max((item.val_map for item in self.epochs if math.isfinite(item.val_map)), default=math.nan)
            print(f"{self.description}: epoch {record.epoch}/{self.max_epochs} loss {record.train_loss:.4f} "
                  f"val map {record.val_map:.4f} (best {best:.4f}) {record.seconds:.1f} s", flush=True)


@dataclass
class TrainingOutcome:
    best_checkpoint: Path | None  # None: no epoch had a finite validation map (the last epoch is used)
    last_checkpoint: Path
    best_epoch: int | None
    epochs_run: int
    stopped_early: bool
    resumed_from_epoch: int
    history: list[EpochRecord] = field(default_factory=list)
    iteration_losses: list[float] = field(default_factory=list)


def _wrap(detector: BaseModel, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over processes (BatchNorm on the global batch); the detector as it is otherwise."""
    if world_size() == 1:
        return detector
    detector = global_batchnorm(detector).to(device)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return MMDistributedDataParallel(module=detector, device_ids=device_ids, broadcast_buffers=False)


def train_detector(detector: BaseModel, train_loader: DataLoader, val_loader: DataLoader, val_split: Split,
                   protocol: DetectionProtocol, schedule: Schedule, work_dir: Path, seed: int, device: torch.device,
                   description: str, extra_hooks: Sequence[Hook] = (), clip: bool = True) -> TrainingOutcome:
    """Train ``detector`` (already on ``device``) with mmengine's Runner; see the module docstring."""
    work_dir = Path(work_dir)
    history = History(work_dir / HISTORY_FILE, protocol.max_epochs, description)
    runner = Runner(
        model=_wrap(detector, device),
        work_dir=str(work_dir),
        experiment_name=f"detection-{os.getpid()}-{time.time_ns()}",
        train_dataloader=train_loader,
        val_dataloader=val_loader,
        val_evaluator=[ValidationMap(val_split, protocol, clip)],
        train_cfg=dict(by_epoch=True, max_epochs=protocol.max_epochs, val_interval=1),
        val_cfg=dict(),
        optim_wrapper=dict(type="OptimWrapper", optimizer=dict(
            type="AdamW", lr=schedule.lr, betas=protocol.betas, weight_decay=protocol.weight_decay)),
        default_hooks=dict(
            timer=dict(type="IterTimerHook"),
            logger=dict(type="LoggerHook", interval=10**9, log_metric_by_epoch=True),
            param_scheduler=dict(type="ParamSchedulerHook"),
            checkpoint=CheckpointAfterValidation(interval=1, by_epoch=True, max_keep_ckpts=1, save_last=False,
                                                 save_best=MONITOR, rule="greater", save_param_scheduler=False),
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[EarlyStopping(MONITOR, protocol.early_stopping_patience), history, *extra_hooks],
        launcher="pytorch" if world_size() > 1 else "none",
        env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend="nccl" if device.type == "cuda" else "gloo")),
        randomness=dict(seed=seed, deterministic=False),
        resume=True,
        log_level="WARNING",
        default_scope="mmdet",
    )
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(protocol.deterministic_algorithms, warn_only=True)
    try:
        with mmengine_checkpoints():
            resumed_from = _last_epoch(work_dir)
            runner.train()
    finally:
        torch.use_deterministic_algorithms(previous)
    epochs = history.epochs
    finite = [item for item in epochs if math.isfinite(item.val_map)]
    best = max(finite, key=lambda item: (item.val_map, -item.epoch)) if finite else None
    best_path = runner.message_hub.get_info("best_ckpt")
    return TrainingOutcome(
        best_checkpoint=Path(best_path) if best_path else None,
        last_checkpoint=work_dir / f"epoch_{runner.epoch}.pth",
        best_epoch=best.epoch if best else None,
        epochs_run=runner.epoch,
        stopped_early=runner.epoch < protocol.max_epochs,
        resumed_from_epoch=resumed_from,
        history=epochs,
        iteration_losses=history.iteration_losses,
    )


def _last_epoch(work_dir: Path) -> int:
    """The epoch a resumed run continues after (0 for a fresh one), from mmengine's ``last_checkpoint``."""
    pointer = work_dir / "last_checkpoint"
    if not pointer.is_file():
        return 0
    name = Path(pointer.read_text().strip()).stem  # epoch_<n>
    return int(name.split("_")[-1]) if name.startswith("epoch_") else 0


@torch.no_grad()
def predict(detector: BaseModel, loader: DataLoader, split: Split, protocol: DetectionProtocol, clip: bool = True) -> list[dict]:
    """COCO results of every image of ``split`` in original pixels (score >= min, at most max per image)."""
    detector.eval()
    detections = []
    for batch in loader:
        detections += detections_of(split, detector.test_step(batch), protocol, clip)
    return detections
