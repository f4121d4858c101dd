"""The ``cached`` mode's store: frozen-encoder outputs of un-augmented images, computed once.

One folder per (encoder weights, prepared dataset, image IDs, input size, encoder outputs):
``<cache_dir>/segmentation-<key>/level<i>.npy`` (float16 ``[n, C_i, H_i, W_i]``, rows in ID
order, memory-mapped when read) and ``description.json`` (what the key was made of). The key
is the sha256 of that description, so outputs of another encoder, another preparation, another
ID list or another input size are never picked up. The folder is written under a temporary
name and renamed when complete: an interrupted write leaves no entry.

float16 halves the bytes; the decoder trains in float32 on the stored values.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.data.prepared import DataError, ids_fingerprint
from benchmark.hashing import file_sha256
from tasks.segmentation.data import SegmentationImages
from tasks.segmentation.models import EncoderOutputs, encoder_outputs

# 2: token grids and maps off the input's grid are resampled onto it (benchmark/backbones/dense.py);
# format-1 entries of a patch-14 ViT hold its native grid.
STORE_FORMAT = 2
STORE_DTYPE = np.float16


class FeatureStoreError(DataError):
    """A stored entry does not match the key it is stored under."""


def describe(backbone: LoadedBackbone, images: SegmentationImages, outputs: EncoderOutputs) -> dict:
    return {
        "format": STORE_FORMAT, "weights_sha256": backbone.weights_sha256, "arch": backbone.model.arch.name,
        "dataset": images.dataset.name, "manifest_sha256": file_sha256(images.dataset.root / "manifest.json"),
        "ids_sha256": ids_fingerprint(images.ids), "n_images": len(images), "input_size": images.input_size,
        "outputs": outputs, "dtype": np.dtype(STORE_DTYPE).name, "transform": "Resize (bilinear), no augmentation",
        "preprocessing": backbone.preprocessing.pixels(),
    }


def store_folder(cache_dir: Path, description: dict) -> Path:
    key = hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()[:32]
    return Path(cache_dir) / f"segmentation-{key}"


def open_levels(folder: Path, description: dict) -> list[np.ndarray]:
    stored = json.loads((folder / "description.json").read_text())
    if stored != description:
        raise FeatureStoreError(f"{folder}: description.json does not match its key; delete the folder to recompute it")
    return [np.load(folder / f"level{k}.npy", mmap_mode="r") for k in range(stored["levels"])]


@torch.no_grad()
def compute_levels(folder: Path, backbone: LoadedBackbone, images: SegmentationImages, outputs: EncoderOutputs,
                   batch_size: int, device: torch.device) -> int:
    """Write ``level<i>.npy`` of every image into ``folder``; returns the number of levels.

    Pixels get the backbone's preprocessing (:func:`~benchmark.backbones.normalise`), as the
    paper mode's frozen encoder does, so both modes feed the encoder alike.
    """
    levels: list[np.ndarray] = []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([images[index]["inputs"] for index in range(start, min(start + batch_size, len(images)))])
        maps = encoder_outputs(backbone, normalise(batch.to(device), backbone.preprocessing), outputs)
        if not levels:
            levels = [np.lib.format.open_memmap(folder / f"level{k}.npy", mode="w+", dtype=STORE_DTYPE,
                                                shape=(len(images), *level.shape[1:])) for k, level in enumerate(maps)]
        for stored, level in zip(levels, maps):
            stored[start:start + len(level)] = level.to(torch.float16).cpu().numpy()
    for stored in levels:
        stored.flush()
    return len(levels)


def cached_levels(cache_dir: Path, backbone: LoadedBackbone, images: SegmentationImages, outputs: EncoderOutputs,
                  batch_size: int, device: torch.device) -> tuple[list[np.ndarray], dict]:
    """The stored encoder outputs of ``images`` (computed now if absent) and what it cost."""
    description = describe(backbone, images, outputs)
    folder = store_folder(cache_dir, description)
    started = time.perf_counter()
    hit = (folder / "description.json").is_file()
    if not hit:
        folder.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            levels = compute_levels(scratch, backbone, images, outputs, batch_size, device)
            (scratch / "description.json").write_text(json.dumps({**description, "levels": levels}, indent=2) + "\n")
            try:
                os.replace(scratch, folder)
            except OSError:  # another process (a torchrun rank, a parallel cell) stored it first
                if not (folder / "description.json").is_file():
                    raise
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    description = {**description, "levels": json.loads((folder / "description.json").read_text())["levels"]}
    levels = open_levels(folder, description)
    stats = {"cache_hit": hit, "seconds": time.perf_counter() - started,
             "bytes_per_image": int(sum(level[0].nbytes for level in levels)) if len(images) else 0, "folder": str(folder)}
    return levels, stats
