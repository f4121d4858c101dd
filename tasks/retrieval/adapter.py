"""The retrieval task adapter: frozen image encoder + its text tower → an image × text similarity matrix.

One mode, ``direct``: the dataset's test images (:data:`ITEMS` says which, and which texts they
are compared with, per dataset: ``protocol.py``) are encoded once into the joint image-text space
(``benchmark.heads.joint``), the texts through the text tower, and the prediction file holds every
cosine similarity; the targets file says which image and text are relevant to each other. Both
formats, and the metrics, are ``benchmark/scoring/retrieval.py``'s. Nothing is trained; no training
or validation image is read.

A backbone without a usable text tower gets no cell: the task declares
:func:`benchmark.backbones.text.text_tower_requirement`, asked when the grid is planned.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmark.backbones import LoadedBackbone
from benchmark.backbones.safe_pickle import torch_load_safely
from benchmark.checkpoint_files import PICKLE_SUFFIXES, weights_file
from benchmark.data.datasets.chexpert import COMPETITION_TASKS
from benchmark.data.prepared import DataError, PreparedDataset, ids_fingerprint
from benchmark.heads.joint import (
    backbone_geometry,
    check_untrained_cell,
    encode_images,
    encode_texts,
    require_text_tower,
    tower_summary,
)
from benchmark.provenance import utc_now
from benchmark.registry import Registry
from benchmark.scoring.retrieval import RETRIEVAL_SCHEMES, write_predictions, write_targets
from tasks.registry import TaskCell, TaskResult
from tasks.retrieval.protocol import (
    FRONTAL_PREFERENCE,
    MIMIC_TEST_SOURCE,
    MODES,
    PARTITIONS,
    RetrievalProtocol,
    resolved_config,
    with_overrides,
)
from tasks.retrieval.texts import TEXTS, text_pool

PREDICTIONS_FILE = "predictions.npz"
TARGETS_FILE = "targets.csv"
_WORD = re.compile(r"\w+")


@dataclass
class RetrievalItems:
    """What one dataset's cell compares: query images and texts, each with its relevance group."""

    image_ids: list[str]
    image_groups: list[str]
    text_ids: list[str]
    texts: list[str]
    text_groups: list[str]
    config: dict[str, Any] = field(default_factory=dict)  # facts of the selection, for the record
    notes: list[str] = field(default_factory=list)


# (prepared dataset, its test split's IDs, the cell's backbone) -> what the cell compares
ItemsBuilder = Callable[[PreparedDataset, list[str], LoadedBackbone], RetrievalItems]
ITEMS: Registry[ItemsBuilder] = Registry("retrieval dataset")


def require_columns(dataset: PreparedDataset, columns: tuple[str, ...], ids: list[str]) -> pd.DataFrame:
    """records.csv rows of ``ids`` with ``columns``; a missing column or ID is an error naming the file."""
    records = dataset.records
    missing = [column for column in columns if column not in records.columns]
    if missing:
        raise DataError(f"{dataset.root}/records.csv: column(s) {missing} missing; re-run `python -m benchmark prepare {dataset.name}`")
    absent = [item for item in ids if item not in records.index]
    if absent:
        raise DataError(f"{dataset.root}/records.csv: {len(absent)} test ID(s) missing, e.g. {absent[:3]}")
    return records.loc[ids, list(columns)]


def report_words(text: str) -> str:
    """A report's words, lowercased, punctuation dropped: reports with the same words are one report."""
    return " ".join(_WORD.findall(text.lower()))


def one_image_per_study(ids: list[str], studies: list[str], views: list[str], where: str) -> list[int]:
    """Positions in ``ids`` of each study's query image (its first PA image, else its first AP one), in split order."""
    preference = {view: rank for rank, view in enumerate(FRONTAL_PREFERENCE)}
    chosen: dict[str, tuple[int, int]] = {}
    for position, (image, study, view) in enumerate(zip(ids, studies, views)):
        if view not in preference:
            raise DataError(f"{where}: test image {image!r} has view {view!r}; the prepared MIMIC-CXR split holds "
                            f"frontal views {list(FRONTAL_PREFERENCE)} only")
        key = (preference[view], position)
        if study not in chosen or key < chosen[study]:
            chosen[study] = key
    return sorted(position for _, position in chosen.values())


def report_groups(studies: list[str], texts: list[str]) -> list[str]:
    """Per study, its relevance group: the smallest study ID among the studies whose reports have the same words."""
    first: dict[str, str] = {}
    for study, text in sorted(zip(studies, texts)):
        first.setdefault(report_words(text), study)
    return [first[report_words(text)] for text in texts]


