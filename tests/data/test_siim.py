"""SIIM-ACR Pneumothorax: image-level split on the real label file, Kaggle RLE decoding, and
preparation of a tiny raw folder in the official nested layout, including bad inputs."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from benchmark.data.datasets import siim
from benchmark.data.dicom import write_dicom
from benchmark.data.prepared import DataError, PreparedDataset, read_ids
from benchmark.data.preparation import DEMO_MARKER, SHIPPED_SPLITS
from benchmark.data.registry import DATASETS, PrepareOptions

torchxrayvision = pytest.importorskip("torchxrayvision")
REAL_LABELS = Path(os.path.dirname(torchxrayvision.__file__)) / "data" / "siim-pneumothorax-train-rle.csv.gz"


@pytest.fixture(scope="module")
def real_rows() -> pd.DataFrame:
    return siim.read_rle_rows(REAL_LABELS)


@pytest.fixture(scope="module")
def real_partition(real_rows: pd.DataFrame) -> siim.Partition:
    return siim.make_partition(real_rows)


@pytest.fixture(scope="module")
def real_positives(real_rows: pd.DataFrame) -> set[str]:
    return set(real_rows.loc[real_rows["EncodedPixels"] != siim.NEGATIVE, "ImageId"])


def test_real_file_counts(real_rows, real_positives) -> None:
    assert len(real_rows) == 12954 and real_rows["ImageId"].nunique() == 12047 and len(real_positives) == 2669


def test_real_split_is_by_image(real_partition, real_positives) -> None:
    splits = real_partition.splits
    assert {split: len(ids) for split, ids in splits.items()} == {"train": 8432, "val": 1808, "test": 1807}
    assert {split: sum(item in real_positives for item in ids) for split, ids in splits.items()} == {
        "train": 1862, "val": 390, "test": 417}
    everything = [item for ids in splits.values() for item in ids]
    assert len(everything) == len(set(everything)) == 12047  # each image in exactly one split (B2)


def test_real_subsets_come_from_a_balanced_training_set(real_partition, real_positives) -> None:
    train = set(real_partition.splits["train"])
    for (percent, draw), ids in real_partition.subsets.items():
        assert len(ids) == int(2 * 1862 * percent / 100) and set(ids) <= train  # 37 and 372
        if draw > 0:
            assert abs(2 * sum(item in real_positives for item in ids) - len(ids)) <= 1
    assert real_partition.subsets[10, 1] != real_partition.subsets[10, 2]


def test_draw0_replays_the_reference_numpy_calls(real_partition, real_positives) -> None:
    train = real_partition.splits["train"]
    state = np.random.RandomState(42)
    for _ in range(2):  # the training dataset is constructed twice
        negatives = np.array([item for item in train if item not in real_positives], dtype=object)
        chosen = set(state.choice(negatives, size=1862, replace=False))
        balanced = [item for item in train if item in real_positives] + [item for item in train if item in chosen]
        subset = set(state.choice(np.array(balanced, dtype=object), size=37, replace=False))
    assert set(real_partition.subsets[1, 0]) == subset


def test_training_sampler_balances(real_partition, real_positives) -> None:
    balanced = siim.balanced_training_ids(real_partition.splits["train"], real_positives, np.random.RandomState(0))
    assert len(balanced) == 3724 and sum(item in real_positives for item in balanced) == 1862


def test_shipped_lists_equal_the_real_split(real_partition) -> None:
    files = real_partition.files()
    shipped = sorted((SHIPPED_SPLITS / "siim" / "segmentation").glob("*.txt"))
    assert sorted(path.name for path in shipped) == sorted(files)
    for path in shipped:
        assert read_ids(path) == files[path.name], path


def reference_rle2mask(rle: str, width: int, height: int) -> np.ndarray:
    """The reference's decoding loop (mgca/datasets/segmentation_dataset.py), for comparison."""
    mask = np.zeros(width * height)
    array = np.asarray([int(x) for x in rle.split()])
    current = 0
    for start, length in zip(array[0::2], array[1::2]):
        current += start
        mask[current: current + length] = 1
        current += length
    return mask.reshape(width, height).T


def test_rle_decoding_hand_computed() -> None:
    mask = siim.rle_to_mask("1 2 3 1", width=3, height=3)  # flat pixels 1, 2 and 6, column-major
    expected = np.zeros((3, 3), bool)
    expected[1, 0] = expected[2, 0] = expected[0, 2] = True
    np.testing.assert_array_equal(mask, expected)
    tall = siim.rle_to_mask("48 48", width=64, height=48)  # non-square: the second column
    assert tall.shape == (48, 64) and tall[:, 1].all() and tall.sum() == 48
    with pytest.raises(ValueError, match="beyond the 3x3 image"):
        siim.rle_to_mask("5 5", 3, 3)


def test_rle_decoding_equals_the_reference_on_real_rows(real_rows) -> None:
    for rle in real_rows.loc[real_rows["EncodedPixels"] != siim.NEGATIVE, "EncodedPixels"].iloc[:25]:
        np.testing.assert_array_equal(siim.rle_to_mask(rle, 1024, 1024), reference_rle2mask(rle, 1024, 1024) > 0)


