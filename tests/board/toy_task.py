"""A tiny deterministic task and prepared dataset, so the grid, resume and board logic are tested
without the real linear probe (``--plugins toy_task`` registers it in a CLI subprocess).

The task ``toy`` scores the ``rsna`` classification scheme (one binary class ``Target``) with
scores that depend only on (weights, fraction, draw, seed): equal identities give equal files.
``TOY_SLEEP`` (seconds per cell) slows it down for the crash/resume test; ``TOY_FAIL`` (a
fraction, e.g. "10") makes cells of that fraction raise.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from benchmark.board.compare import PAIRED_SCORERS, ClassificationPairs
from benchmark.data.prepared import PROTOCOL_VERSION, Manifest, PreparedDataset, split_file_name, write_ids
from tasks.registry import TASKS, TaskInfo

N_TEST = 60
TOY_TASK = "toy"
TOY_DATASET = "rsna"  # reuses the RSNA scheme (id,Target) of benchmark/scoring/classification.py


def toy_task(backbone, dataset: PreparedDataset, fraction: int, draw: int, seed: int, mode: str,
             work_dir: Path, cache_dir: Path) -> dict:
    if os.environ.get("TOY_FAIL") == str(fraction):
        raise RuntimeError(f"toy failure at {fraction}%")
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    ids = dataset.split_ids("test", partition="classification")
    labels = dataset.records.loc[ids, "Target"].to_numpy().astype(int)
    entropy = [int(backbone.weights_sha256[:8], 16), fraction, draw, seed]
    noise = np.random.default_rng(entropy).normal(size=len(ids))
    skill = {1: 0.5, 10: 1.0, 100: 2.0}.get(fraction, 1.0) * (1 + (int(backbone.weights_sha256[:2], 16) % 3))
    scores = 1 / (1 + np.exp(-(skill * (labels - 0.5) + noise)))
    predictions, targets = work_dir / "predictions.csv", work_dir / "targets.csv"
    predictions.write_text("id,Target\n" + "".join(f"{i},{s:.8g}\n" for i, s in zip(ids, scores)))
    targets.write_text("id,Target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, labels)))
    return {
        "metrics": {"auroc": float(roc_auc_score(labels, np.round(scores, 8)))},
        "predictions_file": str(predictions), "targets_file": str(targets),
        "timings": {"fit": 0.0}, "config": {"toy": True}, "mode": mode,
        "split_fingerprints": {"test": dataset.split_fingerprint("test", partition="classification")},
    }


if TOY_TASK not in TASKS:
    TASKS.add(TOY_TASK, TaskInfo(name=TOY_TASK, title="toy", datasets=(TOY_DATASET,), partition="classification",
                                 version=1, modes=("cached", "paper"), run=toy_task))
if TOY_TASK not in PAIRED_SCORERS:
    PAIRED_SCORERS.add(TOY_TASK, ClassificationPairs())


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
    Manifest(dataset=TOY_DATASET, protocol_version=PROTOCOL_VERSION, package_version="test", created="2026-01-01T00:00:00+00:00",
             source_files=[], counts={s: len(m) for s, m in splits.items()}, image_size=32, image_mode="letterbox",
             partitions=["classification"], fractions={"1": list(range(draws)), "10": list(range(draws))}, demo=demo).write(root)
    return data_dir


def write_toy_board(folder: Path, name: str = "toy-board", demo: bool = True, seeds: tuple[int, ...] = (0,),
                    draws: tuple[int, ...] = (0, 1)) -> Path:
    board = folder / name
    board.mkdir(parents=True)
    protocol = {
        "board": name, "protocol_version": PROTOCOL_VERSION, "title": "toy board", "description": "tests",
        "demo": demo, "default_mode": "cached", "fractions": [1, 10, 100], "seeds": list(seeds), "draws": list(draws),
        "tasks": {TOY_TASK: {TOY_DATASET: {"partition": "classification", "metric": "auroc", "label": "Toy AUROC"}}},
        "comparison": {"correction": "holm", "alpha": 0.05, "bootstrap_resamples": 200, "bootstrap_seed": 0},
        "task_versions": {TOY_TASK: 1},
        "test_set_sources": {TOY_DATASET: ["rsna", "nih-chestxray14"]}, "source_aliases": {"nih": "nih-chestxray14"},
    }
    (board / "protocol.json").write_text(json.dumps(protocol, indent=2))
    return board
