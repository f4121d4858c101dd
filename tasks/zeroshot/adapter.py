"""The zero-shot task adapter: frozen image encoder + its text tower + class prompts → class scores.

One mode, ``direct``: the test images (the test split of the dataset's partition,
``protocol.PARTITIONS``) are encoded once with the backbone's preprocessing (``protocol.py``)
into the joint image-text space, each prediction column's prompts
(``prompts.py``) through the text tower, and each image gets one score per column: cosine
similarity to the class embedding (the normalised mean of its prompts' embeddings), minus the
negative class's for a binary column. The files are the classification task's formats, scored
by ``benchmark/scoring/zeroshot.py``. Nothing is trained; no training or validation image is read.

A backbone without a usable text tower gets no cell: the task declares
``benchmark.backbones.text.text_tower_requirement`` as its requirement, asked when the grid is planned.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from benchmark.backbones import LoadedBackbone
from benchmark.backbones.text import TextTower
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.heads.joint import backbone_geometry, check_untrained_cell, encode_images, require_text_tower, tower_summary
from benchmark.provenance import utc_now
from benchmark.scoring.classification import ClassificationScheme, labels_to_matrix, write_predictions, write_targets
from benchmark.scoring.zeroshot import ZERO_SHOT_SCHEMES
from tasks.registry import TaskCell, TaskResult
from tasks.zeroshot.prompts import PROMPTS, ColumnPrompts
from tasks.zeroshot.protocol import MODES, PARTITIONS, ZeroShotProtocol, resolved_config, with_overrides

PREDICTIONS_FILE = "predictions.csv"
TARGETS_FILE = "targets.csv"


def label_matrix(dataset: PreparedDataset, ids: list[str], scheme: ClassificationScheme) -> np.ndarray:
    """[n, C] label matrix of the test ``ids`` from records.csv, as the scheme reads it: a class index
    (COVIDx's ``label``), 0/1 columns (RSNA), or for a multi-class scheme with one column per class
    (CheXpert 5×200: its five competition labels) 0/1 columns with exactly one 1 per image."""
    records = dataset.records
    missing = [column for column in scheme.label_columns if column not in records.columns]
    if missing:
        raise DataError(f"{dataset.root}/records.csv: label column(s) {missing} missing; re-run `python -m benchmark prepare {dataset.name}`")
    values = records.loc[ids, list(scheme.label_columns)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    one_hot = scheme.target_format == "multiclass" and len(scheme.label_columns) == len(scheme.classes) > 1
    allowed = np.arange(len(scheme.classes)) if scheme.target_format == "multiclass" and not one_hot else np.array([0, 1])
    if not np.isin(values, allowed).all():
        row = int(np.argwhere(~np.isin(values, allowed))[0][0])
        raise DataError(f"{dataset.root}/records.csv: id {ids[row]!r} has label(s) {values[row].tolist()}; expected {allowed.tolist()}")
    if one_hot:
        if (values.sum(axis=1) != 1).any():
            row = int(np.flatnonzero(values.sum(axis=1) != 1)[0])
            raise DataError(f"{dataset.root}/records.csv: id {ids[row]!r} has labels {values[row].tolist()} in "
                            f"{list(scheme.label_columns)}; a {dataset.name} zero-shot test image is positive for exactly one")
        values = values.argmax(axis=1)
    return labels_to_matrix(values, scheme)


def class_embedding(tower: TextTower, prompts: tuple[str, ...]) -> torch.Tensor:
    """(D,) unit-norm mean of the prompts' unit embeddings (CLIP's prompt ensembling)."""
    return F.normalize(tower.text_features(list(prompts)).mean(dim=0), dim=-1)


def column_scores(image_embeddings: torch.Tensor, tower: TextTower, columns: tuple[ColumnPrompts, ...]) -> np.ndarray:
    """[n, C] scores: per column, cosine similarity to its class, minus the negative class's where it has one."""
    scores = []
    for column in columns:
        score = image_embeddings @ class_embedding(tower, column.positive)
        if column.negative:
            score = score - image_embeddings @ class_embedding(tower, column.negative)
        scores.append(score)
    return torch.stack(scores, dim=1).double().cpu().numpy()


def run_zeroshot(cell: TaskCell) -> TaskResult:
    """The task adapter: zero-shot class scores of ``cell``'s test split."""
    return zero_shot(cell.backbone, cell.dataset, cell.fraction, cell.mode, cell.work_dir, with_overrides(**cell.overrides),
                     cell.device)


def zero_shot(backbone: LoadedBackbone, dataset: PreparedDataset, fraction: int, mode: str, work_dir: Path,
              protocol: ZeroShotProtocol, device: str | None = None) -> TaskResult:
    """Zero-shot scores of ``backbone`` on ``dataset``'s test split; writes predictions.csv and targets.csv."""
    check_untrained_cell("zero-shot classification", mode, MODES, fraction)
    started_at, started = utc_now(), time.perf_counter()
    tower = require_text_tower(backbone, "zero-shot classification")
    scheme, columns = ZERO_SHOT_SCHEMES.get(dataset.name), PROMPTS[dataset.name]
    if tuple(column.column for column in columns) != scheme.classes:
        raise DataError(f"zero-shot prompts of {dataset.name} name columns {[c.column for c in columns]}, its scheme {list(scheme.classes)}")
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tower.to(run_device)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    partition = PARTITIONS[dataset.name]
    ids = dataset.split_ids("test", partition=partition)
    geometry = backbone_geometry(backbone, dataset.manifest.image_size)
    with torch.no_grad():
        encode_started = time.perf_counter()
        embeddings = encode_images(tower, dataset, ids, geometry, backbone, protocol.encode_batch_size, run_device)
        encode_seconds = time.perf_counter() - encode_started
        scores = column_scores(embeddings, tower, columns)
    predictions = write_predictions(work_dir / PREDICTIONS_FILE, ids, scores, scheme)
    targets = write_targets(work_dir / TARGETS_FILE, ids, label_matrix(dataset, ids, scheme), scheme)
    notes = [f"zero-shot: no head trained; class prompts version {protocol.prompts_version} (tasks/zeroshot/prompts.py)",
             *tower.notes]
    config = resolved_config(protocol, geometry, {
        "partition": partition, "preprocessing": backbone.preprocessing.to_dict(), "device": str(run_device),
        "n_images": {"test": len(ids)},
        "prompts": {column.column: {"positive": list(column.positive), "negative": list(column.negative)} for column in columns},
        "text_tower": tower_summary(tower),
        "primary_metric": scheme.primary, "started": started_at,
    })
    return TaskResult(
        predictions_file=predictions, targets_file=targets,
        split_fingerprints={"test": dataset.split_fingerprint("test", partition=partition)},
        config=config,
        timings={"encode_seconds": encode_seconds, "total_seconds": time.perf_counter() - started, "images_encoded": len(ids)},
        notes=notes,
    )