# --- a tiny raw folder in the official layout --------------------------------------------------

N_IMAGES = 30
BOX_RLE = " ".join(f"{64 * 4 + 8 if column == 0 else 64 - 16} 16" for column in range(8))  # x 4..11, y 8..23


def make_raw(root: Path, demo: bool = True) -> Path:
    """N_IMAGES 64 × 64 images in nested study/series folders; every third positive (every sixth
    with two instances); header and values written with GLoRIA-style leading spaces (B3)."""
    lines = ["ImageId, EncodedPixels"]
    rng = np.random.default_rng(1)
    for index in range(N_IMAGES):
        image_id = f"1.2.276.0.{index}"
        if index % 3 == 0:
            lines.append(f"{image_id}, {BOX_RLE}")
            if index % 6 == 0:
                lines.append(f"{image_id}, {64 * 40} 64")  # a second instance: column 40
        else:
            lines.append(f"{image_id}, -1")
        folder = root / siim.IMAGES_DIR / f"1.2.276.0.study{index}" / f"1.2.276.0.series{index}"
        write_dicom(folder / f"{image_id}.dcm", rng.integers(0, 255, (64, 64), dtype=np.uint8), jpeg=index % 2 == 0)
    (root / siim.LABELS_FILE).write_text("\n".join(lines) + "\n")
    if demo:
        (root / DEMO_MARKER).write_text("written by the tests\n")
    return root


def options_for(tmp_path: Path, raw: Path, **changes) -> PrepareOptions:
    return PrepareOptions(raw=raw, out=tmp_path / "data" / "siim", image_size=32, workers=1, **changes)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("siim")
    raw = make_raw(root / "raw")
    siim.prepare(options_for(root, raw))
    return PreparedDataset(root / "data" / "siim")


def test_registered() -> None:
    assert DATASETS.get("siim").partitions == ("segmentation",)


def test_prepared_layout(prepared: PreparedDataset) -> None:
    manifest = prepared.manifest
    assert manifest.demo and manifest.counts["images"] == N_IMAGES
    assert [manifest.counts[f"segmentation/{split}"] for split in ("train", "val", "test")] == [21, 5, 4]
    assert manifest.extra["train_sampler"]["function"] == siim.SAMPLER
    record = prepared.records.loc["1.2.276.0.7"]
    assert record["path"] == f"{siim.IMAGES_DIR}/1.2.276.0.study7/1.2.276.0.series7/1.2.276.0.7.dcm"  # B4
    assert int(prepared.records.loc["1.2.276.0.0", "instances"]) == 2 and int(record["positive"]) == 0
    assert prepared.images(prepared.split_ids("val")).shape == (5, 32, 32)


def test_masks_merge_all_rows_of_an_image(prepared: PreparedDataset) -> None:
    mask = cv2.imread(str(prepared.root / "masks" / "1.2.276.0.0.png"), cv2.IMREAD_UNCHANGED)
    expected = np.zeros((32, 32), np.uint8)
    expected[4:12, 2:6] = 255  # the box, x 4..11 / y 8..23 at half size
    expected[:, 20] = 255  # the second instance, column 40
    np.testing.assert_array_equal(mask, expected)
    assert not cv2.imread(str(prepared.root / "masks" / "1.2.276.0.1.png"), cv2.IMREAD_UNCHANGED).any()


