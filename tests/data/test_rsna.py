"""RSNA Pneumonia: the reference's two partitions on the real label file, and preparation of a
tiny raw folder in the official layout, including bad inputs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from pycocotools.coco import COCO

from benchmark.cli import main as cli_main
from benchmark.data.datasets import rsna
from benchmark.data.dicom import write_dicom
from benchmark.data.prepared import DataError, PreparedDataset, read_ids
from benchmark.data.preparation import DEMO_MARKER, SHIPPED_SPLITS, verify_partitions
from benchmark.data.registry import DATASETS, PrepareOptions

torchxrayvision = pytest.importorskip("torchxrayvision")
REAL_LABELS = Path(os.path.dirname(torchxrayvision.__file__)) / "data" / "kaggle_stage_2_train_labels.csv.zip"

EXPECTED = {  # PROTOCOL section 4.3 / 4.4 / 4.5: sizes and positives per split
    "classification": {"train": (18678, 4162), "val": (4003, 928), "test": (4003, 922)},
    "detection": {"train": (16010, 3579), "val": (5337, 1182), "test": (5337, 1251)},
}
SUBSET_SIZES = {"classification": {1: 187, 10: 1868}, "detection": {1: 160, 10: 1601}}


@pytest.fixture(scope="module")
def real_patients() -> pd.DataFrame:
    return rsna.read_patients(REAL_LABELS)


@pytest.fixture(scope="module")
def real_partitions(real_patients: pd.DataFrame) -> dict:
    return {partition.name: partition for partition in rsna.make_partitions(real_patients)}


def test_real_file_has_one_record_per_patient(real_patients: pd.DataFrame) -> None:
    assert len(real_patients) == 26684 and real_patients["target"].sum() == 6012
    assert real_patients["boxes"].map(len).sum() == 9555 and real_patients["boxes"].map(len).max() == 4
    assert real_patients["id"].tolist() == sorted(real_patients["id"])  # the reference's groupby order


@pytest.mark.parametrize("name", ["classification", "detection"])
def test_real_split_sizes_positives_and_disjointness(real_patients, real_partitions, name: str) -> None:
    target = dict(zip(real_patients["id"], real_patients["target"]))
    splits = real_partitions[name].splits
    for split, (size, positives) in EXPECTED[name].items():
        assert len(splits[split]) == size and sum(target[item] for item in splits[split]) == positives
        assert len(set(splits[split])) == size
    assert set().union(*map(set, splits.values())) == set(target)  # disjoint (Partition checks) and complete


@pytest.mark.parametrize("name", ["classification", "detection"])
def test_real_subsets_sizes_and_stratification(real_patients, real_partitions, name: str) -> None:
    target = dict(zip(real_patients["id"], real_patients["target"]))
    partition = real_partitions[name]
    train = set(partition.splits["train"])
    share = EXPECTED[name]["train"][1] / EXPECTED[name]["train"][0]
    for (percent, draw), ids in partition.subsets.items():
        assert len(ids) == SUBSET_SIZES[name][percent] and set(ids) <= train
        if draw > 0:  # stratified: positives within one image of the training share
            assert abs(sum(target[item] for item in ids) - share * len(ids)) <= 1
    assert partition.subsets[1, 1] != partition.subsets[1, 2] != partition.subsets[1, 0]


def test_reference_draw0_rules(real_partitions) -> None:
    train = real_partitions["classification"].splits["train"]
    expected = set(pd.DataFrame({"id": train}).sample(frac=0.01, random_state=42)["id"])
    assert set(real_partitions["classification"].subsets[1, 0]) == expected
    det_train = real_partitions["detection"].splits["train"]
    state = np.random.RandomState(42)
    state.choice(len(det_train), 1601, replace=False)
    second = state.choice(len(det_train), 1601, replace=False)
    assert set(real_partitions["detection"].subsets[10, 0]) == {det_train[i] for i in second}


def test_partitions_relate_as_the_reference_derives(real_partitions) -> None:
    cls, det = real_partitions["classification"].splits, real_partitions["detection"].splits
    assert set(det["train"]) <= set(cls["train"])
    assert len(set(cls["test"]) & set(det["test"])) == 2748 and len(set(cls["test"]) & set(det["val"])) == 1255


def test_shipped_lists_equal_the_real_splits(real_partitions) -> None:
    for partition in real_partitions.values():
        files = partition.files()
        shipped = sorted((SHIPPED_SPLITS / "rsna" / partition.name).glob("*.txt"))
        assert [path.name for path in shipped] == sorted(files)
        for path in shipped:
            assert read_ids(path) == files[path.name], path


def test_verification_of_a_changed_label_file_names_the_differences(real_patients, tmp_path: Path) -> None:
    options = PrepareOptions(raw=tmp_path, out=tmp_path / "out")
    _, status = verify_partitions("rsna", rsna.make_partitions(real_patients), options)
    assert status.startswith("passed: 18 ID lists")
    with pytest.raises(DataError, match=r"(?s)classification/test.txt: 4002 IDs, shipped 4003; \d+ missing.*--no-verify"):
        verify_partitions("rsna", rsna.make_partitions(real_patients.iloc[1:]), options)


# --- a tiny raw folder in the official layout --------------------------------------------------

SIZE = 64
N_PATIENTS = 40


def make_raw(root: Path, demo: bool = True) -> Path:
    """N_PATIENTS patients on 64 × 64 DICOMs; every 4th positive (every 8th with two boxes)."""
    rows = []
    rng = np.random.default_rng(0)
    for index in range(N_PATIENTS):
        patient = f"{index:04d}-tiny"
        if index % 4 == 0:
            rows.append([patient, 10, 12, 20, 16, 1])
            if index % 8 == 0:
                rows.append([patient, 40.5, 40, 20, 10, 1])
        else:
            rows.append([patient, "", "", "", "", 0])
        pixels = rng.integers(0, 4096, (SIZE, SIZE), dtype=np.uint16)
        write_dicom(root / rsna.IMAGES_DIR / f"{patient}.dcm", pixels, "MONOCHROME1" if index % 2 else "MONOCHROME2")
    pd.DataFrame(rows, columns=list(rsna.COLUMNS)).to_csv(root / rsna.LABELS_FILE, index=False)
    if demo:
        (root / DEMO_MARKER).write_text("written by the tests\n")
    return root


def options_for(tmp_path: Path, raw: Path, **changes) -> PrepareOptions:
    return PrepareOptions(raw=raw, out=tmp_path / "data" / "rsna", image_size=32, workers=1, **changes)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> PreparedDataset:
    root = tmp_path_factory.mktemp("rsna")
    raw = make_raw(root / "raw")
    assert cli_main(["prepare", "rsna", "--raw", str(raw), "--out", str(root / "data"), "--image-size", "32", "--workers", "1"]) == 0
    return PreparedDataset(root / "data" / "rsna")


def test_registered() -> None:
    assert DATASETS.get("rsna").partitions == ("classification", "detection")


def test_prepared_layout_and_manifest(prepared: PreparedDataset) -> None:
    manifest = prepared.manifest
    assert manifest.demo and manifest.extra["verification"].startswith("skipped: demo")
    assert manifest.partitions == ["classification", "detection"] and manifest.image_mode == "stretch"
    assert manifest.counts["images"] == N_PATIENTS and manifest.source_files[0].path == rsna.LABELS_FILE
    for partition in manifest.partitions:
        ids = [item for split in ("train", "val", "test") for item in prepared.split_ids(split, partition=partition)]
        assert sorted(ids) == sorted(prepared.records.index)
    assert any("10674/26684" in note for note in manifest.notes)
    assert prepared.images(prepared.split_ids("test", partition="detection")).shape[1:] == (32, 32)


def test_records_hold_boxes_in_original_pixels(prepared: PreparedDataset) -> None:
    record = prepared.records.loc["0000-tiny"]
    assert json.loads(record["boxes"]) == [[10.0, 12.0, 30.0, 28.0], [40.5, 40.0, 60.5, 50.0]]
    assert int(record["target"]) == 1 and (int(record["width"]), int(record["height"])) == (SIZE, SIZE)
    assert json.loads(prepared.records.loc["0001-tiny", "boxes"]) == []
    assert prepared.records["split_detection"].isin(["train", "val", "test"]).all()


def test_coco_annotations_per_detection_split(prepared: PreparedDataset) -> None:
    for split in ("train", "val", "test"):
        coco = COCO(str(prepared.root / "annotations" / f"{split}.json"))
        ids = prepared.split_ids(split, partition="detection")
        assert [image["file_name"] for image in coco.dataset["images"]] == ids  # negatives included
        boxes = sum(len(json.loads(prepared.records.loc[item, "boxes"])) for item in ids)
        assert len(coco.getAnnIds()) == boxes


def test_box_masks_at_cache_size(prepared: PreparedDataset) -> None:
    mask = cv2.imread(str(prepared.root / "masks" / "0004-tiny.png"), cv2.IMREAD_UNCHANGED)
    expected = np.zeros((32, 32), np.uint8)
    expected[6:14, 5:15] = 255  # box (10, 12)-(30, 28) on 64 px, halved
    np.testing.assert_array_equal(mask, expected)
    assert not cv2.imread(str(prepared.root / "masks" / "0001-tiny.png"), cv2.IMREAD_UNCHANGED).any()


def test_refuses_to_overwrite(prepared: PreparedDataset) -> None:
    raw = prepared.root.parent.parent / "raw"
    with pytest.raises(DataError, match="already prepared"):
        rsna.prepare(PrepareOptions(raw=raw, out=prepared.root, image_size=32, workers=1))


def test_real_sized_split_needs_the_full_label_file(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw", demo=False)
    with pytest.raises(DataError, match="lists 40 patients, but the detection partition holds out 10674"):
        rsna.prepare(options_for(tmp_path, raw))


def test_renamed_column(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    labels = raw / rsna.LABELS_FILE
    labels.write_text(labels.read_text().replace("Target", "Label", 1))
    with pytest.raises(DataError, match=r"stage_2_train_labels.csv: missing column\(s\) 'Target'"):
        rsna.prepare(options_for(tmp_path, raw))


@pytest.mark.parametrize("damage", ["missing", "corrupt", "truncated"])
def test_unreadable_image_raises_or_is_excluded(tmp_path: Path, damage: str) -> None:
    raw = make_raw(tmp_path / "raw")
    path = raw / rsna.IMAGES_DIR / "0005-tiny.dcm"
    if damage == "missing":
        path.unlink()
    elif damage == "corrupt":
        path.write_bytes(b"\x00garbage" * 50)
    else:
        path.write_bytes(path.read_bytes()[:-2000])
    with pytest.raises(DataError, match="0005-tiny.dcm"):
        rsna.prepare(options_for(tmp_path, raw))
    manifest = rsna.prepare(options_for(tmp_path, raw, on_error="exclude"))
    assert manifest.counts["images"] == N_PATIENTS - 1
    assert [Path(item["file"]).name for item in manifest.excluded] == ["0005-tiny.dcm"]
    prepared = PreparedDataset(options_for(tmp_path, raw).out)
    assert all("0005-tiny" not in prepared.split_ids(split, partition="detection") for split in ("train", "val", "test"))


def test_box_outside_the_image_names_the_row(tmp_path: Path) -> None:
    raw = make_raw(tmp_path / "raw")
    labels = raw / rsna.LABELS_FILE
    frame = pd.read_csv(labels, dtype=str, keep_default_na=False)
    frame.loc[frame["patientId"] == "0004-tiny", "width"] = "60"  # 10 + 60 > 64
    frame.to_csv(labels, index=False)
    line = frame.index[frame["patientId"] == "0004-tiny"][0] + 2
    with pytest.raises(DataError, match=rf"stage_2_train_labels.csv line {line} \(0004-tiny\): box .* outside the 64x64"):
        rsna.prepare(options_for(tmp_path, raw))
    manifest = rsna.prepare(options_for(tmp_path, raw, on_error="exclude"))
    assert [(item["row"], item["id"]) for item in manifest.excluded] == [(line, "0004-tiny")]
    assert manifest.counts["images"] == N_PATIENTS - 1
    assert not (options_for(tmp_path, raw).out / "masks" / "0004-tiny.png").exists()


def test_split_is_deterministic(real_patients) -> None:
    ids = real_patients["id"].tolist()
    assert rsna.split_patients(ids, "detection") == rsna.split_patients(ids, "detection")
