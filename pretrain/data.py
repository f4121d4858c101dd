"""Image-report pairs of a prepared MIMIC-CXR dataset (partition ``pretraining``), read from the
prepared image cache (PROTOCOL.md 11.1-11.3).

One pair per frontal image: the image and its study's report caption (:func:`pretrain.text.caption`);
studies whose caption has fewer than three tokens are dropped and counted. Images are cropped
as the reference crops its 256-pixel letterbox (RandomCrop 224 for training, CenterCrop 224 for
validation; the crop scales with the cache size, :func:`crop_geometry`), scaled to [0, 1], normalised with mean = std = 0.5 and repeated to three channels on the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmark.data.prepared import DataError, PreparedDataset
from pretrain.text import EncodedCaptions, caption

PARTITION = "pretraining"
MEAN = STD = 0.5  # MGCA normalisation (benchmark.backbones.preprocessing.MGCA_PREPROCESSING)
REFERENCE_CACHE, REFERENCE_CROP = 256, 224  # resize_img(imsize=256), RandomCrop / CenterCrop 224


def crop_geometry(cache_size: int, patch_size: int | None, input_size_at_224: int | None) -> tuple[int, int]:
    """(crop, encoder input) in pixels: the reference's 224 of 256 scaled to the cache, rounded
    down to a multiple of the ViT patch; the encoder input scales the same way (ResNet-50: 299 at
    a 224 crop). The linear probe crops by the same rule (tasks.classification.protocol), so a
    pretrained encoder is evaluated at the resolution it was trained at."""
    crop = round(cache_size * REFERENCE_CROP / REFERENCE_CACHE)
    if patch_size:
        crop -= crop % patch_size
    if crop < 1:
        raise DataError(f"cache size {cache_size} is too small for a {patch_size}-pixel patch")
    encoder_input = round(crop * input_size_at_224 / REFERENCE_CROP) if input_size_at_224 else crop
    if encoder_input < (patch_size or 8):
        raise DataError(f"a {crop}-pixel crop at encoder_input_size = {input_size_at_224} gives {encoder_input}-pixel "
                        f"encoder inputs, too small for the encoder ({patch_size or 8} at least)")
    return crop, encoder_input


@dataclass
class Pairs:
    """The usable pairs of one split, in split order."""

    image_ids: list[str]
    studies: list[str]
    captions: list[str]
    dropped_studies: int  # studies whose caption is too short (the reference drops them too)


def read_pairs(dataset: PreparedDataset, split: str) -> Pairs:
    """Pairs of ``split`` (train / val / test of the ``pretraining`` partition)."""
    ids = dataset.split_ids(split, partition=PARTITION)
    records = dataset.records
    missing = [item for item in ids if item not in records.index]
    if missing:
        raise DataError(f"{dataset.root}/records.csv: {len(missing)} IDs of split {split} missing (e.g. {missing[0]!r})")
    rows = records.loc[ids]
    captions = {study: caption(text) for study, text in zip(rows["study"], rows["text"])}
    keep = [captions[study] is not None for study in rows["study"]]
    kept = rows[keep]
    return Pairs(
        image_ids=list(kept.index), studies=[str(s) for s in kept["study"]],
        captions=[captions[study] for study in kept["study"]],
        dropped_studies=sum(value is None for value in captions.values()),
    )


class PairDataset(Dataset):
    """``(image uint8 [crop, crop], input_ids, attention_mask, word_slots)`` per pair."""

    def __init__(self, dataset: PreparedDataset, pairs: Pairs, encoded: EncodedCaptions, crop: int, train: bool) -> None:
        size = dataset.manifest.image_size
        if crop > size:
            raise DataError(f"{dataset.root}: crop {crop} is larger than the cached images ({size} px)")
        self.dataset, self.pairs, self.encoded, self.crop, self.train, self.size = dataset, pairs, encoded, crop, train, size

    def __len__(self) -> int:
        return len(self.pairs.image_ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        image = self.dataset.image(self.pairs.image_ids[index])
        margin = self.size - self.crop
        if self.train:  # RandomCrop
            top, left = (int(v) for v in torch.randint(0, margin + 1, (2,)))
        else:  # CenterCrop (torchvision rounds the offset)
            top = left = int(round(margin / 2))
        image = np.ascontiguousarray(image[top: top + self.crop, left: left + self.crop])
        return {
            "images": torch.from_numpy(image),
            "input_ids": torch.from_numpy(self.encoded.input_ids[index]),
            "attention_mask": torch.from_numpy(self.encoded.attention_mask[index]),
            "word_slots": torch.from_numpy(self.encoded.word_slots[index]),
            "index": torch.tensor(index),
        }


def to_encoder_input(images: torch.Tensor, input_size: int) -> torch.Tensor:
    """uint8 [B, H, W] crops → normalised float [B, 3, S, S], upsampled (bilinear, align_corners)
    when ``input_size`` differs from the crop (ResNet-50, encoder.py L114-116)."""
    batch = ((images.float() / 255 - MEAN) / STD).unsqueeze(1).expand(-1, 3, -1, -1)
    if input_size != images.shape[-1]:
        batch = F.interpolate(batch, size=(input_size, input_size), mode="bilinear", align_corners=True)
    return batch
