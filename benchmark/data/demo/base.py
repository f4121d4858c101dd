"""What every demo writer shares: options, the writer registry, seeding, and file output.

Seeding: a dataset's choices come from ``dataset_rng(seed, name)`` and each image from
``image_rng(seed, name, key)``, so one seed gives byte-identical label files and identical
pixels, whatever order or process the images are drawn in.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.prepared import DataError
from benchmark.registry import Registry

GENERATOR_VERSION = "3"  # bump when the output for a given seed changes (2: CheXpert 5x200 candidates added; 3: and their number grows with the demo)
JPEG_QUALITY = 95


@dataclass(frozen=True)
class DemoOptions:
    out: Path  # the dataset's raw folder, DIR/<name>
    images: int  # images in the whole dataset (all official files together)
    size: int  # image side in pixels (the height; some datasets vary the width around it)
    seed: int


@dataclass(frozen=True)
class DemoWriter:
    name: str  # the dataset name in benchmark.data.registry.DATASETS
    layout: str  # what the writer produces, in one line
    write: Callable[[DemoOptions], dict[str, int]]  # returns image counts per official file
    # Fewest --images whose test splits can be scored (every class with the positives, and for AUROC the
    # negatives, its metric needs; checked by preparation.require_scorable). Measured with seed 0 by
    # tools/demo_minimums.py; None: nothing is scored on the dataset (pretraining data).
    minimum_images: int | None


DEMO_WRITERS: Registry[DemoWriter] = Registry("demo dataset")


def demo_writer(
    name: str, layout: str, minimum_images: int | None
) -> Callable[[Callable[[DemoOptions], dict[str, int]]], Callable[[DemoOptions], dict[str, int]]]:
    """Register ``write(options) -> counts`` as the demo writer of dataset ``name``."""

    def decorator(write: Callable[[DemoOptions], dict[str, int]]) -> Callable[[DemoOptions], dict[str, int]]:
        DEMO_WRITERS.add(name, DemoWriter(name, layout, write, minimum_images))
        return write

    return decorator


def _key(value: str | int) -> int:
    return value if isinstance(value, int) else zlib.crc32(value.encode())


def dataset_rng(seed: int, dataset: str) -> np.random.Generator:
    """The generator for a dataset's sampling choices (which rows, which splits)."""
    return np.random.default_rng([seed, _key(dataset)])


def image_rng(seed: int, dataset: str, key: str | int) -> np.random.Generator:
    """A fresh generator for one image (or one patient's build), independent of drawing order."""
    return np.random.default_rng([seed, _key(dataset), _key(key)])


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Write uint8 grayscale pixels as JPG or PNG, chosen by the file suffix."""
    suffix = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if suffix in (".jpg", ".jpeg") else []
    ok, data = cv2.imencode(suffix, pixels, params)
    if not ok:
        raise DataError(f"{path}: could not encode the image")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes())


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A comma-separated file with Unix line ends, cells written as given (``None`` → empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([["" if cell is None else cell for cell in row] for row in rows])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue())


def marker_text(options: DemoOptions, dataset: str) -> str:
    """The ``DEMO_DATASET`` marker: says the data are synthetic and how they were generated."""
    return (
        f"Synthetic demo data for {dataset}, written by `python -m benchmark demo-data` "
        f"(benchmark.data.demo, generator version {GENERATOR_VERSION}).\n"
        f"seed={options.seed} images={options.images} size={options.size}\n"
        "Images are synthetic. Label rows, IDs, boxes, masks and report sentences are sampled from the\n"
        "public copies of the official label files shipped with torchxrayvision. Not for evaluation.\n"
    )


def write_marker(options: DemoOptions, dataset: str) -> None:
    (options.out / DEMO_MARKER).write_text(marker_text(options, dataset))


def split_counts(total: int, fractions: Sequence[float], minimum: int = 1) -> list[int]:
    """Split ``total`` into parts by ``fractions``, each at least ``minimum``; the largest part
    takes what rounding leaves, so small parts (test sets, rare classes) never come out empty."""
    counts = [max(minimum, round(total * fraction)) for fraction in fractions]
    largest = int(np.argmax(fractions))
    counts[largest] = total - (sum(counts) - counts[largest])
    if counts[largest] < minimum:
        raise DataError(f"--images {total} is too small to fill {len(fractions)} parts of at least {minimum} images")
    return counts
