"""The reference's segmentation loss: ``alpha * focal(gamma) - log(soft Dice)`` (PROTOCOL.md 8.4).

``mgca/utils/segmentation_loss.py`` (``MixedLoss(alpha=10)`` with ``FocalLoss(gamma=2)``): a
focal loss without class weighting, averaged over pixels, minus the log of one soft Dice over
the whole batch (sigmoid probabilities, smooth = 1). mmseg's losses do not express it: its
``FocalLoss`` fails on one output channel on CPU (the target keeps shape ``[P]`` against
``[P, 1]`` logits) and takes another code path on CUDA, and its ``DiceLoss`` is ``1 - Dice``
per image, not ``-log`` of a batch Dice. So the loss is one small module registered in mmseg's
``MODELS``, built from the pure functions below (tested against hand-computed values).

Several processes (``torchrun``): the soft Dice sums are added over all processes before the log
(autograd-aware ``all_reduce``), so the loss of a global batch split over processes equals the
loss of the same batch in one process; DDP's gradient average then gives the same update.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_functional
import torch.nn.functional as F
from mmseg.registry import MODELS
from torch import nn


def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float) -> torch.Tensor:
    """Mean over pixels of ``(1 - p_t)^gamma * BCE(logits, target)``; fractional targets allowed.

    ``p_t`` is the probability given to the target: ``exp(-BCE)`` for 0/1 targets; the reference
    computes the modulating factor as ``exp(gamma * logsigmoid(-logits * (2 target - 1)))``,
    which is the same ``(1 - p_t)^gamma`` written for any target in [0, 1].
    """
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    modulating = torch.exp(gamma * F.logsigmoid(-logits * (target * 2.0 - 1.0)))
    return (modulating * bce).mean()


def soft_dice_sums(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``[intersection, sum of probabilities, sum of targets]`` of a batch (the soft Dice's parts)."""
    probs = torch.sigmoid(logits).flatten()
    target = target.flatten()
    return torch.stack([(probs * target).sum(), probs.sum(), target.sum()])


def soft_dice(sums: torch.Tensor, smooth: float) -> torch.Tensor:
    """``(2 I + smooth) / (P + T + smooth)`` from :func:`soft_dice_sums`."""
    intersection, probs, target = sums
    return (2.0 * intersection + smooth) / (probs + target + smooth)


def mixed_loss(logits: torch.Tensor, target: torch.Tensor, alpha: float, gamma: float, smooth: float) -> torch.Tensor:
    """``alpha * focal - log(soft Dice)`` of one batch in one process."""
    return alpha * focal_loss(logits, target, gamma) - torch.log(soft_dice(soft_dice_sums(logits, target), smooth))


def _global_sums(sums: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist_functional.all_reduce(sums)  # autograd-aware: gradients flow back to every process
    return sums


@MODELS.register_module()
class FocalLogDiceLoss(nn.Module):
    """mmseg decode-head loss ``alpha * focal(gamma) - log(soft Dice)`` for one sigmoid channel.

    Receives the head's logits ``[N, 1, H, W]`` and the stacked ground truth ``[N, H, W]``
    (fractional masks allowed, as the reference's area-resized targets).
    """

    def __init__(self, alpha: float = 10.0, gamma: float = 2.0, smooth: float = 1.0, loss_name: str = "loss_focal_logdice") -> None:
        super().__init__()
        self.alpha, self.gamma, self.smooth = alpha, gamma, smooth
        self._loss_name = loss_name

    def forward(self, seg_logits: torch.Tensor, seg_label: torch.Tensor, weight: torch.Tensor | None = None,
                ignore_index: int | None = None, **kwargs: object) -> torch.Tensor:
        if seg_logits.shape[1] != 1:
            raise ValueError(f"{type(self).__name__} takes one sigmoid channel, got {seg_logits.shape[1]}")
        if weight is not None:
            raise ValueError(f"{type(self).__name__} has no pixel weights (no sampler is configured)")
        logits, target = seg_logits[:, 0], seg_label.to(seg_logits.dtype)
        focal = focal_loss(logits, target, self.gamma)
        return self.alpha * focal - torch.log(soft_dice(_global_sums(soft_dice_sums(logits, target)), self.smooth))

    @property
    def loss_name(self) -> str:
        return self._loss_name
