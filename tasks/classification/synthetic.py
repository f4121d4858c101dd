"""A tiny prepared classification dataset with learnable labels, for tests and benchmarks.

It has the real prepared layout (manifest, records.csv, splits, uint8 image cache) written with
the data layer's own helpers, and images in which every positive class adds a bright square at
its own place inside the centre crop, so a linear probe on a random encoder can learn something.
The label columns are those the real preparers write (``ClassificationScheme.label_columns``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

import benchmark
from benchmark.data.prepared import PREPARATION_VERSION, SPLITS, Manifest, split_file_name, write_ids
from benchmark.provenance import utc_now
from benchmark.scoring.classification import SCHEMES
from tasks.classification.protocol import dataset_probe


def _labels(dataset: str, n_images: int, rng: np.random.Generator) -> np.ndarray:
    """[n, C] 0/1 label matrix in which every class has both values (n >= 2 per split)."""
    scheme = SCHEMES.get(dataset)
    n_classes = len(scheme.classes)
    if scheme.target_format == "multiclass":
        return np.eye(n_classes, dtype=np.int64)[rng.permutation(np.arange(n_images) % n_classes)]
    labels = (rng.random((n_images, n_classes)) < 0.5).astype(np.int64)
    labels[0], labels[1] = 1, 0
    return labels


def _images(labels: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    images = rng.integers(0, 60, size=(len(labels), size, size)).astype(np.uint8)
    side = max(2, size // 8)
    centre = size // 2
    for k in range(labels.shape[1]):
        top = centre - side + (k % 3) * side // 2
        left = centre - side + (k // 3) * side
        images[labels[:, k] == 1, top : top + side, left : left + side] = 200
    return images


def write_synthetic_prepared(
    root: Path, dataset: str, counts: dict[str, int], image_size: int = 64, seed: int = 0, fractions: tuple[int, ...] = (10,)
) -> Path:
    """Write ``root/<dataset>`` (a prepared dataset) with ``counts`` images per split; returns it."""
    folder = Path(root) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    probe, scheme = dataset_probe(dataset), SCHEMES.get(dataset)
    ids = {split: [f"{split}{index:04d}" for index in range(counts[split])] for split in SPLITS}
    labels = {split: _labels(dataset, counts[split], rng) for split in SPLITS}
    rows = []
    for split in SPLITS:
        values = labels[split].argmax(1)[:, None] if scheme.target_format == "multiclass" else labels[split]
        frame = pd.DataFrame(values, columns=list(probe.label_columns))
        frame.insert(0, "split", split)
        frame.insert(0, "id", ids[split])
        rows.append(frame)
    pd.concat(rows).to_csv(folder / "records.csv", index=False)
    splits = folder / "splits" / "classification"
    for split in SPLITS:
        write_ids(splits / split_file_name(split), ids[split])
    for fraction in fractions:
        subset = sorted(rng.choice(ids["train"], max(2, counts["train"] * fraction // 100), replace=False).tolist())
        write_ids(splits / split_file_name("train", fraction, 0), subset)
    all_ids = [item for split in SPLITS for item in ids[split]]
    np.save(folder / "images.npy", np.concatenate([_images(labels[split], image_size, rng) for split in SPLITS]))
    write_ids(folder / "images.ids.txt", all_ids)
    Manifest(
        dataset=dataset, preparation_version=PREPARATION_VERSION, package_version=benchmark.__version__, created=utc_now(),
        source_files=[], counts=dict(counts), image_size=image_size, image_mode="letterbox",
        partitions=["classification"], fractions={str(fraction): [0] for fraction in fractions},
        notes=[f"synthetic data (seed {seed}) for tests and benchmarks, not a real dataset"],
    ).write(folder)
    return folder
