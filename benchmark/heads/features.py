"""The content-keyed store of frozen-encoder features that every task's head trains on.

A frozen encoder gives the same outputs for the same images every epoch, so a task may compute
them once (classification's global vectors; detection's and segmentation's multi-scale maps) and
keep them here. An entry is keyed by everything its values depend on (:class:`FeatureKey`: the
encoder tensors, the preprocessing, the prepared dataset, the image IDs, what the task did to the
images and which encoder outputs it kept, the storage precision): outputs of another encoder,
another preparation, another ID list or another transform are never picked up.

One on-disk format for every kind of feature: a folder ``<cache_dir>/<features>-<key>/`` with
``level<i>.npy`` (``[n, ...]`` in ``dtype``, rows in ID order: global vectors are one level
``[n, D]``, maps one level per scale ``[n, C_i, H_i, W_i]``) and ``entry.json`` (the key's
description, shapes, encoding time). The folder is filled under a temporary name and renamed
whole (:func:`benchmark.files.replace_directory`), so an interrupted write leaves no entry and
two writers of one entry keep the first. Levels are written batch by batch through memory maps
and read back memory-mapped (maps; a full-size cache does not fit in memory) or loaded (vectors).
An ``entry.json`` that describes other features than its key is an error naming the folder to delete.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from benchmark.backbones import LoadedBackbone
from benchmark.data.prepared import DataError, PreparedDataset, ids_fingerprint
from benchmark.files import replace_directory
from benchmark.hashing import file_sha256
from benchmark.provenance import utc_now

# Part of every key: bump it when stored values or the layout change, and say why here.
# Before 3 each task had its own cache: classification ``<key>.npy`` and detection
# ``<key>.maps<i>.npy`` with a ``<key>.json`` sidecar (format 1), segmentation
# ``segmentation-<key>/`` folders (formats 1 and 2). 3: one store and one key for the three
# tasks; entries of the older caches are never read (delete them to reclaim the space).
FORMAT_VERSION = 3
ENTRY_FILE = "entry.json"


class FeatureCacheError(DataError):
    """A stored entry does not match the key it is stored under, or cannot hold the features."""


@dataclass
class EncodeStats:
    """Encoder time and images of a cell, summed over its cache misses (and paper-mode batches)."""

    seconds: float = 0.0
    images: int = 0

    def add(self, seconds: float, images: int) -> None:
        self.seconds += seconds
        self.images += images


def index_batches(n_items: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n_items, batch_size):
        yield slice(start, min(start + batch_size, n_items))


@dataclass(frozen=True)
class FeatureKey:
    """Everything stored features depend on; the hash of its fields names the entry."""

    weights_sha256: str  # the encoder tensors (two encoders of one file differ)
    weights_prefix: str | None  # the key prefix they were loaded from
    arch: str
    preprocessing: dict[str, Any]  # what the encoder is fed: channels, range, mean/std (Preprocessing.pixels())
    dataset: str
    dataset_manifest_sha256: str  # this preparation of the dataset
    ids_sha256: str  # the images, in row order (ids_fingerprint)
    n_images: int
    inputs: dict[str, Any]  # what the task does to the images before the encoder (size, resize, transform)
    features: str  # which encoder outputs: "global", "maps", "stages", "tokens"
    dtype: str  # storage precision
    format: int = FORMAT_VERSION

    def description(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.description(), sort_keys=True).encode()).hexdigest()[:32]


def feature_key(backbone: LoadedBackbone, dataset: PreparedDataset, ids: Sequence[str], *, inputs: dict[str, Any],
                features: str, dtype: str) -> FeatureKey:
    """The key of ``backbone``'s ``features`` of ``ids`` of ``dataset`` after the task's ``inputs`` transform."""
    return FeatureKey(
        weights_sha256=backbone.weights_sha256,
        weights_prefix=backbone.load_report.prefix if backbone.load_report is not None else None,
        arch=backbone.spec.arch,
        preprocessing=backbone.preprocessing.pixels(),
        dataset=dataset.name,
        dataset_manifest_sha256=file_sha256(dataset.root / "manifest.json"),
        ids_sha256=ids_fingerprint(list(ids)),
        n_images=len(ids),
        inputs=inputs,
        features=features,
        dtype=np.dtype(dtype).name,
    )


@dataclass(frozen=True)
class StoredFeatures:
    """An entry's levels (rows in ID order) and how this call got them."""

    levels: list[np.ndarray]
    hit: bool  # read from the store; False: encoded now
    seconds: float  # spent in this call: reading, or encoding and writing
    folder: Path

    @property
    def bytes_per_image(self) -> int:
        return bytes_per_image(self.levels)


