"""Verb ``selftest``: is this machine ready? Every task, head and mode, pretraining and DDP, tiny, on the device."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from benchmark.commands import command

DDP_CHOICES = ("auto", "always", "never")


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None,
                        help="where everything runs (default: cuda when available, else cpu)")
    parser.add_argument("--ddp", choices=DDP_CHOICES, default="auto",
                        help="the two-process (torchrun) checks of pretraining and segmentation: auto runs them when "
                             "--device cuda sees 2 or more GPUs (NCCL); always runs them on CPU too (gloo)")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the synthetic data, work folders and logs here (default: a temporary folder, removed)")
    parser.add_argument("--metrics", type=Path, default=None,
                        help="write every cell's metrics to this JSON file ({check: {metric: value}}), to compare "
                             "two versions of the code on the same cells")


@command("selftest", "check this machine: one tiny cell of every task, head and mode, pretraining steps and "
                     "2-GPU DDP on the device; prints what ran, how long and peak memory", _configure)
def _selftest(args: argparse.Namespace) -> int:
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # pretraining takes a GPU when it sees one: hide them
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available to torch here (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2
    gpus = torch.cuda.device_count() if device == "cuda" else 0
    ddp = args.ddp == "always" or (args.ddp == "auto" and gpus >= 2)
    if ddp and device == "cuda" and gpus < 2:
        print(f"error: --ddp always on cuda needs 2 GPUs, torch sees {gpus}; use --device cpu for gloo", file=sys.stderr)
        return 2
    if args.out is not None and args.out.exists() and any(args.out.iterdir()):
        print(f"error: --out {args.out}: the folder is not empty; name a new or empty one", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name(0) if device == "cuda" else f"{os.cpu_count()} CPU cores"
    print(f"selftest on {device} ({where}; {gpus} GPU(s) visible; DDP checks: {'yes' if ddp else 'no'})")
    from benchmark.selftest import run_selftest

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        test = run_selftest(device, args.out, ddp)
    else:
        with tempfile.TemporaryDirectory(prefix="selftest-") as scratch:
            test = run_selftest(device, Path(scratch), ddp)
    checks = test.checks
    if args.metrics is not None:
        args.metrics.write_text(json.dumps(test.metrics, indent=1, sort_keys=True) + "\n")
    failed = [check.name for check in checks if not check.ok]
    skipped = [check.name for check in checks if check.skipped]
    total = sum(check.seconds for check in checks)
    print(f"{len(checks) - len(failed) - len(skipped)} of {len(checks) - len(skipped)} checks passed in {total:.0f} s"
          + (f"; {len(skipped)} skipped" if skipped else "") + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0
