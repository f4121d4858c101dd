"""Two processes (torchrun, gloo, CPU) train on the same global batches as one process: same losses.

Each process takes half of every global batch (mmengine's sampler shards by rank), the soft Dice
of the loss is summed over both, and DDP averages the gradients, so the training loss of every
epoch equals the one-process loss on the same global batches. CPU processes cannot synchronise
BatchNorm statistics (``SyncBatchNorm`` runs on CUDA only; multi-GPU runs use it), so here the
decoder normalises with GroupNorm, which does not depend on how a batch is split. Validation
losses are not compared: the sampler pads an odd validation set with a repeated image in one
process's last batch; per-image Dice is unaffected.

The two layouts round differently (a batch of 8 against two of 4 takes other kernel blockings; the
all-reduce adds the processes' gradients), and AdamW's first steps, about lr * sign(gradient) per
weight, turn a rounding-level gradient into a full step: after eight steps the losses differed by
2e-5 relative on one CPU and by 1e-6 on another. That measures the CPU, not the sharding. Here
the optimiser is linear in the gradients (AdamW with an ``eps`` far above every gradient is a
momentum SGD step of lr / eps), so rounding differences reach the weights scaled by the step
size, and the tolerance derives from float32 alone (:data:`REL_TOL`).
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

# AdamW with eps = 1e4 above gradients of order 1 or less: steps of (lr / eps) * momentum = 1e-2 * momentum
COMMON = ["train_cfg.max_epochs=2", "optim_wrapper.optimizer.lr=100.0", "optim_wrapper.optimizer.eps=10000.0",
          "optim_wrapper.optimizer.weight_decay=0.0",
          "model.decode_head.norm_cfg.type=GN", "model.decode_head.norm_cfg.num_groups=8"]
GLOBAL_BATCH = 8
IMAGE_SIZE = 32  # the segmentation_data fixture's
# float32's unit roundoff u = 2^-24. A sum of k float32 terms taken in another order differs by at most
# k * u of the sum of the terms' magnitudes (Higham's bound gamma_k); the longest sums of this network
# are the loss's pixel sums over a global batch (8 * 32 * 32 = 8192 terms) and its convolutions'
# (3 * 3 * 512 = 4608), and every term of the loss is positive, so each epoch's loss of the two layouts
# may differ by k * u relative. A linear optimiser carries such differences into the next steps
# scaled by the step size (below 1 here), not amplified. A wrong reduction (a mean where the processes'
# losses or gradients must be summed or averaged) moves the loss by far more: see the check on how
# much the loss moved between the epochs.
REL_TOL = GLOBAL_BATCH * IMAGE_SIZE * IMAGE_SIZE * 2.0 ** -24  # 4.9e-4


@pytest.mark.slow  # three processes import torch and mmseg and train (about a minute on 2 cores)
def test_two_processes_match_one_process_on_the_same_global_batches(segmentation_data, tmp_path):
    single = [*COMMON, f"train_dataloader.batch_size={GLOBAL_BATCH}", f"val_dataloader.batch_size={GLOBAL_BATCH}"]
    cell = TaskCell(backbone=build_backbone("random_resnet18"), dataset=PreparedDataset(segmentation_data / "siim"),
                    partition="segmentation", head="unet", fraction=100, draw=0, seed=0, mode="paper",
                    work_dir=tmp_path / "one", cache_dir=tmp_path / "cache")
    one = run_cell(cell, parse_overrides(single)).training.to_json()["history"]

    per_process = [*COMMON, f"train_dataloader.batch_size={GLOBAL_BATCH // 2}", f"val_dataloader.batch_size={GLOBAL_BATCH // 2}"]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "tasks.segmentation", "--backbone", "random_resnet18", "--data", str(segmentation_data / "siim"),
               "--head", "unet", "--mode", "paper", "--work-dir", str(tmp_path / "two"), "--cfg-options", *per_process]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    finished = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert finished.returncode == 0, finished.stderr[-3000:]
    two = json.loads((tmp_path / "two" / "result.json").read_text())["training"]["history"]

    assert [entry["iterations"] for entry in one] == [entry["iterations"] for entry in two]  # same number of global steps
    for single_epoch, double_epoch in zip(one, two, strict=True):
        assert double_epoch["train_loss"] == pytest.approx(single_epoch["train_loss"], rel=REL_TOL)
        assert double_epoch["validation"]["dice"] == pytest.approx(single_epoch["validation"]["dice"], rel=REL_TOL)
    # The check can fail: training moved the loss far more than the tolerance, so gradients summed instead of
    # averaged (steps twice as long) or a process's loss left out would show.
    assert abs(one[1]["train_loss"] - one[0]["train_loss"]) > 20 * REL_TOL * one[0]["train_loss"]
