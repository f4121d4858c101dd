"""Detection: seconds per epoch in cached and paper mode, CPU seconds per training iteration of each
detector, and the speed of the paired-bootstrap metric.

1. Epochs: demo RSNA (``--images`` images at ``--size`` px) is prepared, and each (backbone,
   head) pair trains ``--epochs`` epochs of the reference protocol (batch 16 at 100 %) in
   ``cached`` mode (after a first run that fills the map cache, whose encoding time is reported
   apart) and in ``paper`` mode. Reported: mean seconds per epoch (training + validation +
   checkpoints) of each mode and the ratio paper / cached. Bar: at least ``--min-speedup`` (3).
2. Iterations: one training step (forward, backward, AdamW) of each detector on a fixed batch of
   16 demo images, with the encoder's maps given (the head's cost, as in cached mode) and with
   images (the encoder runs too, as in paper mode); median of ``--steps`` steps.
3. Scoring: 1,000 bootstrap resamples of ``map`` (8 IoU thresholds) on 5,000 synthetic images
   with 1-3 boxes on 60 % of them and ~11 detections each. Bar: ``--max-score-seconds`` (60).

Exit 1 when a bar is missed.

    python benchmarks/bench_detection.py [--pairs random_resnet18:yolov3 random_vit_tiny:faster_rcnn]
        [--images 120] [--size 64] [--epochs 2] [--steps 3] [--json OUT.json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import build_backbone, normalise
from benchmark.data.prepared import PreparedDataset
from benchmark.provenance import collect_provenance, utc_now
from benchmark.scoring.bootstrap import BootstrapOptions, resample_weights
from benchmark.scoring.detection import CocoTargets, score
from tasks.detection.adapter import run_detection
from tasks.detection.data import ImageSource, MapSource, SplitDataset, load_split
from tasks.detection.model import build_detector, detector_config, encoder_maps
from tasks.detection.protocol import HEADS, PROTOCOL, resolve_geometry, with_overrides
from tasks.registry import TaskCell

from smoke import add_smoke_option, exit_status, parse_args


def prepare(folder: Path, images: int, size: int) -> PreparedDataset:
    from benchmark.data import datasets  # noqa: F401 - registers the preparers
    from benchmark.data.demo import generate
    from benchmark.data.registry import DATASETS, PrepareOptions

    generate(folder / "raw", ["rsna"], images=images, size=size, seed=0)
    DATASETS.get("rsna").prepare(PrepareOptions(raw=folder / "raw" / "rsna", out=folder / "data" / "rsna", image_size=size))
    return PreparedDataset(folder / "data" / "rsna")


def epochs(backbone_name: str, head: str, dataset: PreparedDataset, n_epochs: int, folder: Path) -> dict:
    """Seconds per epoch of both modes (cached with a warm cache; the cold run's encoding apart)."""
    backbone = build_backbone(backbone_name)
    protocol = with_overrides(max_epochs=n_epochs)
    out = {}
    for name, mode in [("cold", "cached"), ("cached", "cached"), ("paper", "paper")]:
        cell = TaskCell(backbone=backbone, dataset=dataset, partition="detection", head=head, fraction=100, draw=0, seed=0,
                        mode=mode, work_dir=folder / f"{backbone_name}-{head}-{name}", cache_dir=folder / "cache", progress=False)
        result = run_detection(cell, protocol)
        out[name] = {"seconds_per_epoch": result.timings["seconds_per_epoch"], "encode_seconds": result.timings["encode_seconds"],
                     "cache_bytes_per_image": result.config["cache"].get("bytes_per_image")}
    return {"backbone": backbone_name, "head": head, "epochs": n_epochs,
            "cached_seconds_per_epoch": out["cached"]["seconds_per_epoch"], "paper_seconds_per_epoch": out["paper"]["seconds_per_epoch"],
            "speedup_paper_over_cached": out["paper"]["seconds_per_epoch"] / out["cached"]["seconds_per_epoch"],
            "encode_seconds_cold_cache": out["cold"]["encode_seconds"], "cache_bytes_per_image": out["cold"]["cache_bytes_per_image"]}


def iterations(backbone_name: str, head: str, dataset: PreparedDataset, steps: int, batch_size: int = 16) -> dict:
    """Median CPU seconds of one training step with maps (head only) and with images (encoder + head)."""
    from mmengine.dataset import pseudo_collate
    from mmengine.optim import OptimWrapper

    backbone = build_backbone(backbone_name)
    geometry = resolve_geometry(dataset.manifest.image_size, PROTOCOL)
    ids = dataset.split_ids("train", partition="detection")[:batch_size]
    split = load_split(dataset, "train", ids, geometry.input_size)
    images = ImageSource(dataset, ids, geometry.input_size)
    maps = [encoder_maps(backbone, normalise(images[i][None], backbone.preprocessing)) for i in range(len(ids))]
    levels = [np.concatenate([m[level].numpy() for m in maps]) for level in range(len(maps[0]))]
    out = {}
    for name, source in [("head_only", MapSource(levels)), ("encoder_and_head", images)]:
        detector = build_detector(detector_config(HEADS.get(head), backbone, geometry, PROTOCOL), seed=0)
        detector.init_weights()
        if name == "encoder_and_head":
            detector.backbone.attach(backbone)
        batch = pseudo_collate([SplitDataset(split, source)[i] for i in range(len(ids))])
        wrapper = OptimWrapper(torch.optim.AdamW(detector.parameters(), lr=5e-4, weight_decay=1e-6))
        detector.train()
        detector.train_step(batch, wrapper)  # warm-up
        seconds = []
        for _ in range(steps):
            started = time.perf_counter()
            detector.train_step(batch, wrapper)
            seconds.append(time.perf_counter() - started)
        out[name] = statistics.median(seconds)
        out["parameters_millions"] = sum(p.numel() for p in detector.parameters()) / 1e6
    return {"backbone": backbone_name, "head": head, "batch_size": len(ids), "input_size": geometry.input_size,
            "threads": torch.get_num_threads(), **{f"seconds_per_iteration_{key}" if key != "parameters_millions" else key: value
                                                   for key, value in out.items()}}


def scoring(n_images: int = 5000, n_resamples: int = 1000, seed: int = 0) -> dict:
    """Seconds of ``n_resamples`` resamples of ``map`` on synthetic detections (matching done once)."""
    rng = np.random.default_rng(seed)
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "object"}]}
    detections = []
    for image in range(1, n_images + 1):
        coco["images"].append({"id": image, "file_name": f"img{image}", "width": 100, "height": 100})
        boxes = [[*rng.uniform(0, 60, 2), *rng.uniform(8, 40, 2)] for _ in range(rng.integers(1, 4) if rng.random() < 0.6 else 0)]
        for box in boxes:
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image, "category_id": 1, "bbox": box,
                                        "area": box[2] * box[3], "iscrowd": 0})
            jitter = rng.normal(0, 0.15, 4) * [box[2], box[3], box[2], box[3]]
            detections.append({"image_id": image, "category_id": 1, "score": float(rng.random()),
                               "bbox": [max(0.0, box[0] + jitter[0]), max(0.0, box[1] + jitter[1]), abs(box[2] + jitter[2]), abs(box[3] + jitter[3])]})
        detections += [{"image_id": image, "category_id": 1, "score": float(rng.random()) * 0.8,
                        "bbox": [*rng.uniform(0, 70, 2), *rng.uniform(5, 30, 2)]} for _ in range(rng.integers(0, 20))]
    targets = CocoTargets(Path("synthetic.json"), coco)
    started = time.perf_counter()
    matches = score(targets, detections, ["map"]).matches["map"]
    matched = time.perf_counter() - started
    started = time.perf_counter()
    for weights in resample_weights(n_images, BootstrapOptions(n_resamples=n_resamples, seed=seed)):
        matches.metric(weights)
    return {"n_images": n_images, "n_detections": len(detections), "iou_thresholds": len(matches.thresholds),
            "n_resamples": n_resamples, "matching_seconds": matched, "resampling_seconds": time.perf_counter() - started}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["random_resnet18:yolov3", "random_vit_tiny:faster_rcnn"],
                        help="backbone:head pairs (default: each tiny backbone with its default head)")
    parser.add_argument("--images", type=int, default=120)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="batch of the iteration timing (default 16, the protocol's)")
    parser.add_argument("--score-images", type=int, default=5000)
    parser.add_argument("--score-resamples", type=int, default=1000)
    parser.add_argument("--min-speedup", type=float, default=3.0, help="bar: paper / cached seconds per epoch")
    parser.add_argument("--max-score-seconds", type=float, default=60.0, help="bar: seconds for the resampled metric")
    parser.add_argument("--skip-epochs", action="store_true", help="only the iteration and scoring measurements")
    parser.add_argument("--json", type=Path, default=None)
    add_smoke_option(parser, pairs=["random_resnet18:yolov3"], images=20, size=32, epochs=1,
                     steps=1, batch=2, score_images=200, score_resamples=20)
    args = parse_args(parser)
    started = utc_now()
    pairs = [tuple(pair.split(":")) for pair in args.pairs]
    with tempfile.TemporaryDirectory(prefix="bench-detection-") as tmp:
        dataset = prepare(Path(tmp), args.images, args.size)
        iteration_rows = [iterations(backbone, head, dataset, args.steps, args.batch) for backbone, head in pairs]
        epoch_rows = [] if args.skip_epochs else [epochs(backbone, head, dataset, args.epochs, Path(tmp)) for backbone, head in pairs]
    scored = scoring(args.score_images, args.score_resamples)
    print(f"{'backbone':16} {'head':12} {'params M':>8} {'s/it head':>10} {'s/it enc+head':>14}")
    for row in iteration_rows:
        print(f"{row['backbone']:16} {row['head']:12} {row['parameters_millions']:8.1f} {row['seconds_per_iteration_head_only']:10.3f} "
              f"{row['seconds_per_iteration_encoder_and_head']:14.3f}")
    print(f"\n{'backbone':16} {'head':12} {'cached s/ep':>11} {'paper s/ep':>11} {'speedup':>8} {'encode s':>9} {'cache B/img':>11}")
    for row in epoch_rows:
        print(f"{row['backbone']:16} {row['head']:12} {row['cached_seconds_per_epoch']:11.2f} {row['paper_seconds_per_epoch']:11.2f} "
              f"{row['speedup_paper_over_cached']:8.2f} {row['encode_seconds_cold_cache']:9.2f} {row['cache_bytes_per_image']:11}")
    print(f"\nscoring: {scored['n_resamples']} resamples x {scored['n_images']} images ({scored['n_detections']} detections, "
          f"{scored['iou_thresholds']} IoU thresholds): matching {scored['matching_seconds']:.1f} s, resampling {scored['resampling_seconds']:.1f} s")
    report = {"benchmark": "detection", "iterations": iteration_rows, "epochs": epoch_rows, "scoring": scored,
              "provenance": collect_provenance(started)}
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    missed = [f"{row['backbone']}+{row['head']}: cached only {row['speedup_paper_over_cached']:.2f}x faster per epoch (bar {args.min_speedup}x)"
              for row in epoch_rows if row["speedup_paper_over_cached"] < args.min_speedup]
    if scored["resampling_seconds"] > args.max_score_seconds:
        missed.append(f"scoring took {scored['resampling_seconds']:.1f} s (bar {args.max_score_seconds} s)")
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
