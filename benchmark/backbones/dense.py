"""What a dense task (detection, segmentation) feeds a frozen encoder, and on which grid it reads the maps.

The detection and segmentation heads assume the reference's geometry: a single-map encoder
(ViT) gives a stride-16 grid of the task's input (ViTDet's simple feature pyramid, SETR's four
x2 stages), a multi-scale encoder its maps at their own strides. Two kinds of published model
break that assumption, and are brought onto it here, in one place shared by both tasks, their
feature caches and their paper mode:

* a fixed-size model (open_clip's ViTs: position embeddings for one size only) is fed exactly
  its input size (bilinear resize of the normalised images), as the linear probe feeds it;
* a map whose grid is not the task input's ``input_size // stride`` (patch 8, 14 or 32 ViTs such
  as RAD-DINO or CheXzero's ViT-B/32, or the maps of a fixed-size model at another input size)
  is resampled bilinearly onto it.

Where neither applies (MGCA's ViT-B/16 and ResNet-50, every dynamic-size model with patch 16)
both steps are the identity: the reference's numbers do not move.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from benchmark.backbones.architectures import Architecture
from benchmark.backbones.preprocessing import Preprocessing

# The stride of a single-map encoder's grid on the task input (ViTDet, SETR).
SINGLE_MAP_STRIDE = 16


def encoder_side(preprocessing: Preprocessing, input_size: int) -> int:
    """The side the encoder sees of a task input of ``input_size`` px: the model's own when it takes no other."""
    return preprocessing.input_size if preprocessing.fixed_size else input_size


def fit_input(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """``images`` (normalised, square) at :func:`encoder_side` (resized, bilinear, where that differs)."""
    size = encoder_side(preprocessing, images.shape[-1])
    if size == images.shape[-1]:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def task_strides(arch: Architecture) -> tuple[int, ...]:
    """Strides, on the task input, at which a dense head reads ``arch``'s feature maps."""
    strides = arch.feature_map_strides
    return (SINGLE_MAP_STRIDE,) if len(strides) == 1 else strides


def on_task_grid(maps: Sequence[torch.Tensor], strides: Sequence[int], input_size: int) -> list[torch.Tensor]:
    """Each map resampled (bilinear) to ``input_size // stride`` cells a side, where it is not already."""
    aligned = []
    for level, stride in zip(maps, strides, strict=True):
        side = input_size // stride
        if level.shape[-2:] != (side, side):
            level = F.interpolate(level, size=(side, side), mode="bilinear", align_corners=False)
        aligned.append(level)
    return aligned


def grid_notes(arch: Architecture, preprocessing: Preprocessing, input_size: int) -> list[str]:
    """What :func:`fit_input` and :func:`on_task_grid` do for this encoder at ``input_size``, in words (run records)."""
    notes = []
    encoder_size = encoder_side(preprocessing, input_size)
    if encoder_size != input_size:
        notes.append(f"{arch.name} takes only {encoder_size} px: the encoder sees the {input_size} px input resized "
                     f"to {encoder_size} px")
    native = [encoder_size // stride for stride in arch.feature_map_strides]
    wanted = [input_size // stride for stride in task_strides(arch)]
    if native != wanted:
        notes.append(f"encoder maps of {'/'.join(map(str, native))} cells a side resampled (bilinear) to "
                     f"{'/'.join(map(str, wanted))}, strides {'/'.join(map(str, task_strides(arch)))} of the "
                     f"{input_size} px input")
    return notes
