"""Frozen-encoder features and their on-disk cache.

Features of a split are computed once per (checkpoint content and the key prefix the encoder
was loaded from, prepared dataset, split IDs, deterministic transform) and stored as
``<cache_dir>/<key>.npy`` (float32 [n, D], rows in split-ID order) with a JSON sidecar
``<key>.json`` holding what the key was made of. The key is a sha256 of that description, which
includes the backbone's ``weights_sha256`` (a content hash of the loaded encoder tensors) and the resolved prefix
(one file can hold two encoders, e.g. MoCo's ``encoder_q.``/``encoder_k.``): features of another
encoder, another preparation of the dataset (its manifest hash), another ID list or another
transform can never be picked up. Files are written to temporary names and renamed,
the sidecar last, so an interrupted write leaves no cache entry (a ``.npy`` without sidecar is
recomputed and replaced). A sidecar whose description differs from the key's is an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmark.backbones import LoadedBackbone
from benchmark.data.prepared import DataError, PreparedDataset, ids_fingerprint
from benchmark.hashing import file_sha256
from benchmark.provenance import utc_now
from tasks.classification.transforms import to_three_channels

CACHE_FORMAT = 1


class FeatureCacheError(DataError):
    """A feature-cache entry does not match the key it is stored under."""


@dataclass
class EncodeStats:
    seconds: float = 0.0
    images: int = 0  # images passed through the encoder

    def add(self, seconds: float, images: int) -> None:
        self.seconds += seconds
        self.images += images


def index_batches(n_items: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n_items, batch_size):
        yield slice(start, min(start + batch_size, n_items))


@torch.no_grad()
def encode_batch(
    backbone: LoadedBackbone, images: np.ndarray, prepare_batch: Callable[[torch.Tensor], torch.Tensor], device: torch.device
) -> torch.Tensor:
    """Global features [b, D] of uint8 [b, S, S] images through ``prepare_batch`` and the frozen encoder.

    ``no_grad`` rather than ``inference_mode``: the features feed the head's autograd graph.
    """
    batch = prepare_batch(to_three_channels(images))
    return backbone.model.global_features(batch.to(device)).float().cpu()


def encode_images(
    backbone: LoadedBackbone,
    dataset: PreparedDataset,
    ids: list[str],
    prepare_batch: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
    stats: EncodeStats,
    description: str = "encoding",
) -> torch.Tensor:
    """Global features [n, D] of ``ids``, in order, batch by batch, with a progress bar."""
    if not ids:
        raise DataError(f"{dataset.root}: no image to encode ({description})")
    backbone.model.eval()
    started = time.perf_counter()
    chunks = [
        encode_batch(backbone, dataset.images(ids[rows]), prepare_batch, device)
        for rows in tqdm(list(index_batches(len(ids), batch_size)), desc=description, unit="batch", leave=False)
    ]
    stats.add(time.perf_counter() - started, len(ids))
    return torch.cat(chunks)


def cache_description(backbone: LoadedBackbone, dataset: PreparedDataset, ids: list[str], transform: dict) -> dict:
    """Everything the features depend on; its hash is the cache key."""
    return {
        "format": CACHE_FORMAT,
        "weights_sha256": backbone.weights_sha256,
        "weights_prefix": backbone.load_report.prefix if backbone.load_report is not None else None,
        "arch": backbone.spec.arch,
        "feature": "global",
        "dataset": dataset.name,
        "dataset_manifest_sha256": file_sha256(dataset.root / "manifest.json"),
        "ids_sha256": ids_fingerprint(ids),
        "n_images": len(ids),
        "transform": transform,
    }


def cache_key(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        write(Path(temporary))
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _write_npy(array: np.ndarray) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        with open(path, "wb") as handle:
            np.save(handle, array)

    return write


def load_cached(cache_dir: Path, description: dict) -> torch.Tensor | None:
    """Features stored under ``description``'s key, or None when there is no complete entry."""
    key = cache_key(description)
    features_path, sidecar_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if not (features_path.is_file() and sidecar_path.is_file()):
        return None
    stored = json.loads(sidecar_path.read_text())
    if stored.get("description") != description:
        raise FeatureCacheError(
            f"{sidecar_path}: describes other features than its key {key}; delete {features_path} and {sidecar_path}"
        )
    features = np.load(features_path)
    if features.shape[0] != description["n_images"] or features.dtype != np.float32:
        raise FeatureCacheError(
            f"{features_path}: holds {features.shape} {features.dtype}, expected {description['n_images']} float32 rows; "
            f"delete it and {sidecar_path}"
        )
    return torch.from_numpy(features)


def store_cached(cache_dir: Path, description: dict, features: torch.Tensor, seconds: float) -> Path:
    """Write features and sidecar atomically; returns the features' path."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(description)
    features_path = cache_dir / f"{key}.npy"
    array = features.detach().cpu().numpy().astype(np.float32, copy=False)
    _atomic_write(features_path, _write_npy(array))
    sidecar = {"key": key, "description": description, "shape": list(array.shape), "created": utc_now(),
               "encode_seconds": round(seconds, 3)}
    _atomic_write(cache_dir / f"{key}.json", lambda path: path.write_text(json.dumps(sidecar, indent=2) + "\n"))
    return features_path


def cached_features(
    cache_dir: Path,
    backbone: LoadedBackbone,
    dataset: PreparedDataset,
    ids: list[str],
    transform_descriptor: dict,
    prepare_batch: Callable[[torch.Tensor], torch.Tensor],
    batch_size: int,
    device: torch.device,
    stats: EncodeStats,
    split: str,
) -> tuple[torch.Tensor, bool]:
    """Features of ``ids`` from the cache, or encoded and stored; (features, was it a hit)."""
    description = cache_description(backbone, dataset, ids, transform_descriptor)
    hit = load_cached(cache_dir, description)
    if hit is not None:
        return hit, True
    before = stats.seconds
    features = encode_images(backbone, dataset, ids, prepare_batch, batch_size, device, stats, f"encoding {split}")
    store_cached(cache_dir, description, features, stats.seconds - before)
    return features, False
