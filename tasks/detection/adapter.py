"""The detection task adapter: frozen backbone + prepared detection dataset -> COCO prediction files.

Two modes, recorded in every result:

* ``cached``: the encoder's maps of every image are computed once and kept in the
  content-keyed cache (``features.py``); the head trains on them. The detection protocol has
  no augmentation, so this is the reference's training up to the float16 rounding of the maps.
* ``paper`` (the task's declared default, see below): every step runs the images through the
  encoder, as the reference does.

Does the cache pay? (``benchmarks/bench_costs.results.md``; random weights, 2 quiet CPU cores,
2026-12-06.) Per epoch at RSNA's size (training + validation), paper / cached is 1.94 for
``yolov3_mgca`` and 1.89 for ``yolov3`` on ResNet-50 at 224 px (0.70 vs 0.37 training steps/s at
batch 16), and 1.33 for ViT-B/16 + Faster R-CNN. Decoding the float16 maps is under 1 % of a cached
step: the YOLOv3 neck and head on the 2048/1024/512-channel maps, forward and backward, cost about
as much per image as the encoder's forward, and each validation pass runs the head in both modes.
For that the cache stores 1.40 MB per image (37.5 GB for RSNA's 26,684 images). Cached is far
from 3x faster, so ``paper`` (the reference loop) is the task's default mode; ``cached`` stays for
quick repeated runs (``--mode detection=cached``). Re-measure with
``python benchmarks/bench_costs.py --only detection``.

The adapter writes ``predictions.json`` (COCO results on the test split, original pixels) and
``targets.json`` (the test split's COCO ground truth) into the cell's work folder, plus
mmengine's checkpoints and logs and ``history.json``; the runner scores the files with the
``detection`` scorer (``benchmark/scoring/detection.py``). No metric is reported here.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from mmengine.hooks import Hook

from benchmark.backbones.dense import grid_notes
from benchmark.data.prepared import SPLITS, DataError, ids_fingerprint
from benchmark.heads.features import EncodeStats, bytes_per_image
from benchmark.scoring.detection import write_predictions, write_targets
from tasks.detection.data import ImageSource, MapSource, SplitDataset, load_split, make_loader
from tasks.detection.distributed import first_process_first, world_size
from tasks.detection.features import cached_maps
from tasks.detection.model import build_detector, detector_config
from tasks.detection.protocol import (
    HEADS,
    MODES,
    PROTOCOL,
    DetectionProtocol,
    deviations,
    protocol_record,
    resolve_geometry,
)
from tasks.detection.training import predict, train_detector
from tasks.registry import TaskCell, TaskResult

PREDICTIONS_FILE = "predictions.json"
TARGETS_FILE = "targets.json"


def run_detection(cell: TaskCell, protocol: DetectionProtocol = PROTOCOL, options: dict[str, Any] | None = None,
                  hooks: Sequence[Hook] = ()) -> TaskResult:
    """Train ``cell.head`` on the frozen ``cell.backbone`` and predict the test split (see the module
    docstring). ``options``: ``key=value`` overrides of the head's config file; ``hooks``: more
    mmengine hooks for the training run (e.g. to watch every iteration's loss)."""
    if cell.mode not in MODES:
        raise ValueError(f"unknown mode {cell.mode!r}; one of {MODES}")
    protocol = replace(protocol, **cell.overrides)  # the board's protocol changes (a demo's epoch budget)
    started = time.perf_counter()
    head = HEADS.get(cell.head)
    dataset = cell.dataset
    schedule = protocol.schedule(dataset.name, cell.fraction)
    geometry = resolve_geometry(dataset.manifest.image_size, protocol)
    device = torch.device(cell.device)
    work_dir = Path(cell.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)

    ids = {split: dataset.split_ids(split, cell.fraction if split == "train" else 100, cell.draw if split == "train" else 0,
                                    cell.partition) for split in SPLITS}
    if not ids["train"]:
        raise DataError(f"{dataset.root}: the {cell.fraction} % training subset (draw {cell.draw}) holds no image")
    splits = {name: load_split(dataset, name, ids[name], geometry.input_size) for name in SPLITS}
    if splits["val"].n_boxes == 0:
        raise DataError(f"{dataset.root}: the validation split holds no box, so no epoch can be selected by validation map")

    options = {**protocol.config_options, **(options or {})}
    cfg = detector_config(head, cell.backbone, geometry, protocol, options)
    detector = build_detector(cfg, cell.seed)
    stats = EncodeStats()
    cache: dict[str, Any] = {}
    cell.backbone.model.to(device).eval()
    if cell.mode == "paper":
        detector.backbone.attach(cell.backbone)
        sources = {name: ImageSource(dataset, ids[name], geometry.input_size) for name in SPLITS}
    else:
        sources, hits = {}, {}
        for name in SPLITS:
            with first_process_first():  # one process writes a cache entry, the others read it
                levels, hits[name] = cached_maps(Path(cell.cache_dir), cell.backbone, dataset, ids[name], geometry, protocol,
                                                 device, stats, cell.progress, name)
            sources[name] = MapSource(levels)
        cache = {"hits": hits, "bytes_per_image": bytes_per_image(sources["test"].levels), "dtype": protocol.cache_dtype}
    detector.to(device)

    processes = world_size()
    if schedule.batch_size % processes:
        raise ValueError(f"batch size {schedule.batch_size} is not divisible by {processes} processes")
    n_train = len(ids["train"])
    drop_last = protocol.train_drop_last and n_train >= schedule.batch_size
    datasets = {name: SplitDataset(splits[name], sources[name]) for name in SPLITS}
    train_loader = make_loader(datasets["train"], schedule.batch_size // processes, shuffle=True, drop_last=drop_last,
                               seed=cell.seed, num_workers=protocol.num_workers)
    val_loader = make_loader(datasets["val"], protocol.eval_batch_size, shuffle=False, drop_last=False, seed=cell.seed,
                             num_workers=protocol.num_workers)
    description = f"{dataset.name} {cell.fraction}% {head.name} ({cell.mode})"
    train_started = time.perf_counter()
    outcome = train_detector(detector, train_loader, val_loader, splits["val"], protocol, schedule, work_dir, cell.seed, device,
                             description, hooks, clip=head.clip_to_image)
    train_seconds = time.perf_counter() - train_started

    warnings = []
    if outcome.best_epoch is None:
        warnings.append("no epoch reached a finite validation map; the last epoch's head was tested")
    detector.to(device)
    predict_started = time.perf_counter()
    predictions_file, targets_file = work_dir / PREDICTIONS_FILE, work_dir / TARGETS_FILE
    if not dist.is_initialized() or dist.get_rank() == 0:
        test_loader = make_loader(datasets["test"], protocol.eval_batch_size, shuffle=False, drop_last=False, seed=cell.seed,
                                  num_workers=protocol.num_workers, shard=False)
        write_predictions(predictions_file, predict(detector, test_loader, splits["test"], protocol, head.clip_to_image))
        write_targets(targets_file, splits["test"].coco)
    if dist.is_initialized():
        dist.barrier()
    predict_seconds = time.perf_counter() - predict_started

    config = {
        **protocol_record(protocol, schedule, geometry),
        "head_config": cfg.model.to_dict(), "config_options": options,  # the protocol's, then the caller's
        "device": str(device), "processes": processes,
        "n_images": {name: len(ids[name]) for name in SPLITS}, "n_boxes": {name: splits[name].n_boxes for name in SPLITS},
        "train_batches_per_epoch": len(train_loader), "cache": cache,
    }
    epoch_seconds = [record.seconds for record in outcome.history]
    return TaskResult(
        predictions_file=predictions_file,
        targets_file=targets_file,
        split_fingerprints={name: ids_fingerprint(ids[name]) for name in SPLITS},
        config=config,
        timings={"encode_seconds": stats.seconds, "train_seconds": train_seconds, "predict_seconds": predict_seconds,
                 "seconds_per_epoch": sum(epoch_seconds) / len(epoch_seconds) if epoch_seconds else 0.0,
                 "total_seconds": time.perf_counter() - started, "images_encoded": float(stats.images)},
        training=outcome,
        notes=[*grid_notes(cell.backbone.model.arch, cell.backbone.preprocessing, geometry.input_size),
               *deviations(protocol, geometry, head, cell.mode, n_train, schedule.batch_size)],
        warnings=warnings,
    )

