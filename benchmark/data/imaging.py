"""Image decoding of JPG/PNG files and the two resize geometries of the protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from benchmark.data.prepared import DataError

ResizeMode = Literal["letterbox", "stretch"]


def read_gray(path: str | Path) -> np.ndarray:
    """8-bit grayscale pixels of a JPG/PNG (as the reference's ``cv2.imread(path, 0)``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: image file missing")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        raise DataError(f"{path}: corrupt or unsupported image file")
    return image


def letterbox(image: np.ndarray, size: int) -> np.ndarray:
    """The reference's ``resize_img``: longest side to ``size`` (INTER_AREA), zero-pad to a square.

    The short side becomes ``int(short * (size / long))``, truncated and in that order of
    operations, which for some sizes is one pixel less than ``int(short * size / long)`` (110 x 55
    to 224: 111, not 112); padding is floor(pad/2) before and ceil(pad/2) after
    (``mgca/datasets/utils.py`` L28-74). A square image counts as high, as there.
    """
    height, width = image.shape[:2]
    if height >= width:
        new_h, new_w = size, int(width * (size / height))
    else:
        new_h, new_w = int(height * (size / width)), size
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_h, pad_w = size - new_h, size - new_w
    return cv2.copyMakeBorder(
        resized, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2, cv2.BORDER_CONSTANT, value=0
    )


def stretch(image: np.ndarray, size: int) -> np.ndarray:
    """Direct resize to ``size`` × ``size`` (the detection/segmentation pipelines; aspect not kept).

    Deviation (:data:`STRETCH_NOTE`): area interpolation, where the reference resizes the native
    image straight to 224 bilinearly; shrinking 1024 → 256 bilinearly would alias.
    """
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


STRETCH_NOTE = (
    "Detection/segmentation images are cached by a direct INTER_AREA resize of the native image to the "
    "cache size (aspect not kept), and tasks resample the cache to their input size; the reference resizes "
    "the native image straight to 224 x 224 bilinearly (cv2.resize INTER_LINEAR, albumentations Resize)."
)


RESIZERS = {"letterbox": letterbox, "stretch": stretch}

