"""Writing the uint8 image cache of a prepared dataset, on every core, with a progress bar.

Decoding (DICOM or JPG) happens once, at preparation. Images that fail to decode are either
an error naming the file or, with ``on_error="exclude"``, a counted exclusion reported in the
manifest: nothing is dropped silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from tqdm import tqdm

from benchmark.data.imaging import RESIZERS, ResizeMode
from benchmark.data.prepared import DataError, write_ids

OnError = Literal["raise", "exclude"]


@dataclass
class CacheResult:
    ids: list[str]  # IDs written, in cache order
    sizes: dict[str, tuple[int, int]]  # original (width, height) per ID
    excluded: list[dict[str, Any]]  # {"file", "id", "reason"}; preparation adds "label_file" and "row"


def _load_one(job: tuple[str, str], decode: Callable[[str], np.ndarray], size: int, mode: ResizeMode):
    image_id, path = job
    try:
        pixels = decode(path)
    except DataError as error:
        return image_id, None, None, str(error)
    height, width = pixels.shape[:2]
    try:
        resized = RESIZERS[mode](pixels, size)
    except cv2.error as error:  # e.g. a 1-pixel-high image whose short side would shrink to 0
        return image_id, None, None, f"{path}: a {width}x{height} image cannot be resized to {size} ({mode}): {error.err}"
    return image_id, resized, (width, height), None


def write_image_cache(
    folder: Path,
    jobs: list[tuple[str, str]],
    decode: Callable[[str], np.ndarray],
    size: int,
    mode: ResizeMode,
    on_error: OnError = "raise",
    workers: int | None = None,
    description: str = "decoding",
) -> CacheResult:
    """Decode ``(id, path)`` jobs with ``decode`` (a picklable, module-level function) into
    ``folder/images.npy`` + ``folder/images.ids.txt``."""
    workers = workers or os.cpu_count() or 1
    images = np.lib.format.open_memmap(folder / "images.partial.npy", mode="w+", dtype=np.uint8, shape=(len(jobs), size, size))
    ids: list[str] = []
    sizes: dict[str, tuple[int, int]] = {}
    excluded: list[dict[str, Any]] = []
    work = partial(_load_one, decode=decode, size=size, mode=mode)
    chunk = max(1, min(64, len(jobs) // (workers * 8) or 1))
    with ProcessPoolExecutor(workers) as pool:
        results = pool.map(work, jobs, chunksize=chunk)
        for (image_id, pixels, original, error), (_, path) in tqdm(zip(results, jobs), total=len(jobs), desc=description, unit="img"):
            if error is not None:
                if on_error == "raise":
                    pool.shutdown(cancel_futures=True)
                    raise DataError(f"{error} (pass --on-error exclude to skip such images and list them in the manifest)")
                excluded.append({"file": path, "id": image_id, "reason": error})
                continue
            images[len(ids)] = pixels
            ids.append(image_id)
            sizes[image_id] = original
    images.flush()
    del images
    final = np.load(folder / "images.partial.npy", mmap_mode="r")[: len(ids)]
    np.save(folder / "images.npy", final)  # rewritten at its true length, then the partial file goes
    del final
    (folder / "images.partial.npy").unlink()
    write_ids(folder / "images.ids.txt", ids)
    return CacheResult(ids, sizes, excluded)
