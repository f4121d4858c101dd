"""The prepared-dataset contract: reading manifests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark.data.prepared import DataError, Manifest, PreparedDataset


@pytest.mark.parametrize(
    "content",
    ["{not json", '{"dataset": "toy"}', '{"dataset": "toy", "source_files": [{"path": "a"}]}', "[]"],
)
def test_unreadable_manifest_is_a_data_error_naming_the_file(tmp_path: Path, content: str) -> None:
    # Regression: a corrupt manifest or one from another version escaped as JSONDecodeError/TypeError.
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(DataError, match=r"manifest.json: not a manifest this version can read .*benchmark prepare"):
        Manifest.read(tmp_path)
    with pytest.raises(DataError, match="manifest.json"):
        PreparedDataset(tmp_path)


def _prepared_folder(root: Path) -> Path:
    Manifest(dataset="toy", preparation_version=1, package_version="test", created="2026-01-01T00:00:00+00:00",
             source_files=[], counts={}, image_size=4, image_mode="stretch").write(root)
    return root


def test_missing_image_cache_is_a_data_error(tmp_path: Path) -> None:
    # Regression: np.load raised FileNotFoundError (a traceback) when images.npy was absent.
    prepared = PreparedDataset(_prepared_folder(tmp_path))
    with pytest.raises(DataError, match=r"images.npy: image cache missing; re-run .*prepare toy"):
        prepared.image("a")


def test_cache_row_mismatch_is_reported_on_every_read(tmp_path: Path) -> None:
    # Regression: the first read raised, the second hit an assert (the half-loaded cache was kept).
    np.save(_prepared_folder(tmp_path) / "images.npy", np.zeros((2, 4, 4), np.uint8))
    (tmp_path / "images.ids.txt").write_text("a\n")
    prepared = PreparedDataset(tmp_path)
    for _ in range(2):
        with pytest.raises(DataError, match="has 2 rows but images.ids.txt lists 1"):
            prepared.images(["a"])


@pytest.mark.parametrize("damage", ["truncated", "garbled header", "wrong shape"])
def test_a_damaged_image_cache_is_a_data_error(tmp_path: Path, damage: str) -> None:
    # Regression (issue 19 §2): np.load's ValueError (mmap length, header) escaped as a traceback.
    cache = _prepared_folder(tmp_path) / "images.npy"
    np.save(cache, np.zeros((2, 8, 8) if damage == "wrong shape" else (2, 4, 4), np.uint8))
    (tmp_path / "images.ids.txt").write_text("a\nb\n")
    content = cache.read_bytes()
    if damage == "truncated":
        cache.write_bytes(content[:-7])
    elif damage == "garbled header":
        cache.write_bytes(content[:10] + b"\x00garbage!" + content[19:])
    with pytest.raises(DataError, match=r"images.npy: (not a readable image cache|holds uint8 \[2, 8, 8\], not uint8 \[N, 4, 4\])"):
        PreparedDataset(tmp_path).image("a")
