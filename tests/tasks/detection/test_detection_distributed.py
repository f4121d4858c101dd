"""Two processes (torchrun, gloo on CPU) train the same detector as one process on the same global batch.

What is checked: the global batch's loss is the sum of the processes' (mmdet's YOLOv3 loss sums over
images) and DDP averages the processes' gradients, so two processes at twice the learning rate take
the steps of one. The optimiser is linear in the gradients (AdamW with an ``eps`` far above every
gradient is a momentum SGD step of lr / eps): the protocol's AdamW takes steps of about
lr * sign(gradient), which cannot tell a sum of gradients from their mean and turns rounding-level
gradients into full steps, so its losses after a few steps measure the CPU's rounding, not the
sharding. The tolerance derives from float32 (:data:`REL_TOL`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mmengine.hooks import Hook

from benchmark.backbones import build_backbone
from benchmark.data.prepared import PreparedDataset
from tasks.detection.protocol import with_overrides
from tasks.registry import TaskCell

# Object-CXR 10 % holds 8 images: a global batch of 4 gives 2 iterations per epoch, whole batches in
# both layouts (2 processes x 2 images, 1 process x 4 images).
EPS = 1e8  # AdamW's eps: steps of (lr / eps) * momentum
STEP = 1e-3  # lr / eps of one process; two processes average gradients of half the images: twice the lr
# no weight decay: AdamW's is decoupled (lr * wd * w), which the doubled lr would double
SETTINGS = dict(batch_size=4, max_epochs=2, eval_batch_size=16, encode_batch_size=16, weight_decay=0.0)
PROTOCOL_2x2 = with_overrides(**SETTINGS, lr=STEP * EPS)
PROTOCOL_2x2_DDP = with_overrides(**SETTINGS, lr=2 * STEP * EPS)
# float32's unit roundoff u = 2^-24. The layouts compute each image's forward pass and the gradients in other
# orders (other batch sizes take other kernel blockings; the all-reduce adds the processes' gradients). A sum of
# k float32 terms in another order differs by at most k * u of the sum of its terms' magnitudes (Higham's
# gamma_k); the longest sums of the trained part are the neck's convolutions over the encoder's last stage
# (3 * 3 * 512 = 4608 terms; the frozen encoder's maps come from one shared cache). The loss's terms are
# positive, so the losses may differ by k * u relative; a linear optimiser carries such differences into the
# next steps scaled by its step, not amplified.
REL_TOL = 3 * 3 * 512 * 2.0 ** -24  # 2.7e-4
SMALL_YOLO = {"model.neck.out_channels": [64, 32, 16], "model.bbox_head.in_channels": [64, 32, 16],
              "model.bbox_head.out_channels": [128, 64, 32]}


class LinearSteps(Hook):
    """Sets AdamW's eps of every parameter group to :data:`EPS` once the optimiser exists (after a resume too)."""

    def before_train(self, runner) -> None:
        for group in runner.optim_wrapper.optimizer.param_groups:
            group["eps"] = EPS


class LossWatcher(Hook):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(outputs["loss"].item())


def cell_of(prepared: Path, work_dir: Path, cache_dir: Path) -> TaskCell:
    return TaskCell(backbone=build_backbone("random_resnet18"), dataset=PreparedDataset(prepared / "object_cxr"),
                    partition="detection", head="yolov3", fraction=10, draw=0, seed=0, mode="cached",
                    work_dir=work_dir, cache_dir=cache_dir, progress=False)


@pytest.mark.slow  # starts two fresh interpreters (torch, mmdet) under torchrun
def test_two_processes_give_the_losses_of_one_on_the_same_global_batch(prepared, tmp_path):
    from tasks.detection.adapter import run_detection

    out = tmp_path / "losses"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               str(Path(__file__).with_name("ddp_worker.py")), str(prepared), str(tmp_path / "two"), str(tmp_path / "cache"), str(out)]
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    ranks = [json.loads(Path(f"{out}.rank{rank}").read_text()) for rank in (0, 1)]

    watcher = LossWatcher()
    result = run_detection(cell_of(prepared, tmp_path / "one", tmp_path / "cache"), PROTOCOL_2x2, options=SMALL_YOLO,
                           hooks=[watcher, LinearSteps()])
    assert len(watcher.losses) == len(ranks[0]) == len(ranks[1]) == 4
    # mmdet's YOLOv3 loss is a sum over images: the global batch's loss is the sum of the processes'
    assert [a + b for a, b in zip(*ranks)] == pytest.approx(watcher.losses, rel=REL_TOL)
    assert ranks[0] != pytest.approx(ranks[1], rel=1e-3)  # the processes did see different images
    # The check can fail: the steps moved the loss of the same 8 images (each epoch's two batches) far beyond the
    # tolerance, so summed gradients (steps twice as long) or unsynchronised ones would show.
    first, second = sum(watcher.losses[:2]), sum(watcher.losses[2:])
    assert abs(second - first) > 20 * REL_TOL * first
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    # Validation gathers both processes' images: the same mAP (a piecewise constant function of the scores,
    # which differ by rounding only; equal unless rounding reorders two detections)
    assert [item["validation"]["map"] for item in two["epochs"]] == pytest.approx(
        [item.validation["map"] for item in result.training.history], abs=1e-6)
