"""The segmentation task adapter: one cell of the grid → probability maps and masks of the test set.

``run_segmentation(cell)`` resolves the cell's config (``protocol.py``), builds mmseg's
``EncoderDecoder`` with the frozen encoder and the head (``models.py``), trains the decoder with
mmengine (``training.py``), predicts the test images with the checkpoint of the lowest
validation loss, and writes ``predictions.npz`` and ``targets.npz`` (formats:
``benchmark/scoring/segmentation.py``) into the cell's work folder. It reports no metric: the
runner scores the files. Predictions and targets have the input's size.

Modes:

* ``paper`` (the reference): every step augments the training images (ShiftScaleRotate) and
  passes them through the frozen encoder.
* ``cached``: the encoder's outputs of the un-augmented images are computed once and stored
  (``features.py``); the decoder trains on them, without augmentation.

Mode decision (``benchmarks/bench_segmentation.py``; 2 shared CPU cores under heavy load, so
times are rough): ``paper`` stays the default. At the reference's scale (224 px, batch 8,
random weights) the stored outputs take 4.62 MB per image for the U-Net on ResNet-50 (35 GB
for SIIM, 123 GB for RSNA, float16) and 0.30 MB for SETR on ViT-B/16 (2.3 GB, 8.0 GB); a
training step took 25.6 s (paper) vs 18.4 s (cached) for the U-Net, 26.5 s vs 13.3 s for
SETR. On demo SIIM (120 images, 64 px, 8 epochs, seeds 0-2) the U-Net was faster cached
(4.8 vs 7.7 s/epoch) but its test Dice moved by +0.020 (0.098 vs 0.078), outside the seed
spread (0.009); SETR was not faster cached (9.0 vs 8.4 s/epoch; Dice 0.413 ± 0.140 vs
0.295 ± 0.025). Neither head meets "faster and within the seed spread", and the U-Net store
does not fit a workstation disk at RSNA's size, so ``cached`` is available but not the default.

SIIM at 100 %: the reference trains on all positive images plus as many negatives, drawn with
the run's seed; the prepared dataset names that sampler in its manifest (``train_sampler``).
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from mmengine import dist
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import set_random_seed
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from torch import nn

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.backbones.dense import grid_notes
from benchmark.data.prepared import SPLITS, DataError, PreparedDataset, ids_fingerprint
from benchmark.provenance import utc_now
from benchmark.scoring.segmentation import write_predictions, write_targets
from tasks.registry import TaskCell, TaskResult
from tasks.segmentation import losses  # noqa: F401 - registers FocalLogDiceLoss in mmseg's MODELS
from tasks.segmentation.data import CachedFeatureItems, SegmentationImages
from tasks.segmentation.features import cached_levels
from tasks.segmentation.models import encoder_outputs
from tasks.segmentation.protocol import (
    MODES,
    ConfigError,
    config_options,
    deviations,
    load_config,
    resolve_geometry,
)
from tasks.segmentation.training import build_runner, distribute, predict, train_decoder

PREDICTIONS_FILE = "predictions.npz"
TARGETS_FILE = "targets.npz"
SAMPLER_PACKAGE = "benchmark.data.datasets."  # the only place a manifest's train_sampler may name


def training_ids(dataset: PreparedDataset, partition: str, fraction: int, draw: int, seed: int) -> tuple[list[str], list[str]]:
    """The training images of a cell, after the dataset's training sampler where it names one."""
    ids = dataset.split_ids("train", fraction, draw, partition)
    notes = []
    sampler = dataset.manifest.extra.get("train_sampler")
    if sampler and sampler.get("partition") == partition and fraction in sampler.get("fractions", []):
        target = sampler["function"]
        if not target.startswith(SAMPLER_PACKAGE):
            raise DataError(f"{dataset.root}/manifest.json: train_sampler {target!r} is outside {SAMPLER_PACKAGE}")
        module, _, name = target.rpartition(".")
        if "positive" not in dataset.records.columns:
            raise DataError(f"{dataset.root}/records.csv: no 'positive' column for the training sampler {target}")
        positive = dataset.records["positive"].astype(str) == "1"
        balanced = getattr(importlib.import_module(module), name)(ids, set(dataset.records.index[positive]), np.random.RandomState(seed))
        notes.append(f"training images: {len(balanced)} of {len(ids)} after {name} (all positives, as many negatives; seed {seed})")
        ids = balanced
    if not ids:
        raise DataError(f"{dataset.root}: the {partition} training split has no image at {fraction}% (draw {draw}); "
                        "prepare more images or choose a larger fraction")
    return ids, notes


def build_model(cfg: Config, backbone: LoadedBackbone, input_size: int, mode: str, device: torch.device) -> nn.Module:
    """mmseg's EncoderDecoder of ``cfg``, with the head's input widths read from the encoder.

    The resolved model section is written back into ``cfg`` (the run record shows it); only the
    loaded encoder itself is handed over outside the config.
    """
    backbone.model.to(device)
    probe = normalise(torch.zeros(1, 3, input_size, input_size, dtype=torch.uint8, device=device), backbone.preprocessing)
    with torch.no_grad():
        widths = [level.shape[1] for level in encoder_outputs(backbone, probe, cfg.encoder_outputs)]
    resolved: dict[str, Any] = {"model.decode_head.in_channels": widths if len(widths) > 1 else widths[0]}
    if mode == "cached":
        resolved["model.backbone"] = {"_delete_": True, "type": "PrecomputedFeatures"}
        resolved["model.data_preprocessor"] = {"_delete_": True, "type": "FeaturePreProcessor"}
    else:
        resolved["model.backbone.outputs"] = cfg.encoder_outputs
        resolved["model.data_preprocessor.size"] = (input_size, input_size)
    cfg.merge_from_dict(resolved)
    spec = cfg.model.to_dict()
    if mode == "paper":
        spec["backbone"]["encoder"] = backbone
    register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope("mmseg"):  # nested parts (the data pre-processor) resolve in mmseg
        return MODELS.build(spec)


