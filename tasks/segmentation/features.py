"""What the ``cached`` mode encodes: the frozen encoder's outputs of un-augmented images, computed once.

The decoder's inputs (``stages`` or ``tokens``, :func:`~tasks.segmentation.models.encoder_outputs`)
of every image, resized to the input size without augmentation, live in the content-keyed
feature store (``benchmark/heads/features.py``): one float16 level per output ``[n, C_i, H_i, W_i]``,
rows in ID order, read memory-mapped. float16 halves the bytes; the decoder trains in float32 on
the stored values.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.heads.features import FeatureKey, feature_key, load_or_encode
from tasks.segmentation.data import SegmentationImages
from tasks.segmentation.models import EncoderOutputs, encoder_outputs

STORE_DTYPE = "float16"


def outputs_key(backbone: LoadedBackbone, images: SegmentationImages, outputs: EncoderOutputs) -> FeatureKey:
    inputs = {"input_size": images.input_size, "resize": "bilinear", "augmentation": None}
    return feature_key(backbone, images.dataset, images.ids, inputs=inputs, features=outputs, dtype=STORE_DTYPE)


def cached_levels(cache_dir: Path, backbone: LoadedBackbone, images: SegmentationImages, outputs: EncoderOutputs,
                  batch_size: int, device: torch.device) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The stored encoder outputs of ``images`` (computed now if absent) and what it cost.

    Pixels get the backbone's preprocessing (:func:`~benchmark.backbones.normalise`), as the
    paper mode's frozen encoder does, so both modes feed the encoder alike.
    """

    def encode(rows: slice) -> list[torch.Tensor]:
        batch = torch.stack([images[index]["inputs"] for index in range(rows.start, rows.stop)])
        return encoder_outputs(backbone, normalise(batch.to(device), backbone.preprocessing), outputs)

    stored = load_or_encode(cache_dir, outputs_key(backbone, images, outputs), encode, batch_size, memory_map=True)
    stats = {"cache_hit": stored.hit, "seconds": stored.seconds, "bytes_per_image": stored.bytes_per_image,
             "folder": str(stored.folder)}
    return stored.levels, stats
