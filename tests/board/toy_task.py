"""A tiny deterministic task and prepared dataset, so the grid, resume and board logic are tested
without the real linear probe (``--plugins toy_task`` registers it in a CLI subprocess).

The task ``toy`` is scored by the real classification scorer on the ``rsna`` scheme (one binary
class ``Target``), with scores that depend only on (weights, head, fraction, draw, seed): equal
identities give equal files. It declares two heads (``linear``, ``mlp``) and two modes
(``cached``, ``paper``). Environment switches: ``TOY_SLEEP`` (seconds per cell) slows it down;
``TOY_FAIL`` (a fraction, e.g. "10") makes cells of that fraction raise; ``TOY_CRASH`` (a
fraction) makes them kill their interpreter; ``TOY_BAR`` makes them draw a tqdm bar ("toy bar").
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmark.costs import TaskCost
from benchmark.data.prepared import PREPARATION_VERSION, Manifest, split_file_name, write_ids
from tasks.registry import TASKS, TaskCell, TaskDataset, TaskInfo, TaskResult

N_TEST = 60
TOY_TASK = "toy"
TOY_DATASET = "rsna"  # reuses the RSNA scheme (id,Target) of benchmark/scoring/classification.py
HEAD_SKILL = {"linear": 1.0, "mlp": 1.5}


def toy_task(cell: TaskCell) -> TaskResult:
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


if TOY_TASK not in TASKS:
    TASKS.add(TOY_TASK, TaskInfo(
        name=TOY_TASK, title="toy", version=1, datasets={TOY_DATASET: TaskDataset("classification", "auroc")},
        heads=("linear", "mlp"), default_heads={"*": "linear"}, modes=("cached", "paper"), default_mode="cached",
        adapter=toy_task, scorer="classification",
        # the cost the planner shards toy cells by: a bound of 50 epochs, a head as dear as the encoder
        cost=TaskCost(batch_size=32, max_epochs=50, head_cost=1.0, features="maps", cache_dtype_bytes=4),
        override_keys=("max_epochs",),
    ))


def write_toy_dataset(data_dir: Path, demo: bool = True, draws: int = 2, n_train: int = 200) -> Path:
    """A prepared ``rsna`` folder with a classification partition, labels and fraction draws."""
    root = data_dir / TOY_DATASET
    rng = np.random.default_rng(0)
    ids = [f"img{k:04d}" for k in range(n_train + 2 * N_TEST)]
    labels = np.r_[rng.integers(0, 2, n_train + N_TEST), np.tile([0, 1], N_TEST // 2)]
    splits = {"train": ids[:n_train], "val": ids[n_train:n_train + N_TEST], "test": ids[n_train + N_TEST:]}
    for split, members in splits.items():
        write_ids(root / "splits" / "classification" / split_file_name(split), members)
    for fraction in (1, 10):
        for draw in range(draws):
            chosen = sorted(np.random.default_rng([fraction, draw]).choice(splits["train"], size=max(2, n_train * fraction // 100), replace=False))
            write_ids(root / "splits" / "classification" / split_file_name("train", fraction, draw), list(chosen))
    split_of = {i: s for s, members in splits.items() for i in members}
    (root / "records.csv").write_text("id,split,Target\n" + "".join(f"{i},{split_of[i]},{t}\n" for i, t in zip(ids, labels)))
    Manifest(dataset=TOY_DATASET, preparation_version=PREPARATION_VERSION, package_version="test", created="2026-01-01T00:00:00+00:00",
             source_files=[], counts={s: len(m) for s, m in splits.items()}, image_size=32, image_mode="letterbox",
             partitions=["classification"], fractions={"1": list(range(draws)), "10": list(range(draws))}, demo=demo).write(root)
    return data_dir


def write_toy_board(folder: Path, name: str = "toy-board", demo: bool = True, seeds: tuple[int, ...] = (0,),
                    draws: tuple[int, ...] = (0, 1)) -> Path:
    board = folder / name
    board.mkdir(parents=True)
    protocol = {
        "board": name, "protocol_version": "toy-v1", "preparation_version": PREPARATION_VERSION, "title": "toy board",
        "description": "tests", "demo": demo, "fractions": [1, 10, 100], "seeds": list(seeds), "draws": list(draws),
        "tasks": {TOY_TASK: {"version": 1, "modes": ["cached", "paper"], "default_mode": "cached", "heads": ["linear", "mlp"],
                             "datasets": {TOY_DATASET: {"label": "Toy AUROC"}}}},
        "comparison": {"correction": "holm", "alpha": 0.05, "bootstrap_resamples": 200, "bootstrap_seed": 0},
        "test_set_sources": {TOY_DATASET: ["rsna", "nih-chestxray14"]}, "source_aliases": {"nih": "nih-chestxray14"},
    }
    (board / "protocol.json").write_text(json.dumps(protocol, indent=2))
    return board
