"""Two processes (torchrun, gloo, CPU) train on the same global batches as one process: same losses.

Each process takes half of every global batch (mmengine's sampler shards by rank), the soft Dice
of the loss is summed over both, and DDP averages the gradients, so the training loss of every
epoch equals the one-process loss on the same global batches. CPU processes cannot synchronise
BatchNorm statistics (``SyncBatchNorm`` runs on CUDA only; multi-GPU runs use it), so here the
decoder normalises with GroupNorm, which does not depend on how a batch is split. The learning
rate is small: at the reference's 5e-4, AdamW's first steps (about lr * sign(gradient) per
weight) amplify the float-rounding difference between one batch of 8 and two of 4 into a 1e-3
loss difference after eight steps of this tiny decoder, while at 1e-5 the losses agree to 1e-6
(measured), which is what this test is about: sharding, loss reduction and gradient averaging.
Validation losses are not compared: the sampler pads an odd validation set with a repeated
image in one process's last batch; per-image Dice is unaffected.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from benchmark.backbones import build_backbone
from benchmark.data.prepared import PreparedDataset
from tasks.registry import TaskCell
from tasks.segmentation.adapter import run_cell
from tasks.segmentation.protocol import parse_overrides

COMMON = ["train_cfg.max_epochs=2", "optim_wrapper.optimizer.lr=1e-5",
          "model.decode_head.norm_cfg.type=GN", "model.decode_head.norm_cfg.num_groups=8"]
GLOBAL_BATCH = 8


@pytest.mark.slow  # three processes import torch and mmseg and train (about a minute on 2 cores)
def test_two_processes_match_one_process_on_the_same_global_batches(segmentation_data, tmp_path):
    single = [*COMMON, f"train_dataloader.batch_size={GLOBAL_BATCH}", f"val_dataloader.batch_size={GLOBAL_BATCH}"]
    cell = TaskCell(backbone=build_backbone("random_resnet18"), dataset=PreparedDataset(segmentation_data / "siim"),
                    partition="segmentation", head="unet", fraction=100, draw=0, seed=0, mode="paper",
                    work_dir=tmp_path / "one", cache_dir=tmp_path / "cache")
    one = run_cell(cell, parse_overrides(single)).training["history"]

    per_process = [*COMMON, f"train_dataloader.batch_size={GLOBAL_BATCH // 2}", f"val_dataloader.batch_size={GLOBAL_BATCH // 2}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tasks.segmentation", "--backbone", "random_resnet18", "--data", str(segmentation_data / "siim"),
               "--head", "unet", "--mode", "paper", "--work-dir", str(tmp_path / "two"), "--cfg-options", *per_process]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())["history"]

    assert [entry["iterations"] for entry in one] == [entry["iterations"] for entry in two]  # same number of global steps
    for single_epoch, double_epoch in zip(one, two, strict=True):
        assert double_epoch["train_loss"] == pytest.approx(single_epoch["train_loss"], abs=1e-4)
        assert double_epoch["val_dice"] == pytest.approx(single_epoch["val_dice"], abs=1e-4)
