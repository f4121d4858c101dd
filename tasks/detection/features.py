"""What the detector's ``cached`` mode encodes: the frozen encoder's multi-scale maps of a split.

The detection protocol has no augmentation, so every epoch feeds the head the same maps; the
``cached`` mode computes them once per (encoder, prepared dataset, split IDs, input geometry,
storage precision) and trains the head on them. They live in the content-keyed feature store
(``benchmark/heads/features.py``): one level per stride, ``[n, C_l, H_l, W_l]`` in the protocol's
``cache_dtype`` (float16 by default), read memory-mapped (a full-size ResNet-50 cache does not fit
in memory: 1.4 MB per image at 224 px in float16).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.data.prepared import PreparedDataset
from benchmark.heads.features import EncodeStats, FeatureKey, feature_key, load_or_encode
from tasks.detection.data import resize_images
from tasks.detection.model import encoder_maps
from tasks.detection.protocol import DetectionProtocol, InputGeometry


def maps_key(backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str], geometry: InputGeometry,
             protocol: DetectionProtocol) -> FeatureKey:
    """The store key of the maps of ``ids``: the images resized (bilinear, uint8) to the input size."""
    inputs = {"cache_size": geometry.cache_size, "input_size": geometry.input_size, "resize": "bilinear_uint8"}
    return feature_key(backbone, dataset, ids, inputs=inputs, features="maps", dtype=protocol.cache_dtype)


def cached_maps(cache_dir: Path, backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str], geometry: InputGeometry,
                protocol: DetectionProtocol, device: torch.device, stats: EncodeStats, progress: bool, split: str) -> tuple[list[np.ndarray], bool]:
    """The maps of ``ids`` from the store, or encoded and stored; (memory-mapped levels, was it a hit)."""

    def encode(rows: slice) -> list[torch.Tensor]:
        images = resize_images(dataset.images(list(ids[rows])), geometry.input_size).to(device)
        return encoder_maps(backbone, normalise(images, backbone.preprocessing))

    stored = load_or_encode(cache_dir, maps_key(backbone, dataset, ids, geometry, protocol), encode, protocol.encode_batch_size,
                            memory_map=True, stats=stats, progress=f"encoding {split} maps" if progress else None)
    return stored.levels, stored.hit
