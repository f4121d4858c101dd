"""Image transforms of the linear probe, on cached uint8 grayscale squares.

The reference reads an image, letterboxes it to 256 (the prepared cache already holds that),
turns it into a three-channel PIL image and applies a torchvision transform. Here the same
steps run on tensors: the gray channel is repeated three times, then

* eval: CenterCrop, then the backbone's preprocessing: scale to [0, 1], normalise with the
  backbone's own mean, std and intensity range, keep its channel count;
* train: RandomCrop, then for CheXpert the MoCo v2 colour/blur/flip augmentation, then the same
  preprocessing;

and where the backbone's input size differs from the crop (ResNet-50's 299 in the reference
probe, defect B20; a model's own input size, see ``protocol.resolve_geometry``) the crop is
resized bilinearly with ``align_corners=True`` just before the encoder, as the reference's
encoder does. Gray images stay gray through every step, so a 1-channel backbone gets the one
channel they hold.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from benchmark.backbones import Preprocessing
from benchmark.backbones.preprocessing import normalise
from tasks.classification.protocol import DatasetProbe, Geometry, ProbeProtocol


def to_three_channels(images: np.ndarray) -> torch.Tensor:
    """uint8 [n, S, S] → uint8 [n, 3, S, S] (the reference's PIL ``convert("RGB")``)."""
    return torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1).expand(-1, 3, -1, -1)


def _finish(preprocessing: Preprocessing) -> list[v2.Transform]:
    return [v2.Lambda(partial(normalise, preprocessing=preprocessing))]


def eval_transform(preprocessing: Preprocessing, geometry: Geometry) -> v2.Transform:
    """Deterministic: CenterCrop + the backbone's preprocessing; works on a whole [n, 3, S, S] batch."""
    return v2.Compose([v2.CenterCrop(geometry.crop_size), *_finish(preprocessing)])


def eval_transform_descriptor(preprocessing: Preprocessing, geometry: Geometry) -> dict[str, object]:
    """What identifies the eval transform's output, for feature-cache keys."""
    return {
        "name": "center_crop", "cache_size": geometry.cache_size, "crop": geometry.crop_size,
        "encoder_input": geometry.encoder_input_size, "upsample": "bilinear_align_corners",
        "preprocessing": preprocessing.pixels(),
    }


def train_transform(protocol: ProbeProtocol, probe: DatasetProbe, geometry: Geometry, preprocessing: Preprocessing) -> v2.Transform:
    """Random: applied to one [3, S, S] image at a time, drawing from torch's global RNG."""
    steps: list[v2.Transform] = [v2.RandomCrop(geometry.crop_size)]
    if probe.train_augmentation == "moco2":
        moco = protocol.moco2
        steps += [
            v2.RandomApply([v2.ColorJitter(*moco.color_jitter)], p=moco.color_jitter_p),
            v2.RandomGrayscale(p=moco.grayscale_p),
            v2.RandomApply([v2.GaussianBlur(moco.blur_kernel, sigma=moco.blur_sigma)], p=moco.blur_p),
            v2.RandomHorizontalFlip(p=moco.hflip_p),
        ]
    return v2.Compose([*steps, *_finish(preprocessing)])


def apply_per_image(transform: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """A random transform drawn independently for every image of a batch."""
    return torch.stack([transform(image) for image in images])


def to_encoder_input(batch: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    """Resize the crop to the encoder input size where the backbone asks for it (B20, the model's own size)."""
    if geometry.encoder_input_size == geometry.crop_size:
        return batch
    size = (geometry.encoder_input_size, geometry.encoder_input_size)
    return F.interpolate(batch, size=size, mode="bilinear", align_corners=True)
