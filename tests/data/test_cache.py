"""The image cache writer: decoding failures and resize failures name the file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmark.data.cache import write_image_cache
from benchmark.data.imaging import read_gray
from benchmark.data.prepared import DataError


def test_an_image_that_cannot_be_letterboxed_is_named(tmp_path: Path) -> None:
    # Regression: a 600x1 image shrinks to a 0-pixel side and cv2.error escaped from the worker.
    cv2.imwrite(str(tmp_path / "sliver.png"), np.full((1, 600), 128, np.uint8))
    cv2.imwrite(str(tmp_path / "good.png"), np.full((20, 30), 128, np.uint8))
    jobs = [("sliver", str(tmp_path / "sliver.png")), ("good", str(tmp_path / "good.png"))]
    with pytest.raises(DataError, match=r"sliver.png: a 600x1 image cannot be resized to 8 \(letterbox\)"):
        write_image_cache(tmp_path, jobs, read_gray, 8, "letterbox", workers=1)
    result = write_image_cache(tmp_path, jobs, read_gray, 8, "letterbox", on_error="exclude", workers=1)
    assert result.ids == ["good"] and "sliver.png" in result.excluded[0]["reason"]
    assert result.excluded[0]["id"] == "sliver"  # every exclusion names its image ID, as label-file ones do
