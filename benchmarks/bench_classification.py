"""Linear probe: cached-feature mode against the reference ("paper") loop, on the same data.

For each dataset, the demo generator's official layout is prepared (``benchmark.data.demo`` →
``prepare``); a dataset without a demo writer uses the synthetic prepared folder of
``tasks/classification/synthetic.py`` instead, and the report says which source it used. Both
modes then run the full reference protocol (batch 48, up to 50 epochs, early stopping) from
a cold feature cache each, and a second cached run shows the warm-cache time.

Reported per dataset and seed: wall-clock seconds of each mode, the speed ratio cached/paper,
the primary test metric of each mode and their difference (paper − cached): the measured effect
of dropping train-time augmentation in cached mode. The bar (exit 1 when missed, for
``make perf``): the mean ratio cached/paper must stay at or below ``--max-ratio`` (0.5: the
cached mode at least twice as fast, cold cache included).

    python benchmarks/bench_classification.py [--datasets rsna covidx chexpert] [--images 160]
        [--size 64] [--seeds 0] [--backbone random_vit_tiny] [--max-ratio 0.5] [--json OUT.json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmark.backbones import build_backbone
from benchmark.data.prepared import PreparedDataset
from benchmark.provenance import collect_provenance, utc_now
from benchmark.registry import RegistryError
from benchmark.scoring import scorer
from benchmark.scoring.classification import SCHEMES
from tasks.classification.adapter import linear_probe
from tasks.classification.protocol import PROTOCOL, ProbeProtocol
from tasks.classification.synthetic import write_synthetic_prepared

from smoke import add_smoke_option, exit_status, parse_args


def prepare_dataset(name: str, folder: Path, images: int, size: int, seed: int) -> tuple[PreparedDataset, str]:
    """The demo data of ``name`` prepared, or a synthetic prepared folder when it has no demo writer."""
    from benchmark.data import datasets  # noqa: F401 - registers the preparers
    from benchmark.data.demo import generate
    from benchmark.data.registry import DATASETS, PrepareOptions

    try:
        generate(folder / "raw", [name], images=images, size=size, seed=seed)
    except RegistryError as error:
        logging.warning("%s: no demo writer (%s); using the synthetic prepared dataset", name, error)
        counts = {"train": images * 7 // 10, "val": images * 15 // 100, "test": images - images * 7 // 10 - images * 15 // 100}
        return PreparedDataset(write_synthetic_prepared(folder / "data", name, counts, image_size=size, seed=seed)), "synthetic"
    DATASETS.get(name).prepare(PrepareOptions(raw=folder / "raw" / name, out=folder / "data" / name, image_size=size,
                                              verify_shipped=False))
    return PreparedDataset(folder / "data" / name), "demo"


def timed_run(backbone, dataset: PreparedDataset, seed: int, mode: str, work: Path, cache: Path,
              protocol: ProbeProtocol) -> tuple[dict, float]:
    """One probe's metrics (scored from its files, as the runner does), timings and training summary."""
    started = time.perf_counter()
    result = linear_probe(backbone, dataset, 100, 0, seed, mode, work, cache, protocol)
    seconds = time.perf_counter() - started
    scored = scorer("classification").score_files(result.predictions_file, result.targets_file, dataset.name)
    metrics = {name: metric.value for name, metric in scored.metrics.items()}
    return {"metrics": metrics, "primary_metric": scored.primary_metric, "training": result.training.to_json(),
            "timings": result.timings}, seconds


