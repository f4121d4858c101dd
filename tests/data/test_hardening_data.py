"""Issue 14, section 3: malformed label files and images are one error line (or a counted,
located exclusion), never a traceback. Demo raw folders are written once and damaged per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from benchmark.cli import main
from benchmark.data.demo import DEMO_WRITERS, generate
from benchmark.data.imaging import letterbox

DATASETS = ("rsna", "siim", "object_cxr", "chexpert")
LABEL_FILES = {"rsna": "stage_2_train_labels.csv", "siim": "train-rle.csv", "object_cxr": "train.csv",
               "chexpert": "train.csv"}


@pytest.fixture(scope="module")
def demo_raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("raw")
    generate(root, list(DATASETS), images=40, size=32, seed=0)
    return root


def copy_raw(demo_raw: Path, tmp_path: Path, dataset: str) -> Path:
    return Path(shutil.copytree(demo_raw / dataset, tmp_path / "raw" / dataset))


def prepare(raw: Path, dataset: str, tmp_path: Path, *extra: str) -> int:
    return main(["prepare", dataset, "--raw", str(raw), "--out", str(tmp_path / "prepared"),
                 "--image-size", "32", "--workers", "1", *extra])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("dataset", DATASETS)
def test_a_label_file_holding_only_its_header_is_one_line(demo_raw, tmp_path, capsys, dataset: str) -> None:
    raw = copy_raw(demo_raw, tmp_path, dataset)
    labels = raw / LABEL_FILES[dataset]
    labels.write_text(labels.read_text().splitlines()[0] + "\n")
    assert prepare(raw, dataset, tmp_path) == 2
    line = one_error_line(capsys)
    assert str(labels) in line and "has no rows" in line


@pytest.mark.parametrize(("dataset", "line"), [("rsna", 2), ("rsna", 4), ("siim", 2), ("object_cxr", 3)])
def test_a_row_with_too_many_fields_names_its_line(demo_raw, tmp_path, capsys, dataset: str, line: int) -> None:
    raw = copy_raw(demo_raw, tmp_path, dataset)
    labels = raw / LABEL_FILES[dataset]
    rows = labels.read_text().splitlines()
    header_fields = len(rows[0].split(","))
    rows[line - 1] += ",extra"
    labels.write_text("\n".join(rows) + "\n")
    assert prepare(raw, dataset, tmp_path) == 2
    error = one_error_line(capsys)
    assert f"{labels} line {line}: {header_fields + 1} fields, the header has {header_fields}" in error, error


def rle_with_huge_number(raw: Path) -> tuple[Path, int, str]:
    """Make the first positive RLE row hold a number beyond int64; returns file, line, ImageId."""
    labels = raw / "train-rle.csv"
    rows = labels.read_text().splitlines()
    number = next(i for i, row in enumerate(rows[1:], start=1) if not row.rstrip().endswith(",-1") and "," in row)
    image_id, rle = rows[number].split(",", 1)
    rows[number] = f"{image_id}, 99999999999999999999999 {rle.split()[1]}"
    labels.write_text("\n".join(rows) + "\n")
    return labels, number + 1, image_id


def test_a_siim_rle_number_beyond_int64_is_a_row_error_or_an_exclusion(demo_raw, tmp_path, capsys) -> None:
    raw = copy_raw(demo_raw, tmp_path, "siim")
    labels, line, image_id = rle_with_huge_number(raw)
    assert prepare(raw, "siim", tmp_path) == 2
    error = one_error_line(capsys)
    assert f"{labels} line {line} ({image_id})" in error and "RLE" in error
    assert prepare(raw, "siim", tmp_path, "--on-error", "exclude") == 0
    manifest = json.loads((tmp_path / "prepared" / "siim" / "manifest.json").read_text())
    assert [(item["row"], item["id"]) for item in manifest["excluded"]] == [(line, image_id)]


def test_an_unreadable_image_exclusion_names_file_row_and_reason(demo_raw, tmp_path) -> None:
    raw = copy_raw(demo_raw, tmp_path, "rsna")
    labels = (raw / LABEL_FILES["rsna"]).read_text().splitlines()
    patient = labels[5].split(",")[0]
    lines = [number for number, row in enumerate(labels, start=1) if row.startswith(patient + ",")]
    (raw / "stage_2_train_images" / f"{patient}.dcm").write_bytes(b"\x00garbage" * 50)
    assert prepare(raw, "rsna", tmp_path, "--on-error", "exclude") == 0
    manifest = json.loads((tmp_path / "prepared" / "rsna" / "manifest.json").read_text())
    (entry,) = manifest["excluded"]
    assert entry["id"] == patient and entry["file"].endswith(f"{patient}.dcm") and entry["reason"]
    assert entry["row"] == lines[0] and entry["label_file"].endswith(LABEL_FILES["rsna"])


def test_demo_data_refuses_a_size_whose_test_split_cannot_be_scored(tmp_path, capsys) -> None:
    assert main(["demo-data", "--out", str(tmp_path), "--datasets", "chexpert", "rsna", "--images", "16", "--size", "32"]) == 2
    error = one_error_line(capsys)
    assert "chexpert needs 96" in error and "rsna needs 20" in error and "--images 96" in error
    assert not any(tmp_path.iterdir())


def test_a_demo_dataset_too_small_to_score_is_refused_at_preparation(demo_raw, tmp_path, capsys) -> None:
    raw = copy_raw(demo_raw, tmp_path, "chexpert")  # 40 images: generate() writes any size, demo-data would refuse
    assert prepare(raw, "chexpert", tmp_path) == 2
    error = one_error_line(capsys)
    assert "chexpert: the classification test split" in error and "AUROC is undefined for every run" in error
    assert "holds no positive" in error or "holds no negative" in error
    assert "at least 96 images (demo-data --images 96" in error
    assert not (tmp_path / "prepared" / "chexpert").exists()


def test_a_detection_split_without_a_box_is_refused_at_preparation(tmp_path, capsys) -> None:
    """Object-CXR at 24 demo images (seed 0) has boxes in train and test but none in validation:
    every detection cell would fail at run time, so preparation refuses it and names the size."""
    generate(tmp_path / "raw", ["object_cxr"], images=24, size=32, seed=0)
    assert prepare(tmp_path / "raw" / "object_cxr", "object_cxr", tmp_path) == 2
    error = one_error_line(capsys)
    assert error.startswith("error: object_cxr: the detection val split (2 images) holds no positive 'foreign object' image")
    assert "selects no epoch" in error and "at least 97 images (demo-data --images 97" in error
    assert not (tmp_path / "prepared" / "object_cxr").exists()


@pytest.mark.parametrize("dataset", ["chexpert", "covidx", "object_cxr", "rsna", "siim"])
def test_every_demo_dataset_prepares_at_its_minimum_size(tmp_path, dataset: str) -> None:
    minimum = DEMO_WRITERS.get(dataset).minimum_images
    assert main(["demo-data", "--out", str(tmp_path / "raw"), "--datasets", dataset, "--images", str(minimum), "--size", "32"]) == 0
    assert prepare(tmp_path / "raw" / dataset, dataset, tmp_path) == 0


@pytest.mark.parametrize(("height", "width", "content"), [(110, 55, 111), (80, 45, 125), (55, 110, 111)])
def test_letterbox_truncates_as_the_reference_does(height: int, width: int, content: int) -> None:
    """``resize_img`` computes ``int(short * (scale / long))``: scale/long first, which for these
    sizes truncates one pixel below ``int(short * scale / long)`` (112, 126 and 112)."""
    image = letterbox(np.full((height, width), 255, np.uint8), 224)
    filled = (image > 0).any(axis=0 if height >= width else 1)
    pad = 224 - content
    assert filled.sum() == content and filled[: pad // 2].sum() == 0 and filled[pad // 2]
