"""Prepared images and texts into a vision-language model's joint space: what the tasks that compare
images with texts (zero-shot classification, image-text retrieval) share.

Nothing is trained: the backbone's text tower (``benchmark.backbones.text``) gives unit-norm image
and text embeddings in the space the model was trained to align them in. Images are fed as the
reference evaluates: the prepared letterboxed square, centre crop of 224/256 of its side, resized to
the model's own input size where it differs (bilinear, ``align_corners=True``), normalised with the
backbone's preprocessing (:func:`resolve_geometry`, :func:`encode_images`). Such a task trains
nothing: :func:`check_untrained_cell` and :func:`check_untrained_protocol` hold its rules, :func:`untrained_cost`
its cost. A backbone without a usable text tower gets no cell of such a task: the task declares
``benchmark.backbones.text:text_tower_requirement`` as its requirement (``TaskInfo.requires``), and
:func:`require_text_tower` loads the tower in the cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.backbones import LoadedBackbone
from benchmark.backbones.preprocessing import normalise
from benchmark.backbones.text import TextTower, TextTowerError, load_text_tower
from benchmark.costs import TaskCost
from benchmark.data.prepared import PreparedDataset
from benchmark.heads.features import index_batches

REFERENCE_CACHE_SIZE = 256
REFERENCE_CROP_SIZE = 224


def check_untrained_cell(task: str, mode: str, modes: Sequence[str], fraction: int) -> None:
    """A cell of a task that trains nothing runs one of its ``modes`` at label fraction 100 (it reads no training label)."""
    if mode not in modes:
        raise ValueError(f"unknown mode {mode!r}; one of {tuple(modes)}")
    if fraction != 100:
        raise ValueError(f"{task} uses no training labels: its only label fraction is 100, not {fraction}")


def check_untrained_protocol(task: str, epochs_key: str, max_epochs: int, encode_batch_size: int) -> None:
    """The protocol of a task that trains nothing: an epoch budget (the board's ``epochs_key``) of 0, a positive batch."""
    if max_epochs != 0:
        raise ValueError(f"{task} trains no head: {epochs_key} must be 0, not {max_epochs}")
    if encode_batch_size < 1:
        raise ValueError(f"encode_batch_size must be at least 1, not {encode_batch_size}")


def untrained_cost(encode_batch_size: int) -> TaskCost:
    """Each test image through the encoder once, no training sample, no cache entry (a mode outside
    ``benchmark.costs.CACHED_MODES`` without ``paper_caches_eval``: the test images are its one pass). Text passes
    through the text tower are not counted: the cost model counts image-encoder passes."""
    return TaskCost(batch_size=encode_batch_size, max_epochs=0, head_cost=0.0, features="global", cache_dtype_bytes=4)


def require_text_tower(backbone: LoadedBackbone, task: str) -> TextTower:
    """``backbone``'s text tower, loaded; a backbone without one is a :class:`TextTowerError` (``task`` needs one)."""
    tower = load_text_tower(backbone)
    if tower is None:
        raise TextTowerError(f"backbone {backbone.spec.name!r} has no text tower: {task} needs one")
    return tower


@dataclass(frozen=True)
class Geometry:
    cache_size: int
    crop_size: int
    encoder_input_size: int


def resolve_geometry(cache_size: int, input_size: int, fixed_size: bool, patch_size: int | None) -> Geometry:
    """Crop round(S·224/256); the encoder input is the model's input size scaled by the same ratio
    (exactly its input size when it takes no other), rounded down to a multiple of a ViT's patch."""
    crop = round(cache_size * REFERENCE_CROP_SIZE / REFERENCE_CACHE_SIZE)
    encoder_input = input_size if fixed_size else round(crop * input_size / REFERENCE_CROP_SIZE)
    if patch_size:
        encoder_input -= encoder_input % patch_size
    if crop < 1 or encoder_input < 1:
        raise ValueError(f"prepared images of {cache_size} px are too small for this model (input {input_size}, patch {patch_size})")
    return Geometry(cache_size, crop, encoder_input)


def backbone_geometry(backbone: LoadedBackbone, cache_size: int) -> Geometry:
    """:func:`resolve_geometry` of ``backbone`` on images prepared at ``cache_size`` px (a dataset's
    ``manifest.image_size`` when a cell runs; the task's ``encoder_input`` declaration asks it without a dataset)."""
    arch = backbone.model.arch
    return resolve_geometry(cache_size, backbone.preprocessing.input_size, backbone.preprocessing.fixed_size,
                            arch.feature_map_strides[0] if arch.family == "vit" else None)


def encode_images(tower: TextTower, dataset: PreparedDataset, ids: Sequence[str], geometry: Geometry, backbone: LoadedBackbone,
                  batch_size: int, device: torch.device) -> torch.Tensor:
    """(n, D) unit-norm image embeddings of ``ids``: centre crop, the model's input size, its normalisation."""
    rows = []
    for batch in index_batches(len(ids), batch_size):
        gray = torch.from_numpy(np.ascontiguousarray(dataset.images(list(ids[batch]))))
        offset = (geometry.cache_size - geometry.crop_size) // 2
        crop = gray[:, offset:offset + geometry.crop_size, offset:offset + geometry.crop_size]
        images = crop.unsqueeze(1).expand(-1, 3, -1, -1).to(device)
        pixels = normalise(images, backbone.preprocessing)
        if geometry.encoder_input_size != geometry.crop_size:
            size = (geometry.encoder_input_size, geometry.encoder_input_size)
            pixels = F.interpolate(pixels, size=size, mode="bilinear", align_corners=True)
        rows.append(tower.image_embeddings(pixels))
    return torch.cat(rows)


def encode_texts(tower: TextTower, texts: Sequence[str], batch_size: int) -> torch.Tensor:
    """(m, D) unit-norm embeddings of ``texts`` through the tower's own tokenizer, ``batch_size`` at a time."""
    return torch.cat([tower.text_features(list(texts[batch])) for batch in index_batches(len(texts), batch_size)])


def tower_summary(tower: TextTower) -> dict:
    """What a record's config says of the text tower: where its tokenizer came from, its dimension, its load report."""
    return {"tokenizer": tower.tokenizer_source, "embedding_dim": tower.embedding_dim,
            "load_report": {key: len(value) if isinstance(value, list) else value
                            for key, value in tower.load_report.to_dict().items()}}
