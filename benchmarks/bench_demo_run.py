"""Wall time of the whole demo benchmark (what `make bench` does), from nothing, and of its no-op re-run.

Steps, each timed: demo raw data for the datasets the demo board needs, `prepare`, `run` with the demo
backbones on a fresh copy of the demo board, `tables`; then the same `run` again, which must skip every
cell. Everything is written under a temporary folder (the committed demo board is not touched).

Bar: the demo must finish within 20 minutes on 2 CPU cores (exit 1 above it); the re-run must evaluate
nothing (always checked).
Usage: python benchmarks/bench_demo_run.py [--keep DIR] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmark.board.store import Board, default_board

from smoke import add_smoke_option, exit_status, parse_args

ROOT = Path(__file__).resolve().parent.parent
BACKBONES = "random_vit_tiny,random_resnet18"
IMAGES, SIZE = 300, 128
BAR_SECONDS = 20 * 60


def cli(*args: str, env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "benchmark", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"`benchmark {' '.join(args)}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, default=None, help="work here and keep the files (default: a temporary folder)")
    parser.add_argument("--backbones", default=BACKBONES, help=f"comma list (default {BACKBONES})")
    parser.add_argument("--images", type=int, default=IMAGES, help=f"demo images per dataset (default {IMAGES})")
    parser.add_argument("--size", type=int, default=SIZE, help=f"demo image side (default {SIZE})")
    for option in ("tasks", "datasets", "fractions"):
        parser.add_argument(f"--{option}", default=None, help=f"comma list: `run --{option}` (default: the demo board's)")
    add_smoke_option(parser, backbones="random_resnet18", images=20, size=32, tasks="classification", datasets="rsna",
                     fractions="100")
    args = parse_args(parser)
    narrowed = [item for option in ("tasks", "datasets", "fractions") if getattr(args, option)
                for item in (f"--{option}", getattr(args, option))]
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-demo-"))
    boards = work / "leaderboards"
    demo = Board(ROOT / "leaderboards" / default_board(True, ROOT / "leaderboards"))  # the committed demo board
    (boards / demo.name).mkdir(parents=True, exist_ok=True)
    shutil.copy(demo.root / "protocol.json", boards / demo.name / "protocol.json")
    env = {**os.environ, "MGCA_BENCH_BOARDS": str(boards)}
    raw, prepared = work / "raw", work / "prepared"
    timings: dict[str, float] = {}
    start = time.perf_counter()
    _, datasets_text = cli("run", "--print-datasets", "--demo", env=env)
    datasets = [name for name in datasets_text.split() if args.datasets is None or name in args.datasets.split(",")]
    timings["demo-data"], _ = cli("demo-data", "--out", str(raw), "--datasets", *datasets, "--images", str(args.images),
                                  "--size", str(args.size), env=env)
    timings["prepare"] = sum(cli("prepare", name, "--raw", str(raw / name), "--out", str(prepared),
                                 "--image-size", str(args.size), env=env)[0] for name in datasets)
    grid = ("run", "--backbone", args.backbones, "--demo", "--data", str(prepared), "--no-progress",
            "--work-dir", str(work / "runs"), "--cache-dir", str(work / "cache"), *narrowed)
    timings["run"], summary = cli(*grid, env=env)
    timings["tables"], _ = cli("tables", "--demo", "--quiet", env=env)
    total = time.perf_counter() - start
    timings["resume (no-op re-run)"], rerun = cli(*grid, env=env)
    report = {"datasets": datasets, "backbones": args.backbones, "images": args.images, "size": args.size, "narrowed": narrowed,
              "cpus": os.cpu_count(),
              "seconds": {k: round(v, 1) for k, v in timings.items()}, "total_seconds": round(total, 1),
              "run_summary": summary.strip().splitlines()[:1], "rerun_summary": rerun.strip().splitlines()[:1],
              "bar_seconds": BAR_SECONDS, "work": str(work)}
    print(json.dumps(report, indent=2))
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    if " 0 evaluated" not in rerun:
        print("FAIL: the re-run evaluated cells again")
        return 1
    return exit_status([f"demo took {total:.0f} s, above the {BAR_SECONDS} s bar"] if total > BAR_SECONDS else [], args.smoke)


if __name__ == "__main__":
    sys.exit(main())
