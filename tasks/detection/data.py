"""Detection splits: ground truth, the one mapping between original and network-input pixels, loaders.

A prepared detection dataset holds COCO boxes per split in original-image pixels
(``annotations/<split>.json``) and a uint8 image cache at the prepared size (``stretch``
geometry: the whole image resized to a square). The network sees the cache resized to the
input size; :class:`Split` maps boxes to input pixels for training (on copies: defect B9) and
predictions back to original pixels (:meth:`Split.detections`), nowhere else. Images without
boxes stay in every split (defect B1).

Items are ``{"inputs", "data_samples"}`` as mmengine's loops expect; ``inputs`` is the resized
uint8 image [3, s, s] (``paper`` mode) or the encoder's cached maps of the image (``cached`` mode).
mmdet sees the network input as the image itself (``ori_shape`` = ``img_shape``, scale factor
1), so its own rescaling is the identity.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from mmdet.structures import DetDataSample
from mmengine.dataset import DefaultSampler, pseudo_collate
from mmengine.structures import InstanceData
from torch.utils.data import DataLoader, Dataset, SequentialSampler

from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.scoring.detection import CocoTargets


@dataclass(frozen=True)
class Split:
    """One split's images (prepared IDs, in split order) with their COCO ground truth."""

    name: str
    ids: tuple[str, ...]
    coco: dict[str, Any]  # COCO ground truth of exactly these images, original pixels
    input_size: int

    @cached_property
    def images(self) -> list[dict[str, Any]]:
        """COCO image records in ``ids`` order."""
        by_name = {image["file_name"]: image for image in self.coco["images"]}
        return [by_name[item] for item in self.ids]

    @cached_property
    def labels(self) -> dict[int, int]:
        """COCO category id -> mmdet label (0-based, sorted ids)."""
        return {category["id"]: label for label, category in enumerate(sorted(self.coco["categories"], key=lambda c: c["id"]))}

    @cached_property
    def _boxes(self) -> dict[int, list[tuple[list[float], int]]]:
        boxes: dict[int, list] = {image["id"]: [] for image in self.coco["images"]}
        for annotation in self.coco["annotations"]:
            boxes[annotation["image_id"]].append((annotation["bbox"], annotation["category_id"]))
        return boxes

    def scale(self, index: int) -> np.ndarray:
        """(x, y, x, y) factors from original to input pixels of image ``index`` (stretch resize)."""
        image = self.images[index]
        return np.array([self.input_size / image["width"], self.input_size / image["height"]] * 2)

    def sample(self, index: int) -> DetDataSample:
        """mmdet's view of image ``index``: boxes and labels in input pixels (copies)."""
        image = self.images[index]
        entries = self._boxes[image["id"]]
        xyxy = np.array([[x, y, x + w, y + h] for (x, y, w, h), _ in entries], dtype=np.float64).reshape(-1, 4)
        shape = (self.input_size, self.input_size)
        sample = DetDataSample(metainfo={
            "index": index, "img_id": image["id"], "image_key": image["file_name"], "img_shape": shape, "ori_shape": shape,
            "pad_shape": shape, "batch_input_shape": shape, "scale_factor": (1.0, 1.0),
        })
        sample.gt_instances = InstanceData(
            bboxes=torch.as_tensor(xyxy * self.scale(index), dtype=torch.float32),
            labels=torch.as_tensor([self.labels[category] for _, category in entries], dtype=torch.long),
        )
        return sample

    def detections(self, index: int, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray,
                   min_score: float, max_per_image: int, clip: bool = True) -> list[dict[str, Any]]:
        """COCO results of image ``index`` from input-pixel xyxy boxes: back to original pixels,
        clipped to the image when ``clip`` (the reference's YOLO does not clip), scores >= ``min_score``,
        the ``max_per_image`` best."""
        image = self.images[index]
        categories = {label: category for category, label in self.labels.items()}
        keep = np.flatnonzero(scores >= min_score)
        keep = keep[np.argsort(-scores[keep], kind="stable")][:max_per_image]
        original = boxes[keep] / self.scale(index)
        if clip:
            original[:, 0::2] = original[:, 0::2].clip(0, image["width"])
            original[:, 1::2] = original[:, 1::2].clip(0, image["height"])
        return [{"image_id": image["id"], "category_id": categories[int(label)],
                 "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)], "score": float(score)}
                for (x1, y1, x2, y2), score, label in zip(original, scores[keep], labels[keep])]

    @property
    def targets(self) -> CocoTargets:
        return CocoTargets(path=None, data=self.coco)

    @property
    def n_boxes(self) -> int:
        return len(self.coco["annotations"])


def load_split(dataset: PreparedDataset, split: str, ids: Sequence[str], input_size: int) -> Split:
    """The COCO ground truth of ``ids`` from the prepared ``annotations/<split>.json``."""
    path = dataset.root / "annotations" / f"{split}.json"
    if not path.is_file():
        raise DataError(f"{path}: missing; re-run `python -m benchmark prepare {dataset.name}` (a detection dataset)")
    coco = json.loads(path.read_text())
    wanted = set(ids)
    images = [image for image in coco["images"] if image["file_name"] in wanted]
    missing = wanted - {image["file_name"] for image in images}
    if missing:
        raise DataError(f"{path}: {len(missing)} image(s) of the {split} split are not annotated, e.g. {sorted(missing)[:3]}")
    kept = {image["id"] for image in images}
    subset = {"images": images, "annotations": [a for a in coco["annotations"] if a["image_id"] in kept],
              "categories": coco["categories"]}
    return Split(split, tuple(ids), subset, input_size)


def resize_images(images: np.ndarray, input_size: int) -> torch.Tensor:
    """uint8 cache squares [n, S, S] -> uint8 [n, 3, s, s]: bilinear resize (the reference's
    cv2 INTER_LINEAR to 224, rounded back to uint8) and the gray channel repeated (PIL RGB)."""
    batch = torch.from_numpy(np.array(images, dtype=np.uint8)).unsqueeze(1)  # a copy: the cache is read-only
    if batch.shape[-1] != input_size:
        resized = F.interpolate(batch.float(), size=(input_size, input_size), mode="bilinear", align_corners=False)
        batch = resized.round().clamp(0, 255).to(torch.uint8)
    return batch.expand(-1, 3, -1, -1).contiguous()


class SplitDataset(Dataset):
    """Items of one split: ``inputs`` from ``source`` (images or cached maps), mmdet samples."""

    def __init__(self, split: Split, source: ImageSource | MapSource) -> None:
        self.split, self.source = split, source

    @property
    def metainfo(self) -> dict[str, Any]:
        """mmengine's dataset meta (checked on resume, shown by its visualiser)."""
        return {"classes": tuple(category["name"] for category in sorted(self.split.coco["categories"], key=lambda c: c["id"]))}

    def __len__(self) -> int:
        return len(self.split.ids)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"inputs": self.source[index], "data_samples": self.split.sample(index)}


