"""Dry run against the clock: one real-geometry cell's estimated wall time and its measured one.

Demo RSNA is generated and prepared at ``--size`` px (256: the linear probe's reference cache, so
ResNet-50 sees 299 px and a ViT 224 px), a one-cell board is written (linear classification,
RSNA, 100 %, seed 0, at most ``--epochs`` epochs, which the probe runs in full: its patience is
10), and for each of ``--modes``: ``run --dry-run`` prints its estimate (from ``--device-class``,
or measured on this machine), then ``run`` evaluates the cell, timed from the command's start to
its end (start-up, backbone, encoding, training, scoring). Bar: every estimate within
``--tolerance`` (30 %) of the measured time. On a shared machine both are slower than the machine.

    python benchmarks/bench_dry_run.py [--backbone random_resnet50] [--images 300] [--size 256] [--epochs 3]
        [--modes cached paper] [--device-class NAME] [--json OUT.json] [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmark.cli import main as cli
from benchmark.provenance import collect_provenance, utc_now

from smoke import add_smoke_option, exit_status, parse_args

TEMPLATE_BOARD = Path(__file__).resolve().parents[1] / "leaderboards" / "demo-mgca-cxr-v1" / "protocol.json"


def write_board(folder: Path, epochs: int) -> Path:
    """The demo board narrowed to one linear-probe cell per mode: RSNA, 100 %, seed 0, at most ``epochs`` epochs."""
    board = json.loads(TEMPLATE_BOARD.read_text())
    probe = board["tasks"]["classification"]
    probe.update(datasets={"rsna": probe["datasets"]["rsna"]}, overrides={"max_epochs": epochs})
    board.update(board="cost-check", title="one linear-probe cell at real geometry (benchmarks/bench_dry_run.py)",
                 default=False, fractions=[100], seeds=[0], tasks={"classification": probe}, changelog=board["changelog"][:1])
    root = folder / "cost-check"
    root.mkdir(parents=True)
    (root / "protocol.json").write_text(json.dumps(board, indent=2) + "\n")
    return root


def prepare(folder: Path, images: int, size: int) -> Path:
    for argv in (["demo-data", "--out", str(folder / "raw"), "--datasets", "rsna", "--images", str(images), "--size", str(size)],
                 ["prepare", "rsna", "--raw", str(folder / "raw" / "rsna"), "--out", str(folder / "data"),
                  "--image-size", str(size), "--no-verify"]):
        if cli(argv) != 0:
            raise SystemExit(f"`python -m benchmark {' '.join(argv)}` failed")
    return folder / "data"


def check(args: argparse.Namespace, folder: Path, data: Path, board: Path, mode: str) -> dict:
    """The dry run's estimate of the one cell of ``mode``, then its measured time."""
    common = ["run", "--backbone", args.backbone, "--board", str(board), "--data", str(data), "--mode", mode,
              "--work-dir", str(folder / "work"), "--cache-dir", str(folder / f"cache-{mode}")]
    speed = ["--device-class", args.device_class] if args.device_class else []
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        if cli([*common, "--dry-run", "--format", "json", *speed]) != 0:
            raise SystemExit(f"the dry run of the {mode} cell failed")
    plan = json.loads(out.getvalue())
    started = time.perf_counter()
    if cli([*common, *(["--in-process"] if args.in_process else [])]) != 0:
        raise SystemExit(f"the {mode} cell failed")
    measured = time.perf_counter() - started
    estimated = plan["per_shard"][0]["estimated_seconds"]
    return {"mode": mode, "cells": plan["total"]["to_run"], "encoder_passes": plan["total"]["encoder_passes"],
            "estimated_seconds": estimated, "measured_seconds": round(measured, 1), "estimate_over_measured": estimated / measured,
            "speeds": plan["throughput"]["measured"], "load_average_after": os.getloadavg()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="random_resnet50")
    parser.add_argument("--images", type=int, default=300, help="demo RSNA images (default 300: 210 train, 45 val, 45 test)")
    parser.add_argument("--size", type=int, default=256, help="prepared image side (default 256, the probe's reference cache)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--modes", nargs="+", default=["cached", "paper"])
    parser.add_argument("--device-class", default=None, help="estimate from this measured device class (default: measure here)")
    parser.add_argument("--tolerance", type=float, default=0.3, help="bar: |estimate / measured - 1| at most this")
    parser.add_argument("--in-process", action="store_true", help="run the cell in this process (no cell child process)")
    parser.add_argument("--json", type=Path, default=None)
    add_smoke_option(parser, backbone="random_resnet18", images=28, size=32, epochs=1, modes=["cached"], in_process=True)
    args = parse_args(parser)
    started = utc_now()
    with tempfile.TemporaryDirectory(prefix="bench-dry-run-") as scratch:
        folder = Path(scratch)
        data, board = prepare(folder, args.images, args.size), write_board(folder / "boards", args.epochs)
        rows = [check(args, folder, data, board, mode) for mode in args.modes]
    print(f"\n{'mode':8}{'encoder passes':>15}{'dry run':>10}{'measured':>10}{'ratio':>7}  speeds")
    for row in rows:
        print(f"{row['mode']:8}{row['encoder_passes']:>15}{row['estimated_seconds']:>9.0f}s{row['measured_seconds']:>9.0f}s"
              f"{row['estimate_over_measured']:>7.2f}  {row['speeds']}")
    if args.json:
        args.json.write_text(json.dumps({"benchmark": "dry_run", "args": {k: str(v) for k, v in vars(args).items()},
                                         "rows": rows, "provenance": collect_provenance(started)}, indent=2) + "\n")
    missed = [f"{row['mode']}: the dry run said {row['estimated_seconds']:.0f} s, the cell took {row['measured_seconds']:.0f} s"
              for row in rows if abs(row["estimate_over_measured"] - 1) > args.tolerance]
    return exit_status(missed, args.smoke)


if __name__ == "__main__":
    sys.exit(main())
