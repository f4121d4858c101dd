"""COVIDx: label-file discovery and parsing, the reference split, and a tiny raw folder end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from benchmark.data.datasets import covidx
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.registry import DATASETS, PrepareOptions
from benchmark.hashing import file_sha256

CLASS_CYCLE = ("normal", "pneumonia", "COVID-19", "COVID-19")


def write_jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (30, 36), dtype=np.uint8))


def write_list(path: Path, split: str, count: int, classes=CLASS_CYCLE) -> None:
    lines = [f"p{split}{i // 2} {split}_{i:03d}.png {classes[i % len(classes)]} src" for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    for i in range(count):
        write_jpg(path.parent / split / f"{split}_{i:03d}.png", i + (500 if split == "test" else 0))


def make_raw(root: Path, train: int = 40, test: int = 8, version: str = "9A", demo: bool = True) -> Path:
    raw = root / "COVIDx"
    raw.mkdir(parents=True)
    write_list(raw / f"train_COVIDx{version}.txt", "train", train)
    write_list(raw / f"test_COVIDx{version}.txt", "test", test)
    if demo:
        (raw / DEMO_MARKER).write_text("test data\n")
    return raw


def prepare(raw: Path, out: Path, **options) -> PreparedDataset:
    DATASETS.get("covidx").prepare(PrepareOptions(raw=raw, out=out, image_size=32, workers=1, **options))
    return PreparedDataset(out)


# --- pure parts -----------------------------------------------------------------------------------


def test_label_file_lookup_prefers_v9a_then_one_versioned_pair_then_plain_names(tmp_path):
    for name in ("train.txt", "test.txt", "train_COVIDx8A.txt", "test_COVIDx8A.txt"):
        (tmp_path / name).write_text("")
    assert [p.name for p in covidx.find_label_files(tmp_path)] == ["train_COVIDx8A.txt", "test_COVIDx8A.txt"]
    for name in covidx.REFERENCE_LABEL_FILES:
        (tmp_path / name).write_text("")
    assert [p.name for p in covidx.find_label_files(tmp_path)] == list(covidx.REFERENCE_LABEL_FILES)
    for name in (*covidx.REFERENCE_LABEL_FILES, "train_COVIDx8A.txt", "test_COVIDx8A.txt"):
        (tmp_path / name).unlink()
    assert [p.name for p in covidx.find_label_files(tmp_path)] == ["train.txt", "test.txt"]


def test_label_file_lookup_refuses_ambiguity_and_absence(tmp_path):
    with pytest.raises(DataError, match="no COVIDx label files"):
        covidx.find_label_files(tmp_path)
    for name in ("train_COVIDx5.txt", "test_COVIDx5.txt", "train_COVIDx8A.txt", "test_COVIDx8A.txt"):
        (tmp_path / name).write_text("")
    with pytest.raises(DataError, match="several COVIDx label-file pairs"):
        covidx.find_label_files(tmp_path)


def test_parse_maps_the_three_classes(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("3 a.png normal cohen\n\n4 b.jpg pneumonia rsna\n5 c.png COVID-19 ricord\n")
    frame = covidx.parse_label_file(path)
    assert frame["label"].tolist() == [0, 1, 2]
    assert frame["line"].tolist() == [1, 3, 4]
    assert frame[["patient", "filename", "source"]].iloc[2].tolist() == ["5", "c.png", "ricord"]


@pytest.mark.parametrize("content, message", [
    ("1 a.png normal\n", r"line 1: 3 fields, expected 4"),
    ("1 a.png normal src\n2 b.png positive src\n", r"line 2: class 'positive' .*binary"),
    ("1 a.png normal src\n2 b.png Normal src\n", r"line 2: class 'Normal' is not one of"),
    ("1 a.png normal src\n2 a.png normal src\n", r"line 2: image 'a.png' is listed twice"),
    ("", "empty label file"),
])
def test_parse_errors_name_the_line(tmp_path, content, message):
    path = tmp_path / "train.txt"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        covidx.parse_label_file(path)


def test_binary_label_file_is_named(tmp_path):
    # Regression: a non-text file escaped as UnicodeDecodeError.
    path = tmp_path / "train_COVIDx9A.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(DataError, match="train_COVIDx9A.txt: not a text label file"):
        covidx.parse_label_file(path)


def test_split_is_the_reference_train_test_split():
    frame = pd.DataFrame({"filename": [f"{i}.png" for i in range(30130)], "label": 0})
    train, val = covidx.train_val_split(frame)
    assert (len(train), len(val)) == (24104, 6026)  # PROTOCOL.md 5.2 on the V9A list
    expected_train, _ = train_test_split(frame, train_size=0.8, random_state=0)
    assert train["filename"].tolist() == expected_train["filename"].tolist()


# --- tiny raw folders -----------------------------------------------------------------------------


def test_tiny_folder_end_to_end(tmp_path):
    raw = make_raw(tmp_path)
    data = prepare(raw, tmp_path / "out")
    counts = data.manifest.counts
    assert (counts["classification/train"], counts["classification/val"], counts["classification/test"]) == (32, 8, 8)
    assert counts["classification/train_10pct_draw0"] == 3 and counts["classification/train_1pct_draw1"] == 0
    assert data.records.loc["train_001.png", "label"] == 1 and data.records.loc["test_002.png", "class"] == "COVID-19"
    assert data.records.loc["test_002.png", "split"] == "test"
    assert {item.path: item.sha256 for item in data.manifest.source_files} == {
        "train_COVIDx9A.txt": file_sha256(raw / "train_COVIDx9A.txt"), "test_COVIDx9A.txt": file_sha256(raw / "test_COVIDx9A.txt"),
    }
    assert data.image("train_000.png").shape == (32, 32) and data.manifest.image_mode == "letterbox"


def test_v9a_counts_are_checked_against_the_published_ones(tmp_path):
    raw = make_raw(tmp_path, demo=False)
    with pytest.raises(DataError, match=r"train_COVIDx9A\.txt: class counts .* differ from the published"):
        prepare(raw, tmp_path / "out")
    assert prepare(raw, tmp_path / "out", verify_shipped=False).manifest.counts["images"] == 48


def test_binary_release_is_refused(tmp_path):
    raw = tmp_path / "COVIDx"
    raw.mkdir()
    write_list(raw / "train.txt", "train", 6, classes=("positive", "negative"))
    write_list(raw / "test.txt", "test", 2, classes=("positive", "negative"))
    with pytest.raises(DataError, match=r"train\.txt line 1: class 'positive'"):
        prepare(raw, tmp_path / "out")


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_image_raises_or_is_a_counted_exclusion(tmp_path, damage):
    raw = make_raw(tmp_path)
    image = raw / "test" / "test_003.png"
    if damage == "corrupt":
        image.write_bytes(b"\x89PNG broken")
    else:
        image.unlink()
    with pytest.raises(DataError, match="test/test_003.png"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["file"] for item in data.manifest.excluded] == [str(image)]
    assert data.manifest.counts["classification/test"] == 7 and "test_003.png" not in data.records.index
