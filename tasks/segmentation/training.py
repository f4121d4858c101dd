"""Training a segmentation decoder with mmengine: validation, selection, early stopping, resume.

mmengine's ``Runner`` drives the epochs with the reference's rules (``configs/base.py``):
validation every epoch through :class:`LossAndDiceValLoop` (the training loss, on every
validation image, and the per-image Dice of ``benchmark.scoring.segmentation``), the checkpoint
of the lowest validation loss kept for testing (``CheckpointHook(save_best="val/loss")``),
early stopping on the same loss (:class:`ResumableEarlyStoppingHook`), one log line and one
``history.json`` entry per epoch (:class:`EpochHistoryHook`). A cell resumes from the last
checkpoint in its work folder (``Runner(resume=True)``); a cell interrupted during validation
resumes without that epoch's validation.

Checkpoints are read with torch's ``weights_only`` unpickler: mmengine 0.10.7 calls
``torch.load`` without ``weights_only``, which torch >= 2.6 reads as ``weights_only=True``, and
rather than turning that off (or allow-listing the ``builtins.getattr`` that mmengine's pickled
message hub needs), :class:`PlainCheckpointHook` writes checkpoints that hold tensors and plain
Python only. They hold the decoder only (``models.FrozenEncoder``); encoder weights never
pass through mmengine.

Several processes (``torchrun``, ``launcher="pytorch"``): the model is wrapped in
``MMDistributedDataParallel`` here (mmengine's own wrapping passes CUDA device IDs, which
fails for CPU processes), BatchNorm layers become ``SyncBatchNorm`` on CUDA (it does not run on
CPU), and the loss's soft Dice is summed over processes (``losses.py``).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine import dist
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import BaseMetric
from mmengine.hooks import EarlyStoppingHook, Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import HOOKS, LOOPS, METRICS
from mmengine.runner import Runner, ValLoop, autocast
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmark.files import write_atomically
from benchmark.scoring.segmentation import image_counts, quantize

HISTORY_FILE = "history.json"


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


@HOOKS.register_module()
class PlainCheckpointHook(Hook):
    """Keeps this task's checkpoints loadable by torch's ``weights_only`` unpickler.

    mmengine saves its message hub as pickled ``HistoryBuffer`` objects holding numpy arrays
    (and bound methods, pickled through ``builtins.getattr``). Saved here as plain lists and
    rebuilt on load, so a checkpoint holds tensors and plain Python only and ``torch.load`` reads
    it with no allow-list.
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


# ------------------------------------------------------------------------------ validation

def unwrap(model: nn.Module) -> nn.Module:
    return model.module if is_model_wrapper(model) else model


def probabilities_and_truth(logits: torch.Tensor, samples: Sequence[Any], align_corners: bool) -> tuple[np.ndarray, np.ndarray]:
    """Sigmoid probabilities ``[N, H, W]`` at the targets' size and the targets thresholded at 0.5."""
    truth = torch.stack([sample.gt_sem_seg.data for sample in samples])[:, 0]
    if logits.shape[-2:] != truth.shape[-2:]:
        logits = F.interpolate(logits, size=truth.shape[-2:], mode="bilinear", align_corners=align_corners)
    return torch.sigmoid(logits[:, 0].float()).cpu().numpy(), (truth > 0.5).cpu().numpy()


@torch.no_grad()
def forward_batch(model: nn.Module, data_batch: dict) -> tuple[torch.Tensor, dict, list]:
    """Logits of one batch through the (unwrapped) model, with its pre-processed samples."""
    data = model.data_preprocessor(data_batch, False)
    return model._forward(data["inputs"], data["data_samples"]), data, data["data_samples"]


@LOOPS.register_module()
class LossAndDiceValLoop(ValLoop):
    """Validation as the reference selects: the training loss of each validation batch, every
    image counted (B7), plus each image's Dice (one forward pass for both)."""

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: dict) -> None:
        self.runner.call_hook("before_val_iter", batch_idx=idx, data_batch=data_batch)
        model = unwrap(self.runner.model)
        with autocast(enabled=self.fp16):
            logits, _, samples = forward_batch(model, data_batch)
            losses = model.decode_head.loss_by_feat(logits, samples)
        loss = float(sum(value for name, value in losses.items() if "loss" in name))
        probs, truth = probabilities_and_truth(logits, samples, model.decode_head.align_corners)
        dice = image_counts(probs, truth).dice
        outputs = [{"index": sample.metainfo["index"], "batch_loss": loss, "dice": float(value)}
                   for sample, value in zip(samples, dice)]
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.runner.call_hook("after_val_iter", batch_idx=idx, data_batch=data_batch, outputs=outputs)


