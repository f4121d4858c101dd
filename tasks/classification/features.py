"""What the linear probe encodes: global features of the frozen encoder, and their cache entry.

Features of a split are computed once per (encoder, prepared dataset, split IDs, deterministic
eval transform) and kept in the content-keyed feature store (``benchmark/heads/features.py``):
one level of float32 ``[n, D]`` vectors, rows in split-ID order, loaded into memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone
from benchmark.data.prepared import PreparedDataset
from benchmark.heads.features import EncodeStats, feature_key, load_or_encode
from tasks.classification.transforms import to_three_channels


@torch.no_grad()
def encode_batch(
    backbone: LoadedBackbone, images: np.ndarray, prepare_batch: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Global features [b, D] of uint8 [b, S, S] images through ``prepare_batch`` and the frozen encoder.

    ``no_grad`` rather than ``inference_mode``: the features feed the head's autograd graph.
    """
    batch = prepare_batch(to_three_channels(images))
    return backbone.model.global_features(batch.to(device)).float().cpu()


def cached_features(
    cache_dir: Path,
    backbone: LoadedBackbone,
    dataset: PreparedDataset,
    ids: Sequence[str],
    transform_descriptor: dict,
    prepare_batch: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
    stats: EncodeStats,
    split: str,
) -> tuple[torch.Tensor, bool]:
    """Features ``[n, D]`` of ``ids`` from the store, or encoded and stored; (features, was it a hit)."""
    key = feature_key(backbone, dataset, ids, inputs=transform_descriptor, features="global", dtype="float32")
    backbone.model.eval()

    def encode(rows: slice) -> list[torch.Tensor]:
        return [encode_batch(backbone, dataset.images(list(ids[rows])), prepare_batch, device)]

    stored = load_or_encode(cache_dir, key, encode, batch_size, memory_map=False, stats=stats, progress=f"encoding {split}")
    return torch.from_numpy(stored.levels[0]), stored.hit
