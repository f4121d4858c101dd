"""Segmentation: does the ``cached`` mode pay? Bytes, seconds and Dice of both modes.

Three measurements, printed and (``--json``) saved:

1. **Bytes per image** of what the cached mode stores (float16): the five ResNet stages a U-Net
   reads and the token grid SETR reads, at the reference's scale (ResNet-50 and ViT-B/16 at
   224 px) and for the demo backbones, with the store each dataset would need (all splits;
   SIIM's training set balanced as the reference trains it).
2. **Seconds per training step at the reference's scale** (batch 8, 224 px, random weights):
   ``paper`` = images through the frozen encoder, then the decoder's forward/backward (the
   augmentation's CPU time not counted);
   ``cached`` = the decoder's forward/backward on stored outputs (read from memory here, so the
   disk read a real store adds is not counted).
3. **Seconds per epoch and test Dice on demo data** for both modes and both heads
   (``random_resnet18`` + U-Net, ``random_vit_tiny`` + SETR), over ``--seeds``: the same
   cells the runner would run, with ``--epochs`` epochs each, scored from their files.

The decision rule (the task's default mode must follow it, else exit 1): ``cached`` is the
default only if it is faster per epoch (its one-time encoding included) for both heads *and*
its mean Dice lies within the seed-to-seed spread of ``paper`` (the larger of the two modes'
standard deviations over seeds) for both heads.

    python benchmarks/bench_segmentation.py [--images 120] [--size 64] [--epochs 8]
        [--seeds 0 1 2] [--skip-reference-scale] [--json OUT.json] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.backbones import LoadedBackbone, build_backbone
from benchmark.data import datasets  # noqa: F401 - registers the preparers
from benchmark.data.demo import generate
from benchmark.data.prepared import PreparedDataset
from benchmark.data.registry import DATASETS, PrepareOptions
from benchmark.provenance import collect_provenance, utc_now
from benchmark.scoring import scorer
from tasks.registry import TaskCell, get_task
from tasks.segmentation.adapter import build_model, run_cell
from tasks.segmentation.models import encoder_outputs
from tasks.segmentation.protocol import DEFAULT_MODE, load_config

from smoke import add_smoke_option, exit_status, parse_args

PAIRS = {"unet": "random_resnet18", "setr": "random_vit_tiny"}
REFERENCE_PAIRS = {"unet": "random_resnet50", "setr": "random_vit"}
# images per split the store would hold (PROTOCOL.md 6.3, 4.3); SIIM trains on 2 x 2,002 balanced
DATASET_IMAGES = {"siim": {"train": 4004, "val": 1808, "test": 1807}, "rsna": {"train": 16010, "val": 5337, "test": 5337}}
STORE_BYTES = 2  # float16


def stored_bytes_per_image(backbone: LoadedBackbone, outputs: str, size: int) -> int:
    with torch.no_grad():
        levels = encoder_outputs(backbone, torch.zeros(1, 3, size, size), outputs)
    return int(sum(level[0].numel() for level in levels)) * STORE_BYTES


def measure_bytes(backbones: dict[str, LoadedBackbone]) -> dict:
    """The cached mode's store per image at 224 px, for the reference's backbone of each head (``backbones``)."""
    rows = {}
    for head, outputs in (("unet", "stages"), ("setr", "tokens")):
        reference = stored_bytes_per_image(backbones[head], outputs, 224)
        rows[head] = {
            "reference_backbone": REFERENCE_PAIRS[head], "bytes_per_image_224": reference,
            "store_gb": {name: reference * sum(counts.values()) / 1e9 for name, counts in DATASET_IMAGES.items()},
        }
    return rows


def measure_reference_steps(backbones: dict[str, LoadedBackbone], steps: int, batch: int = 8, size: int = 224) -> dict:
    """Seconds per training step of each mode at ``size`` px, batch ``batch`` (random weights, random pixels)."""
    rows = {}
    generator = torch.Generator().manual_seed(0)
    for head, backbone_name in REFERENCE_PAIRS.items():
        cfg = load_config(head, "siim", 100)
        model = build_model(cfg, backbones[head], size, "paper", torch.device("cpu")).train()
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4, weight_decay=0.05)
        images = torch.randn(batch, 3, size, size, generator=generator)
        target = (torch.rand(batch, size, size, generator=generator) > 0.9).float()
        loss_module = model.decode_head.loss_decode

        def step(features: tuple[torch.Tensor, ...]) -> None:
            optimizer.zero_grad()
            loss_module(model.decode_head(features), target).backward()
            optimizer.step()

        timings = {}
        stored = model.backbone(images)
        step(stored)  # warm-up
        for mode in ("paper", "cached"):
            started = time.perf_counter()
            for _ in range(steps):
                step(model.backbone(images) if mode == "paper" else stored)
            timings[mode] = (time.perf_counter() - started) / steps
        rows[head] = {"backbone": backbone_name, "seconds_per_step": timings, "ratio_cached_paper": timings["cached"] / timings["paper"]}
    return rows


def prepare_demo(folder: Path, images: int, size: int) -> PreparedDataset:
    generate(folder / "raw", ["siim"], images=images, size=size, seed=0)
    DATASETS.get("siim").prepare(PrepareOptions(raw=folder / "raw" / "siim", out=folder / "data" / "siim", image_size=size,
                                                verify_shipped=False))
    return PreparedDataset(folder / "data" / "siim")


def measure_demo(dataset: PreparedDataset, folder: Path, epochs: int, seeds: list[int]) -> dict:
    info = get_task("segmentation")
    rows: dict = {}
    for head, backbone_name in PAIRS.items():
        backbone = build_backbone(backbone_name)
        for mode in ("paper", "cached"):
            runs = []
            for seed in seeds:
                work = folder / f"{head}-{mode}-{seed}"
                cell = TaskCell(backbone=backbone, dataset=dataset, partition=info.dataset("siim").partition, head=head,
                                fraction=100, draw=0, seed=seed, mode=mode, work_dir=work, cache_dir=folder / f"cache-{seed}",
                                device="cpu", progress=False)
                result = run_cell(cell, {"train_cfg.max_epochs": epochs})
                scored = scorer("segmentation").score_files(result.predictions_file, result.targets_file, "siim")
                history = result.training.history
                runs.append({
                    "seed": seed, "dice": scored.metrics["dice"].value,
                    "train_seconds_per_epoch": float(np.mean([record.train_seconds for record in history])),
                    "encode_seconds": result.timings.get("encode_seconds", 0.0), "epochs": len(history),
                    "bytes_per_image": result.config["feature_store"].get("train", {}).get("bytes_per_image"),
                })
            dice = [run["dice"] for run in runs]
            per_epoch = [run["train_seconds_per_epoch"] + run["encode_seconds"] / max(run["epochs"], 1) for run in runs]
            rows.setdefault(head, {})[mode] = {"runs": runs, "dice_mean": float(np.mean(dice)), "dice_sd": float(np.std(dice, ddof=1)) if len(dice) > 1 else 0.0,
                                               "seconds_per_epoch_with_encoding": float(np.mean(per_epoch))}
    return rows


def decide(demo: dict) -> tuple[str, list[str]]:
    reasons, cached_pays = [], True
    for head, modes in demo.items():
        paper, cached = modes["paper"], modes["cached"]
        faster = cached["seconds_per_epoch_with_encoding"] < paper["seconds_per_epoch_with_encoding"]
        spread = max(paper["dice_sd"], cached["dice_sd"])
        close = abs(cached["dice_mean"] - paper["dice_mean"]) <= spread
        reasons.append(f"{head}: cached {'faster' if faster else 'not faster'} "
                       f"({cached['seconds_per_epoch_with_encoding']:.2f} vs {paper['seconds_per_epoch_with_encoding']:.2f} s/epoch); "
                       f"Dice {cached['dice_mean']:.4f} vs {paper['dice_mean']:.4f}, difference "
                       f"{cached['dice_mean'] - paper['dice_mean']:+.4f} {'within' if close else 'outside'} the seed spread {spread:.4f}")
        cached_pays &= faster and close
    return ("cached" if cached_pays else "paper"), reasons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=120, help="demo SIIM images (default 120)")
    parser.add_argument("--size", type=int, default=64, help="demo image side (default 64)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per demo cell (default 8)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reference-steps", type=int, default=2, help="timed steps per mode at the reference scale (default 2)")
    parser.add_argument("--reference-batch", type=int, default=8, help="batch of the step timing (default 8, the protocol's)")
    parser.add_argument("--reference-size", type=int, default=224, help="image side of the step timing (default 224, the protocol's)")
    parser.add_argument("--skip-reference-scale", action="store_true", help="skip the reference-scale step timing")
    parser.add_argument("--json", type=Path, help="write every number to this file")
    add_smoke_option(parser, images=28, size=32, epochs=1, seeds=[0], reference_steps=1, reference_batch=1,
                     reference_size=32)
    args = parse_args(parser, argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    reference = {head: build_backbone(name) for head, name in REFERENCE_PAIRS.items()}
    report: dict = {"started": utc_now(), "bytes": measure_bytes(reference)}
    for head, row in report["bytes"].items():
        print(f"{head}: {row['bytes_per_image_224'] / 1e6:.2f} MB per image ({row['reference_backbone']}, 224 px, float16); "
              + ", ".join(f"{name} store {gb:.1f} GB" for name, gb in row["store_gb"].items()))
    if not args.skip_reference_scale:
        report["reference_steps"] = measure_reference_steps(reference, args.reference_steps, args.reference_batch,
                                                            args.reference_size)
        for head, row in report["reference_steps"].items():
            seconds = row["seconds_per_step"]
            print(f"{head} ({row['backbone']}, batch {args.reference_batch}, {args.reference_size} px): paper {seconds['paper']:.2f} s/step, cached "
                  f"{seconds['cached']:.2f} s/step (ratio {row['ratio_cached_paper']:.2f})")
    with tempfile.TemporaryDirectory(prefix="bench-segmentation-") as scratch:
        folder = Path(scratch)
        dataset = prepare_demo(folder, args.images, args.size)
        report["demo"] = measure_demo(dataset, folder, args.epochs, args.seeds)
    for head, modes in report["demo"].items():
        for mode, row in modes.items():
            print(f"demo {head} {mode}: {row['seconds_per_epoch_with_encoding']:.2f} s/epoch (encoding included), "
                  f"test Dice {row['dice_mean']:.4f} ± {row['dice_sd']:.4f} over seeds {args.seeds}")
    decision, reasons = decide(report["demo"])
    report.update(decision=decision, reasons=reasons, default_mode=DEFAULT_MODE, provenance=collect_provenance(report["started"]))
    print("\n".join(reasons))
    print(f"decision: {decision} (the task's default mode: {DEFAULT_MODE})")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    missed = [] if decision == DEFAULT_MODE else [f"the measurements decide {decision}, the task's default mode is {DEFAULT_MODE}"]
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
