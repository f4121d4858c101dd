"""Time one paired comparison at real test-set size: 5,000 synthetic test images, 1,000 resamples.

Each case writes two runs' prediction files and the shared targets file in its task's format,
then times what the board does for one comparison: read both runs into per-image statistics
(``TaskScorer.per_image``) and run the paired test. Bars (ISSUE: task contract): classification
macro AUROC (CheXpert, 5 classes, paired bootstrap) <= 5 s; binary AUROC (DeLong) is timed too;
detection mAP over 8 IoU thresholds <= 60 s when the detection scorer is installed.

    python benchmarks/bench_compare.py [--images 5000] [--resamples 1000] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.scoring import SCORERS, scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.classification import SCHEMES, write_predictions, write_targets
from benchmark.scoring.compare import delong_test, paired_bootstrap

from smoke import add_smoke_option, exit_status, parse_args

BARS = {"classification/chexpert auroc": 5.0, "classification/rsna auroc (DeLong)": 5.0, "detection map": 60.0}


def classification_files(folder: Path, dataset: str, n_images: int) -> tuple[Path, Path, Path]:
    scheme = SCHEMES.get(dataset)
    rng = np.random.default_rng(0)
    ids = [f"img{k:05d}" for k in range(n_images)]
    targets = rng.integers(0, 2, (n_images, len(scheme.classes)))
    runs = [write_predictions(folder / f"{dataset}-{name}.csv", ids, targets * skill + rng.normal(size=targets.shape), scheme)
            for name, skill in (("a", 1.0), ("b", 0.9))]
    return runs[0], runs[1], write_targets(folder / f"{dataset}-targets.csv", ids, targets, scheme)


def detection_files(folder: Path, n_images: int) -> tuple[Path, Path, Path]:
    """COCO ground truth (about half the images with one or two boxes) and two runs' detections:
    jittered copies of the boxes plus false positives, up to five per image, scores in (0, 1)."""
    rng = np.random.default_rng(0)
    images = [{"id": k + 1, "file_name": f"img{k:05d}.png", "width": 1024, "height": 1024} for k in range(n_images)]
    boxes = {image["id"]: [[*rng.uniform(0, 700, 2), *rng.uniform(60, 300, 2)] for _ in range(rng.integers(0, 3) * (rng.random() < 0.5))]
             for image in images}
    annotations = [{"id": n + 1, "image_id": image_id, "category_id": 1, "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
                   for n, (image_id, box) in enumerate((i, b) for i, bs in boxes.items() for b in bs)]
    targets = folder / "detection-targets.json"
    targets.write_text(json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}))
    runs = []
    for name, jitter in (("a", 20.0), ("b", 40.0)):
        detections = []
        for image_id, truth in boxes.items():
            for box in truth:
                detections.append({"image_id": image_id, "category_id": 1, "score": float(rng.uniform(0.3, 1)),
                                   "bbox": [*np.maximum(np.array(box[:2]) + rng.normal(0, jitter, 2), 0), *np.maximum(np.array(box[2:]) + rng.normal(0, jitter, 2), 1)]})
            for _ in range(rng.integers(0, 4)):
                detections.append({"image_id": image_id, "category_id": 1, "score": float(rng.uniform(0, 0.6)),
                                   "bbox": [*rng.uniform(0, 700, 2), *rng.uniform(60, 300, 2)]})
        path = folder / f"detection-{name}.json"
        path.write_text(json.dumps([{**d, "bbox": [float(v) for v in d["bbox"]]} for d in detections]))
        runs.append(path)
    return runs[0], runs[1], targets


def time_case(task: str, dataset: str | None, metric: str, files: tuple[Path, Path, Path], options: BootstrapOptions,
              exact: bool = False) -> tuple[float, Callable[[], object]]:
    started = time.perf_counter()
    task_scorer = scorer(task)
    run_a = task_scorer.per_image(files[0], files[2], dataset, metric)
    run_b = task_scorer.per_image(files[1], files[2], dataset, metric)
    if exact:
        result = delong_test(run_a.binary_auroc[0], run_a.binary_auroc[1], run_b.binary_auroc[1])
    else:
        result = paired_bootstrap([run_a.metric], [run_b.metric], len(run_a.ids), options)
    return time.perf_counter() - started, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--resamples", type=int, default=1000)
    add_smoke_option(parser, images=200, resamples=20)
    args = parse_args(parser)
    options = BootstrapOptions(n_resamples=args.resamples, seed=0)
    missed = []
    with tempfile.TemporaryDirectory() as folder:
        cases = {
            "classification/chexpert auroc": ("classification", "chexpert", "auroc",
                                              classification_files(Path(folder), "chexpert", args.images), False),
            "classification/rsna auroc (DeLong)": ("classification", "rsna", "auroc",
                                                   classification_files(Path(folder), "rsna", args.images), True),
        }
        scorer("classification")  # imports every scorer module
        if "detection" in SCORERS:
            cases["detection map"] = ("detection", None, "map", detection_files(Path(folder), args.images), False)
        for name, (task, dataset, metric, files, exact) in cases.items():
            seconds, result = time_case(task, dataset, metric, files, options, exact)
            verdict = "ok" if seconds <= BARS[name] else "TOO SLOW"
            if seconds > BARS[name]:
                missed.append(f"{name}: {seconds:.2f} s (bar {BARS[name]:.0f} s)")
            print(f"{name:40} {args.images} images, {args.resamples} resamples: {seconds:6.2f} s "
                  f"(bar {BARS[name]:.0f} s) {verdict}; delta {result.delta:+.4f}, p {result.p_value:.3g}")
        if "detection map" not in cases:
            print("detection map: no detection scorer installed, not timed")
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