class ImageSource:
    """Resized cache images of a split (paper mode)."""

    def __init__(self, dataset: PreparedDataset, ids: Sequence[str], input_size: int) -> None:
        self.dataset, self.ids, self.input_size = dataset, list(ids), input_size

    def __getitem__(self, index: int) -> torch.Tensor:
        return resize_images(self.dataset.image(self.ids[index])[None], self.input_size)[0]


class MapSource:
    """Cached encoder maps of a split (cached mode): one array per level, row = image."""

    def __init__(self, levels: Sequence[np.ndarray]) -> None:
        self.levels = list(levels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, ...]:
        return tuple(torch.from_numpy(np.array(level[index])) for level in self.levels)


def make_loader(dataset: SplitDataset, batch_size: int, shuffle: bool, drop_last: bool, seed: int, num_workers: int,
                shard: bool = True) -> DataLoader:
    """A loader over ``dataset``. ``shard``: mmengine's ``DefaultSampler`` splits the images across
    processes (with W processes and per-process batch b, global batch k holds the same images as
    the single-process batch k of size W * b); otherwise every image in order, in this process."""
    sampler = DefaultSampler(dataset, shuffle=shuffle, seed=seed) if shard else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, collate_fn=pseudo_collate,
                      drop_last=drop_last, num_workers=num_workers, persistent_workers=False)