def bytes_per_image(levels: Sequence[np.ndarray]) -> int:
    """Stored bytes of one image's features."""
    return int(sum(level[0].nbytes for level in levels)) if len(levels) and len(levels[0]) else 0


Encode = Callable[[slice], Sequence[torch.Tensor]]
"""The encoder outputs (one tensor ``[b, ...]`` per level) of the images in rows ``rows`` of the key's ID list."""


def entry_folder(cache_dir: Path, key: FeatureKey) -> Path:
    return Path(cache_dir) / f"{key.features}-{key.digest}"


def read_entry(folder: Path, key: FeatureKey, memory_map: bool) -> list[np.ndarray] | None:
    """The levels stored in ``folder`` under ``key``, or None when there is no entry."""
    if not (folder / ENTRY_FILE).is_file():
        return None
    stored = json.loads((folder / ENTRY_FILE).read_text())
    if stored.get("description") != key.description():
        raise FeatureCacheError(f"{folder / ENTRY_FILE}: describes other features than its key {key.digest}; delete {folder}")
    levels = []
    for index, shape in enumerate(stored["shapes"]):
        path = folder / f"level{index}.npy"
        array = np.load(path, mmap_mode="r" if memory_map else None)
        if list(array.shape) != shape or shape[0] != key.n_images or array.dtype != np.dtype(key.dtype):
            raise FeatureCacheError(f"{path}: holds {array.shape} {array.dtype}, its key says {shape} {key.dtype} "
                                    f"({key.n_images} images); delete {folder}")
        levels.append(array)
    return levels


@torch.no_grad()
def write_levels(folder: Path, key: FeatureKey, encode: Encode, batch_size: int, progress: str | None) -> list[list[int]]:
    """Encode the key's images batch by batch into ``folder/level<i>.npy`` (memory maps); their shapes."""
    dtype = np.dtype(key.dtype)
    levels: list[np.ndarray] = []
    batches = list(index_batches(key.n_images, batch_size))
    for rows in tqdm(batches, desc=progress, unit="batch", leave=False, disable=progress is None):
        outputs = [output.detach().cpu().numpy() for output in encode(rows)]
        if not levels:
            levels = [np.lib.format.open_memmap(folder / f"level{index}.npy", mode="w+", dtype=dtype,
                                                shape=(key.n_images, *output.shape[1:])) for index, output in enumerate(outputs)]
        for level, output in zip(levels, outputs):
            stored = output.astype(dtype, copy=False)
            if not np.isfinite(stored).all() and np.isfinite(output).all():
                raise FeatureCacheError(f"encoder outputs ({key.features}) overflow {dtype.name}; store them in float32")
            level[rows] = stored
    for level in levels:
        level.flush()
    return [list(level.shape) for level in levels]


def load_or_encode(cache_dir: Path, key: FeatureKey, encode: Encode, batch_size: int, *, memory_map: bool,
                    stats: EncodeStats | None = None, progress: str | None = None) -> StoredFeatures:
    """The features of ``key`` from the store, or encoded with ``encode``, stored, and read back.

    ``memory_map``: read the levels as memory maps (large maps) instead of into memory (vectors).
    ``stats`` adds the encoder time and images of a miss; ``progress``: a progress bar's label.
    """
    if key.n_images == 0:
        raise DataError(f"no image to encode for the {key.features} features of {key.dataset}")
    folder, started = entry_folder(cache_dir, key), time.perf_counter()
    levels = read_entry(folder, key, memory_map)
    if levels is not None:
        return StoredFeatures(levels, True, time.perf_counter() - started, folder)

    def fill(scratch: Path) -> None:
        shapes = write_levels(scratch, key, encode, batch_size, progress)
        seconds = time.perf_counter() - started
        if stats is not None:
            stats.add(seconds, key.n_images)
        entry = {"key": key.digest, "description": key.description(), "shapes": shapes, "created": utc_now(),
                 "encode_seconds": round(seconds, 3),
                 "bytes_per_image": int(sum(np.prod(shape[1:]) for shape in shapes) * np.dtype(key.dtype).itemsize)}
        (scratch / ENTRY_FILE).write_text(json.dumps(entry, indent=2) + "\n")

    replace_directory(folder, fill)  # False: a parallel writer stored the same entry first; it is read below
    levels = read_entry(folder, key, memory_map)
    if levels is None:
        raise FeatureCacheError(f"{folder}: published without {ENTRY_FILE}; delete it")
    return StoredFeatures(levels, False, time.perf_counter() - started, folder)
