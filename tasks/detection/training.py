"""Training the detector with mmengine's Runner: AdamW, validation map every epoch, early stopping,
best-epoch selection, checkpoints in the cell's work folder, resume, several processes.

- Validation: :class:`ValidationMap` scores the validation split with the headline metric
  (``map`` of ``benchmark/scoring/detection.py``: every image, every detection) after each epoch.
- Selection, early stopping, history, resume and checkpoints: the shared hooks of
  ``benchmark/heads/hooks.py`` on :func:`selection` (the strictly highest validation map is tested;
  training stops after ``patience`` epochs without one, Lightning's ``EarlyStopping(mode="max",
  min_delta=0)`` of the reference). Checkpoints hold the head only (the encoder is not a submodule).
- Several processes (``torchrun``): DistributedDataParallel over the per-process shares of the
  global batch, BatchNorm statistics of the global batch (``distributed.py``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel, MMDistributedDataParallel
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from benchmark.heads.hooks import best_checkpoint, last_checkpoint, train, training_hooks
from benchmark.heads.outcome import TrainingOutcome
from benchmark.heads.stopping import Selection
from benchmark.scoring.detection import score
from tasks.detection.data import Split
from tasks.detection.distributed import global_batchnorm, world_size
from tasks.detection.protocol import DetectionProtocol, Schedule


def load_head_weights(detector: BaseModel, path: Path) -> None:
    """The detector's weights from one of its checkpoints (strict: every key)."""
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


def _wrap(detector: BaseModel, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel over processes (BatchNorm on the global batch); the detector as it is otherwise."""
    if world_size() == 1:
        return detector
    detector = global_batchnorm(detector).to(device)
    device_ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return MMDistributedDataParallel(module=detector, device_ids=device_ids, broadcast_buffers=False)


def selection(protocol: DetectionProtocol) -> Selection:
    """The highest validation map is tested; training stops after ``early_stopping_patience`` epochs
    without a strictly higher one (a non-finite map counts as one of them)."""
    return Selection(monitor="map", rule="greater", patience=protocol.early_stopping_patience)


def train_detector(detector: BaseModel, train_loader: DataLoader, val_loader: DataLoader, val_split: Split,
                   protocol: DetectionProtocol, schedule: Schedule, work_dir: Path, seed: int, device: torch.device,
                   description: str, extra_hooks: Sequence[Hook] = (), clip: bool = True) -> TrainingOutcome:
    """Train ``detector`` (already on ``device``) with mmengine's Runner, then load the tested epoch's
    weights into it (the last epoch's when no epoch had a finite validation map); see the module docstring."""
    work_dir = Path(work_dir)
    chosen = selection(protocol)
    best_checkpoint_hook, hooks = training_hooks(chosen, description, loss_over_processes=False)
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
            checkpoint=best_checkpoint_hook,
            sampler_seed=dict(type="DistSamplerSeedHook"),
        ),
        custom_hooks=[*hooks, *extra_hooks],
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
        outcome = train(runner, chosen)
    finally:
        torch.use_deterministic_algorithms(previous)
    load_head_weights(detector, best_checkpoint(runner) or last_checkpoint(work_dir))
    return outcome


@torch.no_grad()
def predict(detector: BaseModel, loader: DataLoader, split: Split, protocol: DetectionProtocol, clip: bool = True) -> list[dict]:
    """COCO results of every image of ``split`` in original pixels (score >= min, at most max per image)."""
    detector.eval()
    detections = []
    for batch in loader:
        detections += detections_of(split, detector.test_step(batch), protocol, clip)
    return detections
