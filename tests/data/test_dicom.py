"""DICOM decoding: LUTs, bit depths, MONOCHROME1, min-max scaling, and every failure naming the file."""

from __future__ import annotations

import pickle
from pathlib import Path

import cv2
import numpy as np
import pydicom
import pytest

from benchmark.data.cache import write_image_cache
from benchmark.data.dicom import read_dicom, write_dicom
from benchmark.data.prepared import DataError

RAMP = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 3 + 100)  # 100 .. 12385, 14 bits


def expected_minmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return np.rint((values - values.min()) * 255 / (values.max() - values.min())).astype(np.uint8)


def test_monochrome2_uint16_with_rescale_is_min_max_scaled(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "a.dcm", RAMP, rescale=(2.0, -1000.0), bits_stored=14)
    image = read_dicom(path)
    assert image.dtype == np.uint8 and image.shape == (64, 64)
    # slope/intercept are linear, so min-max of the rescaled values equals min-max of the raw ones
    np.testing.assert_array_equal(image, expected_minmax(RAMP * 2.0 - 1000.0))
    assert image.min() == 0 and image.max() == 255


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    normal = read_dicom(write_dicom(tmp_path / "m2.dcm", RAMP, "MONOCHROME2", rescale=(1.0, 0.0)))
    inverted = read_dicom(write_dicom(tmp_path / "m1.dcm", RAMP, "MONOCHROME1", rescale=(1.0, 0.0)))
    np.testing.assert_array_equal(inverted, 255 - normal)
    assert inverted[0, 0] == 255  # the smallest stored value is white in MONOCHROME1


def test_window_clips_outside_the_window(tmp_path: Path) -> None:
    center, width = 6000.0, 4000.0
    image = read_dicom(write_dicom(tmp_path / "w.dcm", RAMP, window=(center, width)))
    assert (image[RAMP < center - width / 2] == 0).all()
    assert (image[RAMP > center + width / 2] == 255).all()
    inside = (RAMP > center - width / 2 + 50) & (RAMP < center + width / 2 - 50)
    assert ((image[inside] > 0) & (image[inside] < 255)).all()


def test_8bit_image_with_black_pixel_matches_the_reference_scaling(tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 200, (64, 64), dtype=np.uint8)
    pixels[0, 0] = 0
    reference = cv2.convertScaleAbs(pixels, alpha=255 / pixels.max())
    np.testing.assert_array_equal(read_dicom(write_dicom(tmp_path / "r.dcm", pixels)), reference)


def test_jpeg_baseline_like_the_official_releases(tmp_path: Path) -> None:
    pixels = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    path = write_dicom(tmp_path / "j.dcm", pixels, jpeg=True)
    assert pydicom.dcmread(path).file_meta.TransferSyntaxUID == pydicom.uid.JPEGBaseline8Bit
    assert np.abs(read_dicom(path).astype(int) - expected_minmax(pixels).astype(int)).max() <= 8


def test_constant_image_gives_zeros(tmp_path: Path) -> None:
    image = read_dicom(write_dicom(tmp_path / "c.dcm", np.full((8, 8), 7, np.uint16)))
    assert (image == 0).all()


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="nothere.dcm: DICOM file missing"):
        read_dicom(tmp_path / "nothere.dcm")


def test_not_a_dicom(tmp_path: Path) -> None:
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"this is not a dicom file at all" * 10)
    with pytest.raises(DataError, match="junk.dcm: not a readable DICOM"):
        read_dicom(path)


def test_truncated_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "t.dcm", RAMP)
    path.write_bytes(path.read_bytes()[:-1000])
    with pytest.raises(DataError, match="t.dcm"):
        read_dicom(path)


def test_pixel_data_of_the_wrong_size(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "s.dcm", RAMP)
    dataset = pydicom.dcmread(path)
    dataset.Rows = 128  # header now promises twice the stored pixels
    dataset.save_as(path)
    with pytest.raises(DataError, match="s.dcm: pixel data cannot be decoded"):
        read_dicom(path)


def test_missing_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "p.dcm", RAMP)
    dataset = pydicom.dcmread(path)
    del dataset.PixelData
    dataset.save_as(path)
    with pytest.raises(DataError, match="p.dcm: DICOM has no PixelData"):
        read_dicom(path)


def test_read_dicom_runs_in_the_parallel_cache_writer(tmp_path: Path) -> None:
    pickle.dumps(read_dicom)
    good = write_dicom(tmp_path / "good.dcm", RAMP)
    jobs = [("good", str(good)), ("gone", str(tmp_path / "gone.dcm"))]
    result = write_image_cache(tmp_path, jobs, read_dicom, 16, "stretch", on_error="exclude", workers=2)
    assert result.ids == ["good"] and result.sizes["good"] == (64, 64)
    assert "gone.dcm" in result.excluded[0]["reason"]
    assert np.load(tmp_path / "images.npy").shape == (1, 16, 16)
