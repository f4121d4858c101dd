"""The toy task's adapter: deterministic scores from the cell's identity, written as the scorer reads them.

Environment switches: ``TOY_SLEEP`` (seconds per cell) slows a cell down; ``TOY_FAIL`` (a fraction,
e.g. "10") makes cells of that fraction raise; ``TOY_CRASH`` (a fraction) makes them kill their
interpreter; ``TOY_BAR`` makes them draw a tqdm bar ("toy bar").
"""

from __future__ import annotations

import os
import time

import numpy as np
from tqdm import tqdm

from tasks.registry import TaskCell, TaskResult

HEAD_SKILL = {"linear": 1.0, "mlp": 1.5}


def run_toy(cell: TaskCell) -> TaskResult:
    """Scores from the cell's identity alone; the environment switches of the module docstring."""
    if os.environ.get("TOY_FAIL") == str(cell.fraction):
        raise RuntimeError(f"toy failure at {cell.fraction}%")
    if os.environ.get("TOY_CRASH") == str(cell.fraction):
        print("toy cell about to crash", flush=True)
        os.abort()
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    if os.environ.get("TOY_BAR"):
        for _ in tqdm(range(3), desc="toy bar"):
            pass
    dataset, weights = cell.dataset, cell.backbone.weights_sha256
    ids = dataset.split_ids("test", partition=cell.partition)
    labels = dataset.records.loc[ids, "Target"].to_numpy().astype(int)
    entropy = [int(weights[:8], 16), cell.fraction, cell.draw, cell.seed, len(cell.head), len(cell.mode)]
    noise = np.random.default_rng(entropy).normal(size=len(ids))
    skill = {1: 0.5, 10: 1.0, 100: 2.0}.get(cell.fraction, 1.0) * (1 + (int(weights[:2], 16) % 3)) * HEAD_SKILL[cell.head]
    scores = 1 / (1 + np.exp(-(skill * (labels - 0.5) + noise)))
    predictions, targets = cell.work_dir / "predictions.csv", cell.work_dir / "targets.csv"
    predictions.write_text("id,Target\n" + "".join(f"{i},{s:.8g}\n" for i, s in zip(ids, scores)))
    targets.write_text("id,Target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, labels)))
    return TaskResult(
        predictions_file=predictions, targets_file=targets,
        split_fingerprints={"test": dataset.split_fingerprint("test", partition=cell.partition)},
        config={"toy": True}, timings={"fit": 0.0}, notes=["toy task"],
    )
