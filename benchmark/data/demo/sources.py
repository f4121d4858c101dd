"""Real public label files that make the demo data realistic (shipped in the torchxrayvision wheel).

The demo images are synthetic, but their labels, boxes, masks, lung shapes and report sentences
come from official files: label co-occurrence, box sizes and mask shapes then look like the real
datasets. Each loader is cached, so a generation reads every file once.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import re
import tarfile
import xml.etree.ElementTree as ElementTree
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from benchmark.data.prepared import DataError

TORCHXRAYVISION_PIN = "torchxrayvision==1.5.7"
LUNG_BANK_SIZE = 96  # side of the normalised lung-mask canvas
LUNG_BANK_MAX = 64  # lung masks kept (the first that pass the shape check, in file-name order)


def source_folder() -> Path:
    """torchxrayvision's ``data/`` folder, which holds copies of the official label files
    (found without importing the package, whose import takes seconds)."""
    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            f"demo data needs the real label files shipped with torchxrayvision; install it with "
            f"`pip install {TORCHXRAYVISION_PIN}` (or `pip install -e .[test]`)"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "data"
    if not folder.is_dir():
        raise DataError(f"{folder}: torchxrayvision's data folder is missing; reinstall {TORCHXRAYVISION_PIN}")
    return folder


def _source(name: str) -> Path:
    path = source_folder() / name
    if not path.is_file():
        raise DataError(f"{path}: missing from the torchxrayvision wheel; reinstall {TORCHXRAYVISION_PIN}")
    return path


@functools.cache
def chexpert_rows() -> pd.DataFrame:
    """CheXpert-v1.0-small ``train.csv`` as strings (cells kept byte for byte, empty stays empty)."""
    return pd.read_csv(_source("chexpert_train.csv.gz"), dtype=str, keep_default_na=False)


@functools.cache
def rsna_labels() -> pd.DataFrame:
    """RSNA ``stage_2_train_labels.csv`` (one row per box; negatives have empty box fields)."""
    with zipfile.ZipFile(_source("kaggle_stage_2_train_labels.csv.zip")) as archive:
        with archive.open(archive.namelist()[0]) as handle:
            return pd.read_csv(handle)


@functools.cache
def siim_rle() -> pd.DataFrame:
    """SIIM stage-1 ``train-rle.csv``, columns stripped to ``ImageId``, ``EncodedPixels``."""
    frame = pd.read_csv(_source("siim-pneumothorax-train-rle.csv.gz"), dtype=str)
    frame.columns = [column.strip() for column in frame.columns]
    frame["EncodedPixels"] = frame["EncodedPixels"].str.strip()
    return frame


@functools.cache
def siim_header() -> str:
    """The header line of the real ``train-rle.csv`` (``ImageId, EncodedPixels``, with its space)."""
    with gzip.open(_source("siim-pneumothorax-train-rle.csv.gz"), "rt") as handle:
        return handle.readline().rstrip("\n")


@functools.cache
def openi_sentences() -> tuple[str, ...]:
    """Sentences of the FINDINGS and IMPRESSION sections of the OpenI (Indiana) reports."""
    sentences: set[str] = set()
    with tarfile.open(_source("NLMCXR_reports.tgz")) as archive:
        for member in archive:
            if not member.name.endswith(".xml"):
                continue
            root = ElementTree.parse(archive.extractfile(member)).getroot()
            for node in root.iter("AbstractText"):
                if node.get("Label") in ("FINDINGS", "IMPRESSION") and node.text:
                    for sentence in re.split(r"(?<=\.)\s+", node.text.strip()):
                        sentence = re.sub(r"\s+", " ", sentence).strip()
                        # "XXXX" marks de-identified words; numbered lists are kept out for simplicity
                        if 4 <= len(sentence.split()) <= 30 and "XXXX" not in sentence and not re.match(r"^\d", sentence):
                            sentences.add(sentence[0].upper() + sentence[1:].rstrip(".") + ".")
    return tuple(sorted(sentences))


def _two_largest_components(mask: np.ndarray) -> np.ndarray | None:
    """The two largest connected regions (the lungs), dropping annotation specks and stray lines."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8))
    if count < 3:  # background plus at least two lungs
        return None
    largest = 1 + np.argsort(stats[1:, cv2.CC_STAT_AREA])[::-1][:2]
    return np.isin(labels, largest)


def _lung_shape_ok(mask: np.ndarray) -> bool:
    """Two lung fields side by side with a gap between them (frontal view, both lungs outlined)."""
    height, width = mask.shape
    if mask.mean() < 0.15 or not 0.8 <= width / height <= 1.9:
        return False
    third = width // 3
    left, middle, right = mask[:, :third].mean(), mask[:, third : 2 * third].mean(), mask[:, 2 * third :].mean()
    return left > 0.25 and right > 0.25 and middle < min(left, right)


@functools.cache
def lung_masks() -> np.ndarray:
    """Real frontal lung masks (v7labs), cropped to their bounding box and resized to a square bank.

    float32 [K, LUNG_BANK_SIZE, LUNG_BANK_SIZE] in [0, 1]; placing a bank entry into the lung box of
    a synthetic chest keeps the real outline (cardiac notch, costophrenic angles).
    """
    bank: list[np.ndarray] = []
    with zipfile.ZipFile(_source("semantic_masks_v7labs_lungs.zip")) as archive:
        for name in sorted(n for n in archive.namelist() if not n.endswith("/")):
            data = np.frombuffer(archive.read(name), np.uint8)
            mask = cv2.imdecode(data, cv2.IMREAD_REDUCED_GRAYSCALE_4)
            if mask is None or not mask.any():
                continue
            lungs = _two_largest_components(mask > 64)
            if lungs is None:
                continue
            ys, xs = np.nonzero(lungs)
            crop = lungs[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1].astype(np.float32)
            if not _lung_shape_ok(crop):
                continue
            bank.append(cv2.resize(crop, (LUNG_BANK_SIZE, LUNG_BANK_SIZE), interpolation=cv2.INTER_AREA))
            if len(bank) == LUNG_BANK_MAX:
                break
    if not bank:
        raise DataError(f"{_source('semantic_masks_v7labs_lungs.zip')}: no usable lung mask found")
    return np.stack(bank)
