"""The toy's test data and its board entry: a prepared ``rsna`` folder with a classification partition,
and a board whose protocol.json names the toy task with its scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmark.data.prepared import PREPARATION_VERSION, Manifest, split_file_name, write_ids

N_TEST = 60
TOY_TASK = "toy"
TOY_SCORER = "toy"  # benchmark.scoring.SCORERS key of toy_task/scorer.py
TOY_DATASET = "rsna"  # a prepared folder named as the RSNA dataset, with its classification files (id,Target)


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
    """A board folder whose protocol.json evaluates the toy task (its entry pins the toy's version and scorer)."""
    board = folder / name
    board.mkdir(parents=True)
    protocol = {
        "board": name, "protocol_version": "toy-v1", "preparation_version": PREPARATION_VERSION, "title": "toy board",
        "description": "tests", "demo": demo, "fractions": [1, 10, 100], "seeds": list(seeds), "draws": list(draws),
        "tasks": {TOY_TASK: {"version": 1, "scorer": TOY_SCORER, "modes": ["cached", "paper"], "default_mode": "cached",
                             "heads": ["linear", "mlp"], "datasets": {TOY_DATASET: {"label": "Toy AUROC"}}}},
        "comparison": {"correction": "holm", "alpha": 0.05, "bootstrap_resamples": 200, "bootstrap_seed": 0},
        "test_set_sources": {TOY_DATASET: ["rsna", "nih-chestxray14"]}, "source_aliases": {"nih": "nih-chestxray14"},
    }
    (board / "protocol.json").write_text(json.dumps(protocol, indent=2))
    return board
