"""The linear-probe task adapter: frozen backbone + prepared dataset → metrics and prediction files.

Two modes, recorded in every result:

* ``cached`` (default): every image is encoded once with the deterministic eval transform
  (CenterCrop) and the features are cached on disk (``features.py``); the head trains on the
  cached features (a label fraction's draw on its rows of the whole training split's, so all
  fractions and draws of a backbone and dataset share one encoder pass). Deviation from the reference: no train-time augmentation (no RandomCrop, no
  MoCo v2 colour/blur/flip for CheXpert). ``benchmarks/bench_classification.py`` measures the
  effect on the metric and the speed-up.
* ``paper``: the reference recipe: every epoch re-encodes the training images through the
  random train transform. Validation and test images go through the deterministic eval
  transform, whose features are the same every epoch, so they are read from the same cache.

The adapter never writes to the board and reports no metric: it returns a
:class:`~tasks.registry.TaskResult` whose files the runner scores with the classification
scorer (``benchmark/scoring/classification.py``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from benchmark.backbones import LoadedBackbone
from benchmark.data.prepared import SPLITS, DataError, PreparedDataset, ids_fingerprint
from benchmark.heads.features import EncodeStats
from benchmark.heads.outcome import HISTORY_FILE, write_history
from benchmark.provenance import utc_now
from benchmark.scoring.classification import (
    SCHEMES,
    ClassificationScheme,
    labels_to_matrix,
    write_predictions,
    write_targets,
)
from tasks.classification.features import cached_features, encode_batch
from tasks.classification.protocol import (
    MODES,
    PROTOCOL,
    DatasetProbe,
    Geometry,
    Mode,
    ProbeProtocol,
    dataset_probe,
    deviations,
    resolve_geometry,
    resolved_config,
    with_overrides,
)
from tasks.classification.training import (
    ACTIVATIONS,
    batches_per_epoch,
    build_head,
    shuffled_batches,
    train_head,
)
from tasks.classification.transforms import (
    apply_per_image,
    eval_transform,
    eval_transform_descriptor,
    to_encoder_input,
    train_transform,
)
from tasks.registry import TaskCell, TaskResult

PREDICTIONS_FILE = "predictions.csv"
TARGETS_FILE = "targets.csv"


@contextmanager
def seeded(seed: int, deterministic: bool) -> Iterator[None]:
    """Seed torch's CPU RNG and turn on deterministic algorithms for the block only."""
    previous = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.use_deterministic_algorithms(deterministic, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous)


