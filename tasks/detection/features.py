"""The frozen encoder's feature maps of a split, computed once and kept in the content-keyed cache.

The detection protocol has no augmentation, so every epoch feeds the head the same maps; the
``cached`` mode computes them once per (encoder tensors and key prefix, prepared dataset, split
IDs, input geometry and normalisation, storage precision) and trains the head on them. Entries
live beside the classification features in the cell's ``cache_dir``::

    <key>.maps<level>.npy    [n, C_l, H_l, W_l] float16 (or float32), rows in split-ID order
    <key>.json               sidecar: the description the key hashes, shapes, bytes per image

Arrays are written through memory maps under temporary names and renamed, the sidecar last, so an
interrupted write leaves no entry; reading memory-maps them (a full-size ResNet-50 cache does
not fit in memory: 1.4 MB per image at 224 px in float16). Keys and the sidecar check are those
of the classification cache (``tasks/classification/features.py``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.data.prepared import PreparedDataset, ids_fingerprint
from benchmark.hashing import file_sha256
from benchmark.provenance import utc_now
from tasks.classification.features import EncodeStats, FeatureCacheError, cache_key, index_batches
from tasks.detection.data import resize_images
from tasks.detection.model import encoder_maps
from tasks.detection.protocol import DetectionProtocol, InputGeometry

CACHE_FORMAT = 1


def maps_description(backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str], geometry: InputGeometry,
                     protocol: DetectionProtocol) -> dict:
    """Everything the cached maps depend on; its hash is the cache key."""
    return {
        "format": CACHE_FORMAT,
        "weights_sha256": backbone.weights_sha256,
        "weights_prefix": backbone.load_report.prefix if backbone.load_report is not None else None,
        "arch": backbone.spec.arch,
        "feature": "maps",
        "dataset": dataset.name,
        "dataset_manifest_sha256": file_sha256(dataset.root / "manifest.json"),
        "ids_sha256": ids_fingerprint(list(ids)),
        "n_images": len(ids),
        "transform": {"cache_size": geometry.cache_size, "input_size": geometry.input_size, "resize": "bilinear_uint8",
                      "preprocessing": backbone.preprocessing.pixels()},
        "dtype": protocol.cache_dtype,
    }


def _paths(cache_dir: Path, key: str, n_levels: int) -> list[Path]:
    return [cache_dir / f"{key}.maps{level}.npy" for level in range(n_levels)]


def load_maps(cache_dir: Path, description: dict) -> list[np.ndarray] | None:
    """Memory-mapped levels stored under ``description``'s key, or None when there is no complete entry."""
    key = cache_key(description)
    sidecar = cache_dir / f"{key}.json"
    if not sidecar.is_file():
        return None
    stored = json.loads(sidecar.read_text())
    if stored.get("description") != description:
        raise FeatureCacheError(f"{sidecar}: describes other maps than its key {key}; delete {cache_dir}/{key}.*")
    levels = []
    for path, shape in zip(_paths(cache_dir, key, len(stored["shapes"])), stored["shapes"]):
        if not path.is_file():
            return None
        array = np.load(path, mmap_mode="r")
        if list(array.shape) != shape or array.dtype != np.dtype(description["dtype"]):
            raise FeatureCacheError(f"{path}: holds {array.shape} {array.dtype}, its sidecar says {shape} "
                                    f"{description['dtype']}; delete {cache_dir}/{key}.*")
        levels.append(array)
    return levels


def encode_maps(cache_dir: Path, description: dict, backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str],
                geometry: InputGeometry, protocol: DetectionProtocol, device: torch.device, stats: EncodeStats,
                progress: bool, split: str) -> list[np.ndarray]:
    """Encode ``ids`` batch by batch into memory-mapped arrays, then publish them (sidecar last)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = cache_key(description)
    dtype = np.dtype(protocol.cache_dtype)
    started = time.perf_counter()
    partial: list[Path] = []
    levels: list[np.ndarray] = []
    try:
        batches = list(index_batches(len(ids), protocol.encode_batch_size))
        for rows in tqdm(batches, desc=f"encoding {split} maps", unit="batch", leave=False, disable=not progress):
            images = resize_images(dataset.images(list(ids[rows])), geometry.input_size).to(device)
            maps = [level.cpu().numpy() for level in encoder_maps(backbone, normalise(images, backbone.preprocessing))]
            if not levels:
                for path, level in zip(_paths(cache_dir, key, len(maps)), maps):
                    partial.append(path.with_name(f".{path.name}.{os.getpid()}.partial"))
                    levels.append(np.lib.format.open_memmap(partial[-1], mode="w+", dtype=dtype, shape=(len(ids), *level.shape[1:])))
            for array, level in zip(levels, maps):
                stored = level.astype(dtype)
                if not np.isfinite(stored).all():
                    raise FeatureCacheError(f"encoder maps of {split} overflow {dtype}; set cache_dtype='float32'")
                array[rows] = stored
        shapes = [list(array.shape) for array in levels]
        for array, temporary, path in zip(levels, partial, _paths(cache_dir, key, len(levels))):
            array.flush()
            os.replace(temporary, path)
        seconds = time.perf_counter() - started
        stats.add(seconds, len(ids))
        sidecar = {"key": key, "description": description, "shapes": shapes, "created": utc_now(), "encode_seconds": round(seconds, 3),
                   "bytes_per_image": int(sum(np.prod(shape[1:]) for shape in shapes) * dtype.itemsize)}
        temporary_sidecar = cache_dir / f".{key}.json.{os.getpid()}.partial"
        temporary_sidecar.write_text(json.dumps(sidecar, indent=2) + "\n")
        os.replace(temporary_sidecar, cache_dir / f"{key}.json")
    finally:
        for temporary in partial:
            if temporary.exists():
                temporary.unlink()
    return [np.load(path, mmap_mode="r") for path in _paths(cache_dir, key, len(levels))]


def cached_maps(cache_dir: Path, backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str], geometry: InputGeometry,
                protocol: DetectionProtocol, device: torch.device, stats: EncodeStats, progress: bool, split: str) -> tuple[list[np.ndarray], bool]:
    """The maps of ``ids`` from the cache, or encoded and stored; (levels, was it a hit)."""
    description = maps_description(backbone, dataset, ids, geometry, protocol)
    hit = load_maps(cache_dir, description)
    if hit is not None:
        return hit, True
    return encode_maps(cache_dir, description, backbone, dataset, ids, geometry, protocol, device, stats, progress, split), False


def bytes_per_image(levels: Sequence[np.ndarray]) -> int:
    """Disk bytes of one image's cached maps."""
    return int(sum(level[0].nbytes for level in levels))
