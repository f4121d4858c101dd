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

    The short side becomes ``int(short * size / long)`` (truncated); padding is floor(pad/2)
    before and ceil(pad/2) after (``mgca/datasets/utils.py`` L28-74).
    """
    height, width = image.shape[:2]
    if height >= width:
        new_h, new_w = size, int(width * size / height)
    else:
        new_h, new_w = int(height * size / width), size
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)
    pad_h, pad_w = size - new_h, size - new_w
    return cv2.copyMakeBorder(
        resized, pad_h // 2, pad_h - pad_h // 2, pad_w // 2, pad_w - pad_w // 2, cv2.BORDER_CONSTANT, value=0
    )


def stretch(image: np.ndarray, size: int) -> np.ndarray:
    """Direct resize to ``size`` × ``size`` (the detection/segmentation pipelines; aspect not kept)."""
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)


RESIZERS = {"letterbox": letterbox, "stretch": stretch}

