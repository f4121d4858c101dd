"""One segmentation cell from the command line, on one device or several (``torchrun``).

    python -m tasks.segmentation --backbone random_resnet18 --data data/prepared/siim \\
        --work-dir runs/siim-unet --cfg-options train_cfg.max_epochs=5
    torchrun --nproc_per_node 2 -m tasks.segmentation --backbone mgca_resnet50 --data ... --device cuda

Under ``torchrun`` every process joins one process group (NCCL on CUDA, gloo on CPU) and trains
on its shard of each global batch (``train_dataloader.batch_size`` is per process); the first
process writes the result files and ``result.json`` (file paths, timings, training summary and
history) into the work folder, and prints it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as torch_dist

from benchmark.backbones import build_backbone
from benchmark.data.prepared import DataError, PreparedDataset
from tasks.registry import TaskCell, get_task
from tasks.segmentation.adapter import run_cell
from tasks.segmentation.protocol import MODES, ConfigError, parse_overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tasks.segmentation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", required=True, help="registered backbone name (python -m benchmark backbones)")
    parser.add_argument("--checkpoint", type=Path, help="checkpoint file of the backbone (read by the safe loader)")
    parser.add_argument("--data", type=Path, required=True, help="prepared dataset folder (siim or rsna)")
    parser.add_argument("--head", help="unet or setr (default: the task's default for the backbone's family)")
    parser.add_argument("--fraction", type=int, default=100, help="percent of the training labels: 1, 10 or 100")
    parser.add_argument("--draw", type=int, default=0, help="label-fraction draw (0 at 100 %%)")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--mode", choices=MODES, help="execution mode (default: the task's)")
    parser.add_argument("--work-dir", type=Path, required=True, help="checkpoints, logs and result files; resumable")
    parser.add_argument("--cache-dir", type=Path, help="feature store of the cached mode (default WORK_DIR/../cache)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (each torchrun process takes cuda:LOCAL_RANK)")
    parser.add_argument("--cfg-options", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config overrides, e.g. train_cfg.max_epochs=5 optim_wrapper.optimizer.lr=1e-3")
    return parser.parse_args(argv)


def join_process_group(device: str) -> str:
    """Joins torchrun's process group when there is one; returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local_rank = int(os.environ["LOCAL_RANK"])
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
    torch_dist.init_process_group("nccl" if cuda else "gloo")
    return f"cuda:{local_rank}" if cuda else device


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        device = join_process_group(args.device)
        info = get_task("segmentation")
        backbone = build_backbone(args.backbone, args.checkpoint)
        dataset = PreparedDataset(args.data)
        cell = TaskCell(
            backbone=backbone, dataset=dataset, partition=info.dataset(dataset.name).partition,
            head=args.head or info.default_head(backbone.model.arch.family), fraction=args.fraction, draw=args.draw,
            seed=args.seed, mode=args.mode or info.default_mode, work_dir=args.work_dir,
            cache_dir=args.cache_dir or args.work_dir.parent / "cache", device=device, progress=False,
        )
        result = run_cell(cell, parse_overrides(args.cfg_options))
    except (DataError, ConfigError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    finally:
        if torch_dist.is_initialized():
            torch_dist.destroy_process_group()
    if int(os.environ.get("RANK", "0")) == 0:
        summary = json.dumps({"predictions": str(result.predictions_file), "targets": str(result.targets_file),
                              "timings": result.timings, "training": result.training.to_json()}, indent=2, default=str)
        (args.work_dir / "result.json").write_text(summary + "\n")
        print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
