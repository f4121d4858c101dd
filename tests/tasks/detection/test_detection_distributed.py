"""Two processes (torchrun, gloo on CPU) train the same detector as one process on the same global batch."""

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
PROTOCOL_2x2 = with_overrides(batch_size=4, max_epochs=2, eval_batch_size=16, encode_batch_size=16)
SMALL_YOLO = {"model.neck.out_channels": [64, 32, 16], "model.bbox_head.in_channels": [64, 32, 16],
              "model.bbox_head.out_channels": [128, 64, 32]}


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
    result = run_detection(cell_of(prepared, tmp_path / "one", tmp_path / "cache"), PROTOCOL_2x2, options=SMALL_YOLO, hooks=[watcher])
    assert len(watcher.losses) == len(ranks[0]) == len(ranks[1]) == 4
    # mmdet's YOLOv3 loss is a sum over images: the global batch's loss is the sum of the processes'
    assert [a + b for a, b in zip(*ranks)] == pytest.approx(watcher.losses, rel=1e-4)
    assert ranks[0] != pytest.approx(ranks[1], rel=1e-3)  # the processes did see different images
    two = json.loads((tmp_path / "two" / "history.json").read_text())
    assert [item["val_map"] for item in two] == pytest.approx([item["val_map"] for item in result.training["history"]], abs=1e-6)