def bench_dataset(name: str, backbone_name: str, images: int, size: int, seeds: list[int], folder: Path,
                  protocol: ProbeProtocol = PROTOCOL) -> dict:
    dataset, source = prepare_dataset(name, folder, images, size, seed=0)
    rows = []
    for seed in seeds:
        backbone = build_backbone(backbone_name)
        cold = folder / f"cache-cached-{seed}"
        cached, cached_seconds = timed_run(backbone, dataset, seed, "cached", folder / "cached", cold, protocol)
        _, warm_seconds = timed_run(backbone, dataset, seed, "cached", folder / "cached-warm", cold, protocol)
        paper, paper_seconds = timed_run(backbone, dataset, seed, "paper", folder / "paper", folder / f"cache-paper-{seed}", protocol)
        metric = cached["primary_metric"]
        rows.append({
            "seed": seed,
            "cached_seconds": cached_seconds, "cached_warm_seconds": warm_seconds, "paper_seconds": paper_seconds,
            "speed_ratio_cached_over_paper": cached_seconds / paper_seconds,
            "metric": metric, "cached_metric": cached["metrics"][metric], "paper_metric": paper["metrics"][metric],
            "metric_difference_paper_minus_cached": paper["metrics"][metric] - cached["metrics"][metric],
            "cached_epochs": cached["training"]["epochs_run"], "paper_epochs": paper["training"]["epochs_run"],
            "cached_images_encoded": cached["timings"]["images_encoded"], "paper_images_encoded": paper["timings"]["images_encoded"],
        })
    differences = [row["metric_difference_paper_minus_cached"] for row in rows]
    return {
        "dataset": name, "source": source, "n_images": {split: len(dataset.split_ids(split, partition=PROTOCOL.partition))
                                                       for split in ("train", "val", "test")},
        "image_size": dataset.manifest.image_size, "runs": rows,
        "mean_speed_ratio_cached_over_paper": float(np.mean([row["speed_ratio_cached_over_paper"] for row in rows])),
        "mean_metric_difference_paper_minus_cached": float(np.mean(differences)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=SCHEMES.names(), choices=SCHEMES.names())
    parser.add_argument("--images", type=int, default=160, help="demo images per dataset (default 160)")
    parser.add_argument("--size", type=int, default=64, help="cache size of the prepared images (default 64 → crop 48 for a ViT)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--backbone", default="random_vit_tiny")
    parser.add_argument("--json", type=Path, default=None, help="also write the report here")
    parser.add_argument("--max-ratio", type=float, default=0.5, help="bar: highest acceptable mean time ratio cached/paper")
    parser.add_argument("--max-epochs", type=int, default=PROTOCOL.max_epochs, help=f"(default {PROTOCOL.max_epochs}, the reference's)")
    add_smoke_option(parser, datasets=["rsna"], images=20, size=32, max_epochs=1)
    args = parse_args(parser)
    protocol = replace(PROTOCOL, max_epochs=args.max_epochs)
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="bench-classification-") as tmp:
        results = [bench_dataset(name, args.backbone, args.images, args.size, args.seeds, Path(tmp) / name, protocol)
                   for name in args.datasets]
    report = {"benchmark": "classification cached vs paper", "backbone": args.backbone,
              "protocol": f"reference (batch {protocol.batch_size}, <={protocol.max_epochs} epochs)",
              "results": results, "provenance": collect_provenance(started)}
    print(f"{'dataset':10} {'source':9} {'metric':9} {'cached':>8} {'paper':>8} {'diff':>8} {'cached s':>9} {'warm s':>7} {'paper s':>8} {'ratio':>7}")
    for result in results:
        for row in result["runs"]:
            print(f"{result['dataset']:10} {result['source']:9} {row['metric']:9} {row['cached_metric']:8.4f} {row['paper_metric']:8.4f} "
                  f"{row['metric_difference_paper_minus_cached']:+8.4f} {row['cached_seconds']:9.1f} {row['cached_warm_seconds']:7.1f} "
                  f"{row['paper_seconds']:8.1f} {row['speed_ratio_cached_over_paper']:7.3f}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    ratio = float(np.mean([result["mean_speed_ratio_cached_over_paper"] for result in results]))
    print(f"mean time ratio cached/paper {ratio:.3f} (bar: <= {args.max_ratio}); mean metric difference paper - cached "
          f"{np.mean([result['mean_metric_difference_paper_minus_cached'] for result in results]):+.4f}")
    missed = [f"mean time ratio cached/paper {ratio:.3f} above {args.max_ratio}"] if ratio > args.max_ratio else []
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