def label_matrix(dataset: PreparedDataset, ids: list[str], probe: DatasetProbe, scheme: ClassificationScheme) -> np.ndarray:
    """[n, C] 0/1 labels of ``ids`` from records.csv; bad values name the column and the fix."""
    records = dataset.records
    missing = [column for column in probe.label_columns if column not in records.columns]
    if missing:
        raise DataError(f"{dataset.root}/records.csv: label column(s) {missing} missing; re-run `python -m benchmark prepare {dataset.name}`")
    absent = pd.Index(ids).difference(records.index)
    if len(absent):
        raise DataError(f"{dataset.root}/records.csv: {len(absent)} split id(s) without a record, e.g. {list(absent[:3])}")
    values = records.loc[ids, list(probe.label_columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    allowed = np.arange(len(scheme.classes)) if scheme.target_format == "multiclass" else np.array([0, 1])
    bad = ~np.isin(values, allowed)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"{dataset.root}/records.csv: id {ids[row]!r}, column {probe.label_columns[column]!r} holds "
            f"{records.loc[ids[row], probe.label_columns[column]]!r}; expected one of {allowed.tolist()}"
        )
    return labels_to_matrix(values, scheme)


def _patch_size(backbone: LoadedBackbone) -> int | None:
    arch = backbone.model.arch
    return arch.feature_map_strides[0] if arch.family == "vit" else None  # a ViT's one map is at its patch stride


def follows_the_protocol(backbone: LoadedBackbone) -> bool:
    """Whether the MGCA protocol's input rules apply: MGCA's architectures (short names, as the
    reference evaluates them) and any backbone run with ``--preprocess protocol``. The rule follows
    the architecture (``resnet50`` and ``torchvision:resnet50`` are one), never the entry's name."""
    return backbone.model.arch.source == "mgca" or backbone.preprocessing.mode == "protocol"


def _geometry(backbone: LoadedBackbone, cache_size: int) -> Geometry:
    """The probe's crop and encoder input: the reference's B20 size where the architecture has one
    and the protocol's rules apply, else the model's own input size."""
    arch, preprocessing = backbone.model.arch, backbone.preprocessing
    if arch.linear_probe_input_size and follows_the_protocol(backbone):
        return resolve_geometry(cache_size, _patch_size(backbone), arch.linear_probe_input_size,
                                why="as the reference's ResNet-50 probe (defect B20)")
    return resolve_geometry(cache_size, _patch_size(backbone), preprocessing.input_size, preprocessing.fixed_size,
                            why=f"the model's input size ({preprocessing.source})")


def encoder_input_size(backbone: LoadedBackbone, cache_size: int, head: str, overrides: Mapping[str, Any]) -> int:  # noqa: ARG001
    """The side the probe feeds ``backbone``'s encoder on images prepared at ``cache_size`` px (the task's
    ``encoder_input``: the dry run measures the encoder there); one geometry for every head and recipe."""
    return _geometry(backbone, cache_size).encoder_input_size


def run_classification(cell: TaskCell) -> TaskResult:
    """The task adapter: the linear probe of ``cell`` with the reference protocol."""
    return linear_probe(cell.backbone, cell.dataset, cell.fraction, cell.draw, cell.seed, cell.mode, cell.work_dir,
                        cell.cache_dir, protocol=with_overrides(**cell.overrides), device=cell.device)


def linear_probe(
    backbone: LoadedBackbone,
    dataset: PreparedDataset,
    fraction: int,
    draw: int,
    seed: int,
    mode: Mode,
    work_dir: Path,
    cache_dir: Path,
    protocol: ProbeProtocol = PROTOCOL,
    device: str | None = None,
) -> TaskResult:
    """Linear probe of ``backbone`` on ``dataset`` (training subset ``fraction``% / ``draw``).

    Writes ``predictions.csv``, ``targets.csv`` (formats: ``benchmark/scoring/classification.py``),
    ``history.json`` and ``head.pt`` into ``work_dir``; ``protocol`` lets tests and benchmarks
    shrink the recipe.
    """
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
    started_at, started = utc_now(), time.perf_counter()
    probe, scheme = dataset_probe(dataset.name), SCHEMES.get(dataset.name)
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    backbone.model.to(run_device).eval()
    work_dir, cache_dir = Path(work_dir), Path(cache_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    ids = {split: dataset.split_ids(split, fraction if split == "train" else 100, draw if split == "train" else 0, protocol.partition)
           for split in SPLITS}
    fingerprints = {split: ids_fingerprint(ids[split]) for split in SPLITS}
    targets = {split: torch.from_numpy(label_matrix(dataset, ids[split], probe, scheme)) for split in SPLITS}
    geometry = _geometry(backbone, dataset.manifest.image_size)
    evaluate = eval_transform(backbone.preprocessing, geometry)
    descriptor = eval_transform_descriptor(backbone.preprocessing, geometry)
    stats = EncodeStats()
    cache_hits: dict[str, bool] = {}

    def eval_batch(images: torch.Tensor) -> torch.Tensor:
        return to_encoder_input(evaluate(images), geometry)

    def features_of(split: str) -> torch.Tensor:
        # A label fraction's draw is a subset of the whole training split: its features are rows of the whole
        # split's, so every fraction and draw of a backbone and dataset shares one encoder pass (and one cache entry).
        split_ids = dataset.split_ids("train", 100, 0, protocol.partition) if split == "train" else ids[split]
        features, cache_hits[split] = cached_features(
            cache_dir, backbone, dataset, split_ids, descriptor, eval_batch, protocol.encode_batch_size, run_device, stats, split,
        )
        if split != "train":
            return features
        row_of = {image_id: row for row, image_id in enumerate(split_ids)}
        missing = [image_id for image_id in ids[split] if image_id not in row_of]
        if missing:
            raise DataError(f"{dataset.root}: the {fraction} % draw {draw} training IDs include {missing[0]!r}, "
                            f"not in the whole training split ({len(missing)} such IDs); re-run `python -m benchmark prepare {dataset.name}`")
        return features[torch.tensor([row_of[image_id] for image_id in ids[split]], dtype=torch.long)]

    with seeded(seed, protocol.deterministic_algorithms):
        features = {split: features_of(split) for split in ("val", "test")}
        n_train = len(ids["train"])
        if mode == "cached":
            features["train"] = features_of("train")

            def train_batches(generator: torch.Generator):
                for rows in shuffled_batches(n_train, protocol.batch_size, protocol.train_drop_last, generator):
                    yield features["train"][rows], targets["train"][rows]
        else:
            augment = train_transform(protocol, probe, geometry, backbone.preprocessing)

            def train_batch(images: torch.Tensor) -> torch.Tensor:
                return to_encoder_input(apply_per_image(augment, images), geometry)

            def train_batches(generator: torch.Generator):
                batches = shuffled_batches(n_train, protocol.batch_size, protocol.train_drop_last, generator)
                for rows in tqdm(batches, total=batches_per_epoch(n_train, protocol), desc="augment+encode", unit="batch", leave=False):
                    batch_started = time.perf_counter()
                    encoded = encode_batch(backbone, dataset.images([ids["train"][row] for row in rows.tolist()]), train_batch, run_device)
                    stats.add(time.perf_counter() - batch_started, len(rows))
                    yield encoded, targets["train"][rows]

        encode_seconds_before_training = stats.seconds
        head = build_head(features["val"].shape[1], len(scheme.classes), seed)
        generator = torch.Generator().manual_seed(seed)
        train_started = time.perf_counter()
        result = train_head(head, train_batches, features["val"], targets["val"], probe.loss, protocol, generator,
                            f"{dataset.name} {fraction}% probe ({mode})")
        train_seconds = time.perf_counter() - train_started
        with torch.no_grad():
            test_scores = ACTIVATIONS[probe.loss](result.head(features["test"])).numpy()

    test_targets = targets["test"].numpy()
    predictions_file = write_predictions(work_dir / PREDICTIONS_FILE, ids["test"], test_scores, scheme)
    targets_file = write_targets(work_dir / TARGETS_FILE, ids["test"], test_targets, scheme)
    torch.save(result.head.state_dict(), work_dir / "head.pt")
    write_history(work_dir / HISTORY_FILE, result.outcome.history)
    config = resolved_config(protocol, probe, geometry, {
        "preprocessing": backbone.preprocessing.to_dict(),
        "device": str(run_device), "n_images": {split: len(ids[split]) for split in SPLITS},
        "train_batches_per_epoch": batches_per_epoch(n_train, protocol),
        "train_augmentation": probe.train_augmentation if mode == "paper" else "none (cached features, eval transform)",
        "primary_metric": scheme.primary,
        "feature_cache_hits": cache_hits,
        "started": started_at,
    })
    return TaskResult(
        predictions_file=predictions_file,
        targets_file=targets_file,
        split_fingerprints=fingerprints,
        config=config,
        timings={
            "encode_seconds": stats.seconds,
            "encode_seconds_cached_splits": encode_seconds_before_training,
            "train_seconds": train_seconds,
            "total_seconds": time.perf_counter() - started,
            "images_encoded": stats.images,
        },
        training=result.outcome,
        notes=deviations(protocol, probe, geometry, mode, n_train),
    )