@ITEMS.register("mimic")
def mimic_items(dataset: PreparedDataset, ids: list[str], backbone: LoadedBackbone) -> RetrievalItems:
    """One frontal image per test study against the study reports (``protocol.py``)."""
    rows = require_columns(dataset, ("study", "view", "text"), ids)
    studies, views, texts = [str(s) for s in rows["study"]], [str(v) for v in rows["view"]], [str(t) for t in rows["text"]]
    kept = one_image_per_study(ids, studies, views, f"{dataset.root}/records.csv")
    empty = [studies[k] for k in kept if not report_words(texts[k])]
    if empty:
        raise DataError(f"{dataset.root}/records.csv: {len(empty)} test study(ies) without report words, e.g. {empty[:3]}; "
                        f"re-run `python -m benchmark prepare mimic`")
    study_ids, reports = [studies[k] for k in kept], [texts[k] for k in kept]
    groups = report_groups(study_ids, reports)
    sharing = sum(count for count in pd.Series(groups).value_counts() if count > 1)
    left_out = len(ids) - len(kept)
    return RetrievalItems(
        image_ids=[ids[k] for k in kept], image_groups=groups, text_ids=study_ids, texts=reports, text_groups=groups,
        config={"studies": len(kept), "frontal_images_left_out": left_out, "report_groups": len(set(groups)),
                "studies_sharing_their_report": sharing, "frontal_preference": list(FRONTAL_PREFERENCE)},
        notes=[f"MIMIC-CXR image↔report: {len(kept)} test studies, one frontal image each ({'/'.join(FRONTAL_PREFERENCE)} "
               f"first; {left_out} further frontal image(s) left out); {sharing} studies share their report's words with "
               f"another study (one relevance group each)", *pretraining_notes(backbone, dataset)],
    )


@ITEMS.register("chexpert")
def chexpert_items(dataset: PreparedDataset, ids: list[str], backbone: LoadedBackbone) -> RetrievalItems:
    """Each 5×200 image (its one positive competition finding) against the text pool (``texts.py``)."""
    del backbone
    if tuple(TEXTS) != COMPETITION_TASKS:
        raise DataError(f"tasks/retrieval/texts.py: the text pool's classes {list(TEXTS)} are not the competition tasks {list(COMPETITION_TASKS)}")
    rows = require_columns(dataset, COMPETITION_TASKS, ids)
    values = rows.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    one_hot = np.isin(values, (0, 1)).all(axis=1) & ((values == 1).sum(axis=1) == 1)
    wrong = np.flatnonzero(~one_hot)
    if len(wrong):
        row = int(wrong[0])
        raise DataError(f"{dataset.root}/records.csv: 5x200 image {ids[row]!r} has labels {values[row].tolist()} for "
                        f"{list(COMPETITION_TASKS)}; exactly one of them must be 1 and the others 0")
    text_ids, texts, text_groups = text_pool()
    image_groups = [COMPETITION_TASKS[k] for k in values.argmax(axis=1)]
    return RetrievalItems(
        image_ids=list(ids), image_groups=image_groups, text_ids=text_ids, texts=texts, text_groups=text_groups,
        config={"texts": dict(zip(text_ids, texts)),
                "images_per_class": {name: image_groups.count(name) for name in COMPETITION_TASKS}},
    )


def exported_pairs(backbone: LoadedBackbone) -> dict[str, str] | None:
    """The fingerprints of the pairs a ``python -m pretrain`` checkpoint trained and validated on, or None
    when its checkpoint records none (another source, random weights, a released checkpoint)."""
    if backbone.load_report is None:
        return None
    file = weights_file(Path(backbone.load_report.source))
    if file.suffix not in PICKLE_SUFFIXES:
        return None
    content = torch_load_safely(file)
    params = content.get("hyper_parameters") if isinstance(content, dict) else None
    data = params.get("data") if isinstance(params, dict) else None
    if not isinstance(data, dict) or not all(isinstance(data.get(key), str) for key in ("train_fingerprint", "val_fingerprint")):
        return None
    return {"train": data["train_fingerprint"], "val": data["val_fingerprint"]}


