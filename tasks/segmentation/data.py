"""Images and masks of a prepared dataset as mmseg samples (PROTOCOL.md 6.4 and 4.6).

An item is the cached grayscale image and its mask (``masks/<id>.png``) through the reference's
albumentations pipeline, applied to both together: ``ShiftScaleRotate(shift 0, scale 0.1,
rotate 10°, p 0.5, constant border)`` for training only, then ``Resize`` to the input size
(image bilinear, mask by area, so edge pixels of the target become fractional as in the
reference). The image is repeated to three channels (the reference reads grayscale as RGB);
normalisation (mean = std = 0.5) is the model's data pre-processor.

Augmentation is a pure function of (run seed, epoch, image index): the training sampler yields
``(index, epoch)`` keys (:class:`EpochSeededSampler`), so the same image gets the same
transformation in any worker, any number of processes and after a resume.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch
from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample
from torch.utils.data import Dataset

from benchmark.data.prepared import DataError, PreparedDataset

ItemKey = int | tuple[int, int]  # index, or (index, epoch) from EpochSeededSampler
METAINFO = {"classes": ("background", "foreground")}  # one sigmoid channel: foreground probability


def read_mask(dataset: PreparedDataset, image_id: str) -> np.ndarray:
    """``masks/<id>.png`` of a prepared dataset as float32 {0, 1} at the cache size."""
    path = dataset.root / "masks" / f"{image_id}.png"
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise DataError(f"{path}: mask missing or unreadable; re-run `python -m benchmark prepare {dataset.name}`")
    return (mask > 127).astype(np.float32)


def build_transform(input_size: int, augmentation: dict | None) -> A.Compose:
    """The reference's pipeline without normalisation: [ShiftScaleRotate] + Resize."""
    steps = []
    if augmentation:
        options = dict(augmentation)
        name = options.pop("type")
        with warnings.catch_warnings():  # albumentations 2 suggests Affine; the reference names ShiftScaleRotate
            warnings.filterwarnings("ignore", message=".*is a special case of Affine.*")
            steps.append(getattr(A, name)(**options))
    steps.append(A.Resize(input_size, input_size, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_AREA))
    return A.Compose(steps)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


def segmentation_sample(mask: np.ndarray, index: int, image_id: str) -> SegDataSample:
    """An mmseg sample holding the (possibly fractional) target mask ``[1, S, S]``."""
    shape = mask.shape
    sample = SegDataSample(metainfo=dict(index=index, image_id=image_id, img_shape=shape, ori_shape=shape, pad_shape=shape))
    sample.gt_sem_seg = PixelData(data=torch.from_numpy(np.ascontiguousarray(mask))[None])
    return sample


class SegmentationImages(Dataset):
    """Images and targets of one split, as ``{"inputs": uint8 [3, S, S], "data_samples": SegDataSample}``."""

    def __init__(self, dataset: PreparedDataset, ids: Sequence[str], input_size: int,
                 augmentation: dict | None = None, seed: int = 0) -> None:
        self.dataset, self.ids, self.input_size, self.seed = dataset, list(ids), input_size, seed
        self.augmented = bool(augmentation)
        self.transform = build_transform(input_size, augmentation)
        self.metainfo = METAINFO

    def __len__(self) -> int:
        return len(self.ids)

    def image_and_mask(self, key: ItemKey) -> tuple[int, np.ndarray, np.ndarray]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        image_id = self.ids[index]
        if self.augmented:
            self.transform.set_random_seed(item_seed(self.seed, epoch, index))
        out = self.transform(image=self.dataset.image(image_id), mask=read_mask(self.dataset, image_id))
        return index, out["image"], out["mask"]

    def __getitem__(self, key: ItemKey) -> dict:
        index, image, mask = self.image_and_mask(key)
        inputs = torch.from_numpy(np.array(image))[None].repeat(3, 1, 1)  # a copy: the cache is read-only
        return {"inputs": inputs, "data_samples": segmentation_sample(mask, index, self.ids[index])}


class CachedFeatureItems(Dataset):
    """The ``cached`` mode's items: the encoder's stored outputs of each image instead of the image."""

    def __init__(self, images: SegmentationImages, levels: Sequence[np.ndarray]) -> None:
        if images.augmented:
            raise ValueError("cached features are computed on un-augmented images; the targets must match")
        if any(len(level) != len(images) for level in levels):
            raise DataError(f"cached features hold {[len(level) for level in levels]} rows for {len(images)} images")
        self.images, self.levels = images, list(levels)
        self.metainfo = METAINFO

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: ItemKey) -> dict:
        index = key[0] if isinstance(key, tuple) else key
        _, _, mask = self.images.image_and_mask(index)
        return {"inputs": [torch.from_numpy(np.array(level[index])) for level in self.levels],
                "data_samples": segmentation_sample(mask, index, self.images.ids[index])}


@DATA_SAMPLERS.register_module()
class EpochSeededSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` (seeded shuffle, rank shards) yielding ``(index, epoch)``."""

    def __iter__(self):  # noqa: ANN204 - an iterator of keys, as DefaultSampler's
        return ((index, self.epoch) for index in super().__iter__())
