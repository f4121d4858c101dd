"""The suite's RLE decoder on the real SIIM stage-1 ``train-rle.csv`` shipped in torchxrayvision.

Every row decodes to a 1024 x 1024 mask holding exactly the pixels its runs name, and the rows of
an image with several pneumothorax instances merge into one mask. The pixel positions are checked
against an independent construction from the runs (absolute start = previous run's end + the
relative start; column-major, Kaggle's convention), so a transposed or off-by-one decoder fails.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchxrayvision

from benchmark.data.datasets.siim import NEGATIVE, rle_to_mask

SIDE = 1024
LABEL_FILE = Path(torchxrayvision.__file__).parent / "data" / "siim-pneumothorax-train-rle.csv.gz"


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    frame = pd.read_csv(LABEL_FILE, dtype=str)
    frame.columns = [name.strip() for name in frame.columns]
    frame["EncodedPixels"] = frame["EncodedPixels"].str.strip()
    return frame


def mark_run_pixels(rle: str, flat: np.ndarray) -> None:
    """Set the flat column-major pixels named by an RLE string, built run by run in Python integers."""
    values = [int(token) for token in rle.split()]
    assert len(values) % 2 == 0
    end = 0
    for relative_start, length in zip(values[0::2], values[1::2]):
        start = end + relative_start
        end = start + length
        assert 0 <= start <= end <= flat.size  # a slice would silently clip a run that leaves the image
        flat[start:end] = True


def test_the_shipped_file_is_the_one_the_protocol_counts(rows):
    assert len(rows) == 12954 and rows["ImageId"].nunique() == 12047  # PROTOCOL.md 6.1
    assert (rows.groupby("ImageId").size() > 1).sum() == 624


@pytest.mark.slow  # 3,576 full-size decodes, a few seconds on one core
def test_every_row_decodes_to_its_runs_and_the_rows_of_an_image_merge(rows):
    positive = rows[rows["EncodedPixels"] != NEGATIVE]
    assert len(positive) == 3576
    merged_images = 0
    for _, group in positive.groupby("ImageId", sort=False):
        merged = np.zeros((SIDE, SIDE), dtype=bool, order="F")  # merged.T is C-contiguous: its ravel is a view
        expected = np.zeros(SIDE * SIDE, dtype=bool)
        for rle in group["EncodedPixels"]:
            mask = rle_to_mask(rle, SIDE, SIDE)
            assert mask.shape == (SIDE, SIDE)
            assert np.count_nonzero(mask) == np.array(rle.split(), dtype=np.int64)[1::2].sum()  # runs never overlap
            merged |= mask
            mark_run_pixels(rle, expected)
        assert np.array_equal(merged.T.ravel(), expected)  # column-major: flat index = column * side + row
        merged_images += len(group) > 1
    assert merged_images == 624
    negative = rle_to_mask(NEGATIVE, SIDE, SIDE)
    assert negative.shape == (SIDE, SIDE) and not negative.any()
