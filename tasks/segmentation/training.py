"""Training a segmentation decoder with mmengine: validation, selection, early stopping, resume.

mmengine's ``Runner`` drives the epochs with the reference's rules (``configs/base.py``):
validation every epoch through :class:`LossAndDiceValLoop` (the training loss, on every
validation image, and the per-image Dice of ``benchmark.scoring.segmentation``); the config's
``selection`` (the lowest validation loss is tested and stops training) through the shared hooks
of ``benchmark/heads/hooks.py``: best checkpoint, early stopping, ``history.json``, resume, and
checkpoints that torch's ``weights_only`` unpickler reads. They hold the decoder only
(``models.FrozenEncoder``); encoder weights never pass through mmengine.

Several processes (``torchrun``, ``launcher="pytorch"``): the model is wrapped in
``MMDistributedDataParallel`` here (mmengine's own wrapping passes CUDA device IDs, which
fails for CPU processes), BatchNorm layers become ``SyncBatchNorm`` on CUDA (it does not run on
CPU), and the loss's soft Dice is summed over processes (``losses.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmengine import dist
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import BaseMetric
from mmengine.model import MMDistributedDataParallel, is_model_wrapper
from mmengine.registry import LOOPS, METRICS
from mmengine.runner import Runner, ValLoop, autocast
from torch import nn
from torch.utils.data import DataLoader, Dataset

from benchmark.heads.hooks import best_checkpoint, train, training_hooks
from benchmark.heads.outcome import TrainingOutcome
from benchmark.heads.stopping import Selection
from benchmark.scoring.segmentation import image_counts, quantize


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


# ------------------------------------------------------------------------------ training

def distribute(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``, wrapped for data-parallel training when several processes run."""
    model = model.to(device)
    if not dist.is_distributed():
        return model
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return MMDistributedDataParallel(module=model, device_ids=[device.index] if device.type == "cuda" else None,
                                     broadcast_buffers=False, find_unused_parameters=False)


def selection(cfg: Config) -> Selection:
    """The config's ``selection``: the lowest validation loss is tested and stops training (``configs/base.py``)."""
    return Selection(**cfg.selection)


def build_runner(cfg: Config, model: nn.Module, train_set: Dataset, val_set: Dataset, work_dir: Path,
                 seed: int, experiment_name: str, description: str, drop_last: bool) -> Runner:
    """An mmengine runner for ``cfg`` on built model and datasets, with the shared hooks on the
    config's :func:`selection` before the config's own.

    The runner gets the config's sections, not the config: it would otherwise re-format the whole
    config with yapf for every checkpoint (half a second each). The resolved config is written
    once to ``config.py`` in the work folder and goes into the run record.
    """
    if dist.is_main_process():
        cfg.dump(str(Path(work_dir) / "config.py"))
    best_checkpoint_hook, hooks = training_hooks(selection(cfg), description, loss_over_processes=True)
    return Runner(
        model=model, work_dir=str(work_dir), experiment_name=experiment_name,
        train_dataloader={**cfg.train_dataloader.to_dict(), "dataset": train_set, "drop_last": drop_last,
                          "sampler": {**cfg.train_dataloader.sampler.to_dict(), "seed": seed}},  # not a random draw
        val_dataloader={**cfg.val_dataloader.to_dict(), "dataset": val_set},
        val_evaluator=cfg.val_evaluator, train_cfg=cfg.train_cfg, val_cfg=cfg.val_cfg, optim_wrapper=cfg.optim_wrapper,
        default_hooks={**cfg.default_hooks.to_dict(), "checkpoint": best_checkpoint_hook},
        custom_hooks=[*hooks, *cfg.custom_hooks], log_processor=cfg.log_processor,
        log_level=cfg.log_level, env_cfg=cfg.env_cfg, default_scope=cfg.default_scope,
        launcher="pytorch" if dist.is_distributed() else "none",
        randomness=dict(seed=seed, deterministic=False), resume=True,
    )


def train_decoder(runner: Runner, cfg: Config) -> TrainingOutcome:
    """Train (or resume) to the end, then load the checkpoint of the lowest validation loss."""
    outcome = train(runner, selection(cfg))
    best = best_checkpoint(runner)
    if best is None:
        raise RuntimeError(f"{runner.work_dir}: training ended without a validated checkpoint (no finite validation loss)")
    runner.load_checkpoint(str(best), map_location="cpu")
    return outcome


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