@METRICS.register_module()
class ValidationLossDice(BaseMetric):
    """``val/loss``: the mean over validation images of their batch's loss (batch losses weighted by
    batch size, as Lightning logs the reference's ``val_loss``); ``val/dice``: mean per-image Dice."""

    default_prefix = "val"

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        self.results.extend(data_samples)

    def compute_metrics(self, results: list) -> dict[str, float]:
        unique = {item["index"]: item for item in reversed(results)}  # samplers pad ranks with repeats
        return {"loss": float(np.mean([item["batch_loss"] for item in unique.values()])),
                "dice": float(np.mean([item["dice"] for item in unique.values()]))}


# ------------------------------------------------------------------------------ hooks

@HOOKS.register_module()
class ResumableEarlyStoppingHook(EarlyStoppingHook):
    """The reference's early stopping (Lightning's ``EarlyStopping``): an epoch improves only when
    strictly better than the best by more than ``min_delta``. mmengine's hook counts a tie as an
    improvement and resets the count; here a tie counts as a validation without improvement, as in
    the detection task's hook. The count survives a resume (it is saved in each checkpoint)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.stopping_threshold is not None:
            raise ValueError("ResumableEarlyStoppingHook: stopping_threshold is not part of the reference's rule")

    def _check_stop_condition(self, current_score: float) -> tuple[bool, str]:
        if self.check_finite and not math.isfinite(current_score):
            return super()._check_stop_condition(current_score)  # stops at once, as Lightning's check_finite
        margin = abs(self.min_delta)  # mmengine stores it negated for rule="less"
        better = (current_score < self.best_score - margin) if self.rule == "less" else (current_score > self.best_score + margin)
        if better:
            self.best_score, self.wait_count = current_score, 0
            return False, ""
        self.wait_count += 1
        if self.wait_count < self.patience:
            return False, ""
        return True, (f"{self.monitor} not strictly better than its best, {self.best_score:.6g}, "
                      f"in the last {self.wait_count} validations")

    def before_train(self, runner: Runner) -> None:
        if self.wait_count >= self.patience:  # resumed after it had already stopped
            runner.train_loop.stop_training = True

    def before_save_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        checkpoint["early_stopping"] = {"best_score": float(self.best_score), "wait_count": int(self.wait_count)}

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        state = checkpoint.get("early_stopping")
        if state:
            self.best_score, self.wait_count = state["best_score"], state["wait_count"]


@HOOKS.register_module()
class ResumePointHook(Hook):
    """Saves the resume checkpoint after each validation, with everything the validation changed.

    mmengine's ``CheckpointHook`` saves the epoch's checkpoint before validation, so a cell
    resumed from it forgets that validation's best-checkpoint record and early-stopping count
    (and may point at a best checkpoint it has since deleted). Here ``CheckpointHook`` keeps
    only the best checkpoint, and this hook, run last, writes ``epoch_<n>.pth`` (the previous
    one removed) and ``last_checkpoint`` once validation, selection and early stopping are done.
    """

    priority = "LOWEST"

    def after_val_epoch(self, runner: Runner, metrics: dict | None = None) -> None:
        work_dir = Path(runner.work_dir)
        name = f"epoch_{runner.epoch}.pth"
        runner.save_checkpoint(str(work_dir), name, save_param_scheduler=False, meta={"epoch": runner.epoch, "iter": runner.iter})
        if dist.is_main_process():
            (work_dir / "last_checkpoint").write_text(str(work_dir / name))
            for old in work_dir.glob("epoch_*.pth"):
                if old.name != name:
                    old.unlink()


@HOOKS.register_module()
class EpochHistoryHook(Hook):
    """One log line and one ``history.json`` entry per epoch: mean training loss (all processes),
    validation loss and Dice, seconds spent training and validating. Entries after the epoch a
    resumed cell restarts from are dropped."""

    priority = "LOW"

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.loss_sum, self.iterations, self.started, self.train_seconds = 0.0, 0, 0.0, 0.0

    def _path(self, runner: Runner) -> Path:
        return Path(runner.work_dir) / HISTORY_FILE

    def before_train(self, runner: Runner) -> None:
        path = self._path(runner)
        if path.is_file():
            self.entries = [entry for entry in json.loads(path.read_text())["epochs"] if entry["epoch"] <= runner.epoch]

    def before_train_epoch(self, runner: Runner) -> None:
        self.loss_sum, self.iterations, self.started = 0.0, 0, time.perf_counter()

    def after_train_iter(self, runner: Runner, batch_idx: int, data_batch: Any = None, outputs: dict | None = None) -> None:
        self.loss_sum += outputs["loss"].item()
        self.iterations += 1

    def after_train_epoch(self, runner: Runner) -> None:
        self.train_seconds = time.perf_counter() - self.started

    def after_val_epoch(self, runner: Runner, metrics: dict | None = None) -> None:
        totals = torch.tensor([self.loss_sum, float(self.iterations)], dtype=torch.float64)
        dist.all_reduce(totals)  # a no-op in one process
        metrics = metrics or {}
        entry = {"epoch": runner.epoch, "train_loss": float(totals[0] / totals[1]) if totals[1] else math.nan,
                 "val_loss": metrics.get("val/loss"), "val_dice": metrics.get("val/dice"), "iterations": self.iterations,
                 "train_seconds": self.train_seconds, "val_seconds": time.perf_counter() - self.started - self.train_seconds}
        self.entries = [*[item for item in self.entries if item["epoch"] < entry["epoch"]], entry]
        runner.logger.info(f"epoch {entry['epoch']}/{runner.max_epochs}: train loss {entry['train_loss']:.4f}, "
                           f"val loss {entry['val_loss']:.4f}, val Dice {entry['val_dice']:.4f} "
                           f"({entry['train_seconds']:.1f} s training, {entry['val_seconds']:.1f} s validation)")
        if dist.is_main_process():
            write_atomically(self._path(runner), json.dumps({"epochs": self.entries}, indent=2) + "\n")


# ------------------------------------------------------------------------------ training

@dataclass
class TrainingOutcome:
    best_epoch: int
    epochs_run: int
    stopped_early: bool
    history: list[dict]


def distribute(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``, wrapped for data-parallel training when several processes run."""
    model = model.to(device)
    if not dist.is_distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return MMDistributedDataParallel(module=model, device_ids=[device.index] if device.type == "cuda" else None,
                                     broadcast_buffers=False, find_unused_parameters=False)