def test_tiny_split_differs_from_the_shipped_lists(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", demo=False)
    with pytest.raises(DataError, match=r"(?s)segmentation/test.txt: 4 IDs, shipped 1807.*--no-verify"):
        siim.prepare(options_for(tmp_path, raw))
    assert not (tmp_path / "data" / "siim").exists()  # nothing written before verification passed
    assert siim.prepare(options_for(tmp_path, raw, verify_shipped=False)).extra["verification"] == "skipped: --no-verify"


def test_renamed_column(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    labels = raw / siim.LABELS_FILE
    labels.write_text(labels.read_text().replace("EncodedPixels", "Encoded Pixels", 1))
    with pytest.raises(DataError, match=r"train-rle.csv: missing column\(s\) 'EncodedPixels' \(renamed to 'Encoded Pixels'\?\)"):
        siim.prepare(options_for(tmp_path, raw))


def test_malformed_and_mixed_rle_rows_name_the_line(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    labels = raw / siim.LABELS_FILE
    original = labels.read_text()
    labels.write_text(original.replace(f"1.2.276.0.3, {BOX_RLE}", "1.2.276.0.3, 12 x"))
    with pytest.raises(DataError, match=r"train-rle.csv line 6 \(1.2.276.0.3\): EncodedPixels is neither"):
        siim.prepare(options_for(tmp_path, raw))
    labels.write_text(original + "1.2.276.0.1, 10 2\n")
    with pytest.raises(DataError, match=r"lines \[4, 37\]: image 1.2.276.0.1 has both empty \('-1'\) and non-empty RLE rows"):
        siim.prepare(options_for(tmp_path, raw))


def test_rle_that_does_not_fit_the_image(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    labels = raw / siim.LABELS_FILE
    labels.write_text(labels.read_text().replace("1.2.276.0.3, 264", "1.2.276.0.3, 4100"))  # 4100 > 64 * 64
    with pytest.raises(DataError, match=r"train-rle.csv line 6 \(1.2.276.0.3\): RLE run ends at pixel \d+, beyond the 64x64"):
        siim.prepare(options_for(tmp_path, raw))
    manifest = siim.prepare(options_for(tmp_path, raw, on_error="exclude"))
    assert [(item["row"], item["id"]) for item in manifest.excluded] == [(6, "1.2.276.0.3")]
    assert manifest.counts["images"] == N_IMAGES - 1


def test_missing_and_corrupt_dicoms(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    next((raw / siim.IMAGES_DIR).rglob("1.2.276.0.4.dcm")).unlink()
    next((raw / siim.IMAGES_DIR).rglob("1.2.276.0.5.dcm")).write_bytes(b"not a dicom")
    with pytest.raises(DataError, match=r"1.2.276.0.4.dcm: DICOM file missing"):
        siim.prepare(options_for(tmp_path, raw))
    manifest = siim.prepare(options_for(tmp_path, raw, on_error="exclude"))
    assert sorted(Path(item["file"]).name for item in manifest.excluded) == ["1.2.276.0.4.dcm", "1.2.276.0.5.dcm"]
    assert manifest.counts["images"] == N_IMAGES - 2


def test_duplicate_dicom_for_one_image(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    write_dicom(raw / siim.IMAGES_DIR / "elsewhere" / "1.2.276.0.2.dcm", np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="1.2.276.0.2 has two DICOMs"):
        siim.prepare(options_for(tmp_path, raw))


def test_split_is_deterministic(real_rows) -> None:
    image_ids = real_rows["ImageId"].unique().tolist()
    assert siim.split_images(image_ids) == siim.split_images(image_ids)


def test_make_splits_tool_regenerates_the_shipped_files(tmp_path: Path) -> None:
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("make_splits", Path(__file__).parents[2] / "tools" / "make_splits.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    sizes = tool.write_shipped("siim", REAL_LABELS, root=tmp_path)
    assert sizes["segmentation/train.txt"] == 8432
    for path in (SHIPPED_SPLITS / "siim").rglob("*"):
        if path.is_file():
            assert (tmp_path / "siim" / path.relative_to(SHIPPED_SPLITS / "siim")).read_bytes() == path.read_bytes(), path
    assert json.loads((tmp_path / "siim" / "source.json").read_text())["copy_used"].startswith("torchxrayvision==1.5.7")


def test_make_splits_tool_refuses_a_malformed_labels_option() -> None:
    import argparse
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", Path(__file__).parents[2] / "tools" / "make_splits.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    for bad in ("train-rle.csv", "siimm=train-rle.csv", "siim="):
        with pytest.raises(argparse.ArgumentTypeError, match="expected DATASET=PATH"):
            tool.labels_option(bad)
    assert tool.labels_option("siim=/raw/train-rle.csv") == ("siim", Path("/raw/train-rle.csv"))


def test_make_splits_tool_keeps_the_shipped_lists_when_the_label_file_is_bad(tmp_path: Path) -> None:
    # Regression: the dataset's folder was deleted before the label file was read.
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_splits", Path(__file__).parents[2] / "tools" / "make_splits.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    shipped = tmp_path / "siim" / "segmentation" / "train.txt"
    shipped.parent.mkdir(parents=True)
    shipped.write_text("kept\n")
    (tmp_path / "bad.csv").write_text("ImageId,Pixels\na,-1\n")
    with pytest.raises(DataError, match="missing column"):
        tool.write_shipped("siim", tmp_path / "bad.csv", root=tmp_path)
    assert shipped.read_text() == "kept\n"


def test_an_rle_of_zero_length_runs_is_a_negative(tmp_path: Path) -> None:
    """``"5 0"`` encodes an empty mask, like ``-1``: the image is negative (records, sampler,
    scorability), not a positive whose mask has no pixel."""
    raw = make_raw(tmp_path / "raw")
    labels = raw / siim.LABELS_FILE
    labels.write_text(labels.read_text().replace("1.2.276.0.1, -1", "1.2.276.0.1, 5 0").replace("1.2.276.0.2, -1", "1.2.276.0.2, 7 0 9 0"))
    rows = siim.read_rle_rows(labels)
    assert siim.encodes_pixels(rows).tolist() == [value not in ("-1", "5 0", "7 0 9 0") for value in rows["EncodedPixels"]]
    siim.prepare(options_for(tmp_path, raw))
    records = PreparedDataset(tmp_path / "data" / "siim").records
    assert records.loc[["1.2.276.0.1", "1.2.276.0.2"], ["positive", "instances"]].to_numpy().tolist() == [[0, 0], [0, 0]]
    assert int(records["positive"].sum()) == 10  # every third image, as without the empty rows
    labels.write_text(labels.read_text() + "1.2.276.0.3, 5 0\n")  # an empty row beside an instance
    with pytest.raises(DataError, match=r"image 1.2.276.0.3 has both empty \('-1'\) and non-empty RLE rows"):
        siim.read_rle_rows(labels)