def pretraining_notes(backbone: LoadedBackbone, dataset: PreparedDataset) -> list[str]:
    """What the record says of the backbone's pretraining against this test split: the rule the board marks
    overlaps by (``protocol.py``), the declaration, and what the checkpoint itself records."""
    declared = list(backbone.spec.pretraining_data)
    rule = (f"pretraining data declared {declared or 'none'}. Overlap rule of MIMIC-CXR retrieval: 'mimic-cxr' means "
            f"the official train/validate splits, disjoint from this test split by patient (the standard setting), and is "
            f"not an overlap; a model whose training or checkpoint selection read the test split declares "
            f"{MIMIC_TEST_SOURCE!r} and the board marks its cells (test_set_sources.mimic)")
    pairs = exported_pairs(backbone)
    if pairs is None:
        return [rule + ". The checkpoint does not record which pairs it was pretrained on: the mark rests on the declaration"]
    from pretrain.data import read_pairs  # the one home of which pairs a pretraining run reads

    here = {split: ids_fingerprint(read_pairs(dataset, split).image_ids) for split in ("train", "val")}
    if here == pairs:
        return [rule + f". The checkpoint (python -m pretrain) trained on this prepared dataset's train pairs and validated "
                       f"on its val pairs (fingerprints {pairs['train'][:12]}, {pairs['val'][:12]}): it never read the test split"]
    return [rule + f". The checkpoint (python -m pretrain) was pretrained on other pairs than this prepared dataset's train "
                   f"and val splits (train fingerprint {pairs['train'][:12]}, here {here['train'][:12]}): which images it "
                   f"read cannot be checked here"]


def run_retrieval(cell: TaskCell) -> TaskResult:
    """The task adapter: the similarity matrix of ``cell``'s test images and texts."""
    return retrieval(cell.backbone, cell.dataset, cell.fraction, cell.mode, cell.work_dir, with_overrides(**cell.overrides),
                     cell.device, cell.partition)


def retrieval(backbone: LoadedBackbone, dataset: PreparedDataset, fraction: int, mode: str, work_dir: Path,
              protocol: RetrievalProtocol, device: str | None = None, partition: str | None = None) -> TaskResult:
    """Similarities of ``backbone``'s image and text embeddings on ``dataset``'s retrieval test set; writes
    predictions.npz and targets.csv."""
    check_untrained_cell("retrieval", mode, MODES, fraction)
    started_at, started = utc_now(), time.perf_counter()
    tower = require_text_tower(backbone, "image-text retrieval")
    build, scheme = ITEMS.get(dataset.name), RETRIEVAL_SCHEMES.get(dataset.name)
    partition = partition or PARTITIONS[dataset.name]
    ids = dataset.split_ids("test", partition=partition)
    items = build(dataset, ids, backbone)
    run_device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    tower.to(run_device)
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    geometry = backbone_geometry(backbone, dataset.manifest.image_size)
    with torch.no_grad():
        clock = time.perf_counter()
        images = encode_images(tower, dataset, items.image_ids, geometry, backbone, protocol.encode_batch_size, run_device)
        image_seconds, clock = time.perf_counter() - clock, time.perf_counter()
        texts = encode_texts(tower, items.texts, protocol.encode_batch_size)
        text_seconds = time.perf_counter() - clock
        similarity = (images @ texts.T).float().cpu().numpy()
    predictions = write_predictions(work_dir / PREDICTIONS_FILE, items.image_ids, items.text_ids, similarity)
    targets = write_targets(work_dir / TARGETS_FILE, items.image_ids, items.image_groups, items.text_ids, items.text_groups)
    notes = [f"retrieval: no head trained; cosine similarity of image and text embeddings in the model's joint space "
             f"(task version {protocol.task_version}, texts version {protocol.texts_version})", *items.notes, *tower.notes]
    config = resolved_config(protocol, {
        "partition": partition, "geometry": asdict(geometry),
        "preprocessing": backbone.preprocessing.to_dict(), "device": str(run_device),
        "n_images": {"test": len(ids)}, "queries": {"images": len(items.image_ids), "texts": len(items.text_ids)},
        dataset.name: items.config, "text_tower": tower_summary(tower), "primary_metric": scheme.primary,
        "started": started_at,
    })
    return TaskResult(
        predictions_file=predictions, targets_file=targets,
        split_fingerprints={"test": dataset.split_fingerprint("test", partition=partition)},
        config=config,
        timings={"encode_seconds": image_seconds, "text_seconds": text_seconds,
                 "total_seconds": time.perf_counter() - started, "images_encoded": len(items.image_ids),
                 "texts_encoded": len(items.texts)},
        notes=notes,
    )
