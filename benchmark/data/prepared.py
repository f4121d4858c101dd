"""The prepared-dataset contract between preparation and the task adapters.

A prepared dataset is a folder ``DATA_DIR/<dataset>/``::

    manifest.json              what was prepared from what (see Manifest)
    records.csv                one row per image: id, split, task columns (labels, paths, sizes)
    splits/<partition>/train.txt     one ID per line; also val.txt, test.txt
    splits/<partition>/train_1pct_draw0.txt, train_10pct_draw0.txt, ... (label-fraction subsets)

A partition is one train/val/test division of the dataset, named after the task family that
uses it: ``classification``, ``detection`` (RSNA's detection split, which segmentation reuses)
or ``segmentation``. Most datasets have one; RSNA has two (reference defect B17).
    images.npy, images.ids.txt uint8 cache [N, S, S] (grayscale, square) and its row order
    annotations/<split>.json   COCO boxes, in original-image pixels (detection datasets)
    masks/<id>.png             uint8 {0,255} masks at cache size (segmentation datasets)

Readers only ever go through :class:`PreparedDataset`; no epoch decodes a DICOM again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


# Bumped whenever preparation changes in a way that can move a number (splits, labels, image
# cache); a board names the preparation version its results were computed on. Version 1 was
# written as ``protocol_version: "mgca-cxr-v1"`` by manifests before boards and data had
# separate versions, and is read as such. Version 2: the letterbox truncates the short side in the
# reference's order of operations (one pixel narrower for some image sizes).
PREPARATION_VERSION = 2
_LEGACY_PREPARATION_VERSIONS = {"mgca-cxr-v1": 1}
SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """Raw or prepared data is missing or malformed; the message names the file and the fix."""


@dataclass
class SourceFile:
    path: str  # relative to the raw folder
    size: int
    sha256: str


@dataclass
class Manifest:
    dataset: str
    preparation_version: int
    package_version: str
    created: str
    source_files: list[SourceFile]
    counts: dict[str, int]  # images per split
    image_size: int  # side of the square uint8 cache
    image_mode: str  # "letterbox" (longest side + zero pad, reference resize_img) or "stretch"
    partitions: list[str] = field(default_factory=list)
    fractions: dict[str, list[int]] = field(default_factory=dict)  # "1" -> draws available
    excluded: list[dict[str, Any]] = field(default_factory=list)  # {file, id, reason}, plus row for label-file lines
    notes: list[str] = field(default_factory=list)  # deviations from the reference, in words
    demo: bool = False  # prepared from the demo generator's synthetic data: never a leaderboard result
    extra: dict[str, Any] = field(default_factory=dict)

    def write(self, folder: Path) -> None:
        (folder / "manifest.json").write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        path = folder / "manifest.json"
        if not path.is_file():
            raise DataError(f"{path}: not a prepared dataset (no manifest); run `python -m benchmark prepare`")
        try:
            data = json.loads(path.read_text())
            if "protocol_version" in data and "preparation_version" not in data:
                data["preparation_version"] = _LEGACY_PREPARATION_VERSIONS[data.pop("protocol_version")]
            data["source_files"] = [SourceFile(**item) for item in data["source_files"]]
            return cls(**data)
        except (json.JSONDecodeError, UnicodeDecodeError, TypeError, KeyError) as error:
            raise DataError(
                f"{path}: not a manifest this version can read ({type(error).__name__}: {error}); "
                "re-run `python -m benchmark prepare` into an empty folder"
            ) from None


def ids_fingerprint(ids: list[str]) -> str:
    """sha256 of an ID list as written to a split file: identifies a split in every result."""
    return hashlib.sha256(("\n".join(ids) + "\n").encode()).hexdigest()


def split_file_name(split: str, fraction: int = 100, draw: int = 0) -> str:
    return f"{split}.txt" if fraction == 100 else f"{split}_{fraction}pct_draw{draw}.txt"


def write_ids(path: Path, ids: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{item}\n" for item in ids))


def read_ids(path: Path) -> list[str]:
    if not path.is_file():
        raise DataError(f"{path}: split file missing")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


class PreparedDataset:
    """Read access to one prepared dataset folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.manifest = Manifest.read(self.root)
        self.name = self.manifest.dataset
        self._records: pd.DataFrame | None = None
        self._images: np.ndarray | None = None
        self._row_of: dict[str, int] | None = None

    def partition(self, partition: str | None = None) -> str:
        """``partition`` checked, or the dataset's only partition when None."""
        known = self.manifest.partitions
        if partition is None:
            if len(known) != 1:
                raise DataError(f"{self.root}: choose a partition among {known}")
            return known[0]
        if partition not in known:
            raise DataError(f"{self.root}: unknown partition {partition!r}; prepared: {known} (one its preparer "
                            f"writes now? `python -m benchmark prepare {self.name} --raw RAW --out DATA_DIR --refresh` "
                            "prepares the dataset again)")
        return partition

    def split_ids(self, split: str, fraction: int = 100, draw: int = 0, partition: str | None = None) -> list[str]:
        if split not in SPLITS:
            raise DataError(f"unknown split {split!r}; one of {SPLITS}")
        if fraction != 100 and split != "train":
            raise DataError("label fractions apply to the training split only")
        return read_ids(self.root / "splits" / self.partition(partition) / split_file_name(split, fraction, draw))

    def split_fingerprint(self, split: str, fraction: int = 100, draw: int = 0, partition: str | None = None) -> str:
        return ids_fingerprint(self.split_ids(split, fraction, draw, partition))

    @property
    def records(self) -> pd.DataFrame:
        """records.csv indexed by ``id`` (IDs kept as strings)."""
        if self._records is None:
            path = self.root / "records.csv"
            if not path.is_file():
                raise DataError(f"{path}: missing; re-run `python -m benchmark prepare {self.name}`")
            self._records = pd.read_csv(path, dtype={"id": str}, keep_default_na=False).set_index("id")
        return self._records

    def _cache(self) -> tuple[np.ndarray, dict[str, int]]:
        if self._images is None or self._row_of is None:
            path = self.root / "images.npy"
            if not path.is_file():
                raise DataError(f"{path}: image cache missing; re-run `python -m benchmark prepare {self.name}`")
            try:
                images = np.load(path, mmap_mode="r")
            except Exception as error:  # noqa: BLE001 - a truncated file or a garbled header raises anything (ValueError, SyntaxError, TokenError)
                raise DataError(f"{path}: not a readable image cache ({error}); re-run "
                                f"`python -m benchmark prepare {self.name}`") from None
            size = self.manifest.image_size
            if images.dtype != np.uint8 or images.shape[1:] != (size, size):
                raise DataError(f"{path}: holds {images.dtype} {list(images.shape)}, not uint8 [N, {size}, {size}] as "
                                f"manifest.json says; re-run `python -m benchmark prepare {self.name}`")
            ids = read_ids(self.root / "images.ids.txt")
            if len(ids) != len(images):
                raise DataError(f"{path} has {len(images)} rows but images.ids.txt lists {len(ids)}")
            self._images, self._row_of = images, {item: row for row, item in enumerate(ids)}
        return self._images, self._row_of

    def image(self, image_id: str) -> np.ndarray:
        """uint8 [S, S] grayscale image from the cache."""
        images, row_of = self._cache()
        try:
            return np.asarray(images[row_of[image_id]])
        except KeyError:
            raise DataError(f"{self.root}: image {image_id!r} is not in the image cache") from None

    def images(self, image_ids: list[str]) -> np.ndarray:
        """uint8 [n, S, S] for several IDs, read in cache order for speed."""
        images, row_of = self._cache()
        try:
            rows = np.array([row_of[item] for item in image_ids])
        except KeyError as error:
            raise DataError(f"{self.root}: image {error.args[0]!r} is not in the image cache") from None
        order = np.argsort(rows)
        out = np.empty((len(rows), *images.shape[1:]), dtype=np.uint8)
        out[order] = images[rows[order]]
        return out