def build_runner(cfg: Config, model: nn.Module, train_set: Dataset, val_set: Dataset, work_dir: Path,
                 seed: int, experiment_name: str, drop_last: bool) -> Runner:
    """An mmengine runner for ``cfg`` on built model and datasets.

    The runner gets the config's sections, not the config: it would otherwise re-format the whole
    config with yapf for every checkpoint (half a second each). The resolved config is written
    once to ``config.py`` in the work folder and goes into the run record.
    """
    if dist.is_main_process():
        cfg.dump(str(Path(work_dir) / "config.py"))
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=experiment_name,
        train_dataloader={**cfg.train_dataloader.to_dict(), "dataset": train_set, "drop_last": drop_last,
                          "sampler": {**cfg.train_dataloader.sampler.to_dict(), "seed": seed}},  # not a random draw
        val_dataloader={**cfg.val_dataloader.to_dict(), "dataset": val_set},
        val_evaluator=cfg.val_evaluator, train_cfg=cfg.train_cfg, val_cfg=cfg.val_cfg, optim_wrapper=cfg.optim_wrapper,
        default_hooks=cfg.default_hooks, custom_hooks=cfg.custom_hooks, log_processor=cfg.log_processor,
        log_level=cfg.log_level, env_cfg=cfg.env_cfg, default_scope=cfg.default_scope,
        launcher="pytorch" if dist.is_distributed() else "none",
        randomness=dict(seed=seed, deterministic=False), resume=True,
    )


def train(runner: Runner) -> TrainingOutcome:
    """Train (or resume) to the end, then load the checkpoint of the lowest validation loss."""
    runner.train()
    dist.barrier()  # the first process writes the checkpoints; the others read them once it is done
    best = runner.message_hub.get_info("best_ckpt")
    if best is None:
        raise RuntimeError(f"{runner.work_dir}: training ended without a validated checkpoint")
    runner.load_checkpoint(best, map_location="cpu")
    history = json.loads((Path(runner.work_dir) / HISTORY_FILE).read_text())["epochs"]
    losses = [entry["val_loss"] for entry in history]
    best_epoch = history[int(np.argmin(losses))]["epoch"]  # first minimum: CheckpointHook's "less" rule
    stopped = runner.train_loop.stop_training or len(history) < runner.max_epochs
    return TrainingOutcome(best_epoch, len(history), bool(stopped), history)


@torch.no_grad()
def predict(model: nn.Module, dataset: Dataset, batch_size: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Test-set IDs, quantised probability maps ``[n, S, S]`` and 0/1 targets at the input size."""
    model = unwrap(model).eval()
    ids, probs, truths = [], [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=pseudo_collate)
    for batch in loader:
        logits, _, samples = forward_batch(model, batch)
        batch_probs, batch_truth = probabilities_and_truth(logits, samples, model.decode_head.align_corners)
        ids += [sample.metainfo["image_id"] for sample in samples]
        probs.append(quantize(batch_probs))
        truths.append(batch_truth)
    return ids, np.concatenate(probs), np.concatenate(truths)
