"""The retrieval protocol as data: what a cell compares and how, in one place.

No head is trained. The test images go through the backbone's image encoder and image projection,
the texts through its text tower (``benchmark.backbones.text``: the model's own tokenizer, text
encoder and projection), both unit-norm in the model's joint space; the prediction is their cosine
similarity matrix (``benchmark/scoring/retrieval.py`` gives the file format and the metrics).
Images are fed as zero-shot classification feeds them (``benchmark.heads.joint``: centre crop
224/256 of the prepared square, the model's input size, its normalisation).

MIMIC-CXR (partition ``pretraining``, split ``test``: the official test split, frontal images,
studies with report text; ``benchmark/data/datasets/mimic.py``), image ↔ report:

* **one image per study**: the study's first PA image in the split's order, else its first AP
  image (:data:`FRONTAL_PREFERENCE`). A study's report is one text; with one image per study both
  directions have one query per study, the gallery of the other side one item per study, and the
  bootstrap resamples studies. (Scoring every frontal image against its study's report would
  count studies with two frontal views twice in image→report and leave report→image with several
  relevant images per query.) The manifest's split order is the official metadata order.
* **report text**: ``records.csv``'s ``text``, the prepared ``impression + " " + findings`` (as
  pretraining reads it before its caption cleaning), handed to the tower as it is: the tower's
  own cleaning, tokenizer and token budget apply (MGCA: 112 tokens for the released checkpoints).
* **equal reports**: reports made of the same words (lowercased, punctuation ignored: the words of
  ``\\w+``) are one report for retrieval: their studies share a relevance group, so retrieving an
  identical report of another study is not an error, and a model is never asked to tell apart
  texts its tokenizer cannot. The count of such studies is in each record's config.
* **overlap**: a backbone's declared pretraining source ``mimic-cxr`` means MIMIC-CXR's official
  train and validate splits (disjoint from the test split by patient), the standard setting of
  image-report pretraining: it is not an overlap with this test set. A backbone whose training or
  checkpoint selection read the official test split declares ``mimic-cxr-test`` as well, and the
  board marks its MIMIC retrieval cells (``test_set_sources.mimic`` of the board protocol).
  MGCA's released checkpoints are declared so: the reference validates, stops early and keeps
  checkpoints on the official validate + test splits merged (PROTOCOL.md 11.1, 11.7). A declaration
  is the submitter's word; a checkpoint exported by ``python -m pretrain`` also records the
  fingerprints of the pairs it trained and validated on, which each record's notes check against
  the prepared dataset (:func:`tasks.retrieval.adapter.pretraining_notes`).

CheXpert 5×200 (partition ``holdout_5x200``, ``benchmark.data.datasets.chexpert.HOLDOUT_PARTITION``,
split ``test``: 200 frontal training images per competition finding with that finding alone, held
out of the classification training data), image → text: each image's class is its one positive competition label in ``records.csv``; the
texts are the versioned pool of ``texts.py``, relevant when of the image's class.

Task version changelog (bump on any change that can move a number):
  1: first version: texts version 1, one image per study (PA first), equal reports by their
     words, centre crop 224/256, the model's input size, cosine similarity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from benchmark.backbones.zoo import MIMIC_CXR_TEST
from benchmark.data.datasets.chexpert import HOLDOUT_PARTITION
from benchmark.data.datasets.mimic import PARTITION as MIMIC_PARTITION
from benchmark.heads.joint import backbone_geometry, check_untrained_protocol, untrained_cost
from tasks.registry import EPOCHS_OVERRIDE
from tasks.retrieval.texts import TEXTS_VERSION

if TYPE_CHECKING:
    from benchmark.backbones import LoadedBackbone

TASK_VERSION = 1
HEADS = ("similarity",)  # the text tower's embeddings take the place of a trained head
MODES = ("direct",)  # similarities read directly off the joint space: no training, no feature cache
# dataset -> the prepared partition whose test split it is scored on (benchmark/data/prepared.py)
PARTITIONS = {"mimic": MIMIC_PARTITION, "chexpert": HOLDOUT_PARTITION}
FRONTAL_PREFERENCE = ("PA", "AP")  # which frontal image of a study is its query image, in this order
MIMIC_TEST_SOURCE = MIMIC_CXR_TEST  # the pretraining source a backbone declares when it read MIMIC-CXR's test split


@dataclass(frozen=True)
class RetrievalProtocol:
    task_version: int = TASK_VERSION
    texts_version: int = TEXTS_VERSION
    max_epochs: int = 0  # the board's epoch-budget key: retrieval trains nothing, so 0 is the only value
    encode_batch_size: int = 64  # images, and texts, per forward pass

    def __post_init__(self) -> None:
        check_untrained_protocol("retrieval", EPOCHS_OVERRIDE, self.max_epochs, self.encode_batch_size)


PROTOCOL = RetrievalProtocol()
BOARD_OVERRIDES = tuple(f.name for f in fields(RetrievalProtocol) if f.name not in ("task_version", "texts_version"))
COST = untrained_cost(PROTOCOL.encode_batch_size)  # each test image through the encoder once; texts are not counted


def with_overrides(**changes: Any) -> RetrievalProtocol:
    return replace(PROTOCOL, **changes)


def resolved_config(protocol: RetrievalProtocol, extra: dict) -> dict:
    return {**asdict(protocol), **extra}


def encoder_input_size(backbone: LoadedBackbone, cache_size: int, head: str, overrides: Mapping[str, Any]) -> int:  # noqa: ARG001
    """The side a retrieval cell feeds ``backbone``'s encoder on images prepared at ``cache_size`` px (the task's
    ``encoder_input``: ``run --dry-run`` times the encoder there): the adapter's own geometry,
    :func:`benchmark.heads.joint.backbone_geometry`; no head or board override changes it."""
    return backbone_geometry(backbone, cache_size).encoder_input_size
