"""The zero-shot protocol as data: what a cell encodes and how, in one place.

No head is trained: the test images and the class prompts (``prompts.py``) are encoded once by
the backbone's image encoder and text tower (``benchmark.backbones.text``) and compared in the
space the model was trained to align them in. Images: the prepared letterboxed square, centre
crop of 224/256 of its side (the reference's evaluation crop), resized to the model's own input
size where it differs (bilinear, ``align_corners=True``), normalised with the backbone's
preprocessing; the same crop rule on smaller demo images.

Test sets (:data:`PARTITIONS`): the classification test split of RSNA and COVIDx, and for
CheXpert the reference's 5×200 hold-out (partition ``holdout_5x200``: 200 frontal training
images positive for exactly one of its five competition findings, PROTOCOL.md 3.2), the
zero-shot set of GLoRIA and later vision-language models.

Task version changelog (bump on any change that can move a number):
  1: first version: prompts version 1, centre crop 224/256, the model's input size, cosine
     similarity to the normalised mean prompt embedding per class.
  2: CheXpert 5×200 (prompts version 2: the five findings; accuracy and macro-F1). RSNA and
     COVIDx unchanged: same prompts, test splits, scores and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from benchmark.data.datasets.chexpert import HOLDOUT_PARTITION
from benchmark.heads.joint import Geometry, backbone_geometry, check_untrained_protocol, untrained_cost
from tasks.registry import EPOCHS_OVERRIDE
from tasks.zeroshot.prompts import PROMPTS_VERSION

if TYPE_CHECKING:
    from benchmark.backbones import LoadedBackbone

TASK_VERSION = 2
HEADS = ("prompts",)  # the class prompts through the text tower take the place of a trained head
MODES = ("direct",)  # scores read directly off the joint space: no training, no feature cache
# dataset -> the prepared partition whose test split it is scored on (benchmark/data/prepared.py)
PARTITIONS = {"chexpert": HOLDOUT_PARTITION, "rsna": "classification", "covidx": "classification"}


@dataclass(frozen=True)
class ZeroShotProtocol:
    task_version: int = TASK_VERSION
    prompts_version: int = PROMPTS_VERSION
    max_epochs: int = 0  # the board's epoch-budget key: zero-shot trains nothing, so 0 is the only value
    encode_batch_size: int = 64

    def __post_init__(self) -> None:
        check_untrained_protocol("zero-shot classification", EPOCHS_OVERRIDE, self.max_epochs, self.encode_batch_size)


PROTOCOL = ZeroShotProtocol()
BOARD_OVERRIDES = tuple(f.name for f in fields(ZeroShotProtocol) if f.name not in ("task_version", "prompts_version"))
COST = untrained_cost(PROTOCOL.encode_batch_size)  # each test image through the encoder once


def with_overrides(**changes: Any) -> ZeroShotProtocol:
    return replace(PROTOCOL, **changes)


def resolved_config(protocol: ZeroShotProtocol, geometry: Geometry, extra: dict) -> dict:
    return {**asdict(protocol), "geometry": asdict(geometry), **extra}


def encoder_input_size(backbone: LoadedBackbone, cache_size: int, head: str, overrides: Mapping[str, Any]) -> int:  # noqa: ARG001
    """The side a zero-shot cell feeds ``backbone``'s encoder on images prepared at ``cache_size`` px (the task's
    ``encoder_input``: ``run --dry-run`` times the encoder there): the adapter's own geometry,
    :func:`benchmark.heads.joint.backbone_geometry`; no head or board override changes it."""
    return backbone_geometry(backbone, cache_size).encoder_input_size
