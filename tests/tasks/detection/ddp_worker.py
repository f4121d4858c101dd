"""One process of the 2-process detection test (started by torchrun from test_detection_distributed.py).

Usage: ddp_worker.py PREPARED_DIR WORK_DIR CACHE_DIR OUT_JSON. Trains the test's YOLOv3 cell with
the global batch split across the processes and writes this process's iteration losses.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from test_detection_distributed import PROTOCOL_2x2_DDP, SMALL_YOLO, LinearSteps, LossWatcher, cell_of  # noqa: E402

from tasks.detection.adapter import run_detection  # noqa: E402

if __name__ == "__main__":
    prepared, work_dir, cache_dir, out = map(Path, sys.argv[1:5])
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    watcher = LossWatcher()
    run_detection(cell_of(prepared, work_dir, cache_dir), PROTOCOL_2x2_DDP, options=SMALL_YOLO, hooks=[watcher, LinearSteps()])
    Path(f"{out}.rank{os.environ['RANK']}").write_text(json.dumps(watcher.losses))
    dist.destroy_process_group()