def run_segmentation(cell: TaskCell) -> TaskResult:
    """The task contract's entry point (``tasks.registry``); the board's overrides become config changes."""
    return run_cell(cell, config_options(cell.overrides))


def run_cell(cell: TaskCell, overrides: Mapping[str, Any] | None = None) -> TaskResult:
    """Train and test one cell; ``overrides`` are ``key=value`` config changes (tests, benchmarks, CLI)."""
    if cell.mode not in MODES:
        raise ConfigError(f"unknown segmentation mode {cell.mode!r}; one of {MODES}")
    started_at, started = utc_now(), time.perf_counter()
    dataset, work_dir = cell.dataset, Path(cell.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(cell.device)
    if device.type == "cuda" and device.index is not None:
        torch.cuda.set_device(device)

    cfg = load_config(cell.head, dataset.name, cell.fraction, overrides)
    geometry = resolve_geometry(cfg.input_size, dataset.manifest.image_size, cell.head)
    size = geometry.input_size
    cfg.merge_from_dict({"input_size": size, "mode": cell.mode, "seed": cell.seed})
    train_ids, sampler_notes = training_ids(dataset, cell.partition, cell.fraction, cell.draw, cell.seed)
    ids = {"train": train_ids, **{split: dataset.split_ids(split, partition=cell.partition) for split in ("val", "test")}}
    batch_size = cfg.train_dataloader.batch_size
    drop_last = bool(cfg.train_dataloader.drop_last) and len(train_ids) >= batch_size

    set_random_seed(cell.seed)
    augmentation = cfg.augmentation if cell.mode == "paper" else None
    images = {split: SegmentationImages(dataset, ids[split], size, augmentation if split == "train" else None, cell.seed)
              for split in SPLITS}
    timings: dict[str, float] = {}
    feature_store: dict[str, Any] = {}
    datasets: dict[str, Any] = dict(images)
    if cell.mode == "cached":
        backbone = cell.backbone
        backbone.model.to(device)
        for split in SPLITS:
            levels, feature_store[split] = cached_levels(cell.cache_dir, backbone, images[split], cfg.encoder_outputs,
                                                         cfg.encode_batch_size, device)
            datasets[split] = CachedFeatureItems(images[split], levels)
        timings["encode_seconds"] = sum(stats["seconds"] for stats in feature_store.values())

    model = build_model(cfg, cell.backbone, size, cell.mode, device)
    name = f"segmentation-{dataset.name}-{cell.head}-{cell.fraction}pct-draw{cell.draw}-seed{cell.seed}-{cell.mode}-{uuid.uuid4().hex[:8]}"
    description = f"{dataset.name} {cell.fraction}% {cell.head} ({cell.mode})"
    runner = build_runner(cfg, distribute(model, device), datasets["train"], datasets["val"], work_dir, cell.seed, name,
                          description, drop_last)
    train_started = time.perf_counter()
    outcome = train_decoder(runner, cfg)
    timings["train_seconds"] = time.perf_counter() - train_started  # this process: validation and checkpoints included
    iterations = sum(record.iterations for record in outcome.history)
    if iterations:  # training steps only, over every epoch of the cell (resumed ones too)
        timings["seconds_per_iteration"] = sum(record.train_seconds for record in outcome.history) / iterations

    predictions_file, targets_file = work_dir / PREDICTIONS_FILE, work_dir / TARGETS_FILE
    if dist.is_main_process():
        predict_started = time.perf_counter()
        test_ids, probs, masks = predict(runner.model, datasets["test"], cfg.val_dataloader.batch_size)
        write_predictions(predictions_file, test_ids, probs)
        write_targets(targets_file, test_ids, masks)
        timings["predict_seconds"] = time.perf_counter() - predict_started
    dist.barrier()
    timings["total_seconds"] = time.perf_counter() - started

    notes = [*sampler_notes, *grid_notes(cell.backbone.model.arch, cell.backbone.preprocessing, size),
             *deviations(cfg, geometry, cell.mode, len(train_ids), batch_size)]
    config = {
        "device": str(device), "world_size": dist.get_world_size(), "geometry": asdict(geometry),
        "n_images": {split: len(ids[split]) for split in SPLITS}, "train_drop_last": drop_last,
        "mmengine_config": cfg.to_dict(), "feature_store": feature_store, "started": started_at, "finished": utc_now(),
    }
    return TaskResult(
        predictions_file=predictions_file, targets_file=targets_file,
        split_fingerprints={split: ids_fingerprint(ids[split]) for split in SPLITS},
        config=config, timings=timings, training=outcome, notes=notes,
    )
