"""CheXpert: the split on the real train.csv (sizes, patient disjointness, shipped lists) and a
tiny raw folder end to end, including bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from benchmark.data.datasets import chexpert
from benchmark.data.prepared import DataError, PreparedDataset, read_ids
from benchmark.data.preparation import DEMO_MARKER, SHIPPED_SPLITS, Partition, stale_reason, verify_partitions
from benchmark.data.registry import DATASETS, PrepareOptions

torchxrayvision = pytest.importorskip("torchxrayvision")
REAL_TRAIN_CSV = Path(torchxrayvision.__file__).parent / "data" / "chexpert_train.csv.gz"


# --- the real train.csv ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_table() -> pd.DataFrame:
    return chexpert.read_label_table(REAL_TRAIN_CSV)


@pytest.fixture(scope="module")
def real_partition(real_table):
    return chexpert.training_partition(real_table, test_ids=[])


@pytest.fixture(scope="module")
def real_holdout(real_table):
    return chexpert.holdout_partition(real_table)


def test_holdout_matches_the_reference_rule(real_table):
    # PROTOCOL.md 3.2: candidate pools of 1,087 / 1,034 / 537 / 2,257 / 2,425 rows
    pools = chexpert.holdout_pools(real_table)
    assert {task: len(pool) for task, pool in pools.items()} == {
        "Atelectasis": 1087, "Cardiomegaly": 1034, "Consolidation": 537, "Edema": 2257, "Pleural Effusion": 2425}
    holdout = real_table.loc[chexpert.holdout_5x200(real_table)]
    assert len(holdout) == 1000 and holdout["id"].is_unique
    assert (holdout["Frontal/Lateral"] == "Frontal").all()
    # every hold-out row is positive for exactly one competition task and negative elsewhere
    labels = holdout[list(chexpert.LABEL_COLUMNS)].fillna(0)
    assert ((labels == 1).sum(axis=1) == 1).all() and ((labels == 0).sum(axis=1) == len(chexpert.LABEL_COLUMNS) - 1).all()
    assert (labels[list(chexpert.COMPETITION_TASKS)] == 1).sum().tolist() == [200] * 5
    # the reference's order: per task in competition order, pandas' sample(n=200, random_state=0) of the pool,
    # i.e. RandomState(0).choice(len(pool), 200, replace=False) positions of the pool in file order
    first = pools["Atelectasis"].index[np.random.RandomState(0).choice(1087, 200, replace=False)]
    assert list(holdout.index[:200]) == list(first)


def test_holdout_partition_is_test_only_with_one_hot_labels(real_table, real_holdout):
    assert (real_holdout.name, real_holdout.splits["train"], real_holdout.splits["val"]) == ("holdout_5x200", [], [])
    ids = real_holdout.splits["test"]
    assert ids == real_table.loc[chexpert.holdout_5x200(real_table), "id"].tolist()
    labels = chexpert.competition_labels(real_table.set_index("id").loc[ids])
    assert (labels.sum(axis=1) == 1).all() and labels.sum().tolist() == [200] * 5


def test_real_split_sizes_and_patient_disjointness(real_table, real_partition):
    train, val = real_partition.splits["train"], real_partition.splits["val"]
    assert (len(train), len(val)) == (185_027, 5_000)
    patient = dict(zip(real_table["id"], real_table["patient"]))
    assert not {patient[i] for i in train} & {patient[i] for i in val}
    holdout_ids = set(real_table.loc[chexpert.holdout_5x200(real_table), "id"])
    assert not holdout_ids & (set(train) | set(val))
    # every frontal image outside the hold-out is in exactly one of train/val
    frontal = set(real_table.loc[real_table["Frontal/Lateral"] == "Frontal", "id"])
    assert set(train) | set(val) == frontal - holdout_ids
    sizes = {key: len(ids) for key, ids in real_partition.subsets.items()}
    assert sizes == {(1, 0): 1850, (1, 1): 1850, (1, 2): 1850, (10, 0): 18503, (10, 1): 18503, (10, 2): 18503}


def test_draw_zero_is_the_reference_sample_and_other_draws_differ(real_partition):
    train = real_partition.splits["train"]
    expected = set(pd.Series(train).sample(frac=0.01, random_state=42))
    assert set(real_partition.subsets[1, 0]) == expected
    assert set(real_partition.subsets[1, 1]) != expected and set(real_partition.subsets[1, 1]) <= set(train)


@pytest.mark.slow  # a second full split; the shipped-list test already pins the result
def test_split_is_deterministic(real_table, real_partition):
    again = chexpert.training_partition(real_table, test_ids=[])
    assert again.files() == real_partition.files()


def test_shipped_lists_equal_the_split_of_the_public_train_csv(real_partition, real_holdout):
    folder = SHIPPED_SPLITS / "chexpert" / "classification"
    shipped = sorted(path.name for path in folder.glob("*.txt"))
    assert shipped == sorted(name for name in real_partition.files() if name != "test.txt")
    for name in shipped:
        assert read_ids(folder / name) == real_partition.files()[name], name
    # the 5x200 hold-out: its test list only; source.json records its empty training and validation lists
    holdout = SHIPPED_SPLITS / "chexpert" / "holdout_5x200"
    assert sorted(path.name for path in holdout.glob("*")) == ["test.txt"]
    assert read_ids(holdout / "test.txt") == real_holdout.splits["test"]
    sizes = json.loads((SHIPPED_SPLITS / "chexpert" / "source.json").read_text())["sizes"]
    assert {key: value for key, value in sizes.items() if key.startswith("holdout_5x200/")} == {
        "holdout_5x200/train.txt": 0, "holdout_5x200/val.txt": 0, "holdout_5x200/test.txt": 1000}


def test_preparation_verifies_against_the_shipped_lists(tmp_path, real_partition, real_holdout):
    options = PrepareOptions(raw=tmp_path, out=tmp_path / "out")
    _, status = verify_partitions("chexpert", [real_partition], options)
    assert status.startswith("passed: 8 ID lists")
    _, status = verify_partitions("chexpert", [real_partition, real_holdout], options)
    assert status.startswith("passed: 9 ID lists")
    swapped = Partition("holdout_5x200", {"train": [], "val": [], "test": real_holdout.splits["test"][1:]
                                          + real_partition.splits["train"][:1]})
    with pytest.raises(DataError, match=r"holdout_5x200/test\.txt: 1000 IDs, shipped 1000; 1 missing"):
        verify_partitions("chexpert", [real_partition, swapped], options)
    moved = real_partition.splits["val"][:1]
    altered = real_partition.without(set(moved))
    altered.splits["train"] = altered.splits["train"] + moved
    with pytest.raises(DataError, match=r"classification/val\.txt: 4999 IDs, shipped 5000; 1 missing"):
        verify_partitions("chexpert", [altered], options)


# --- the demo hold-out size -----------------------------------------------------------------------


def label_frame(kept: int, candidates: int = 0, laterals: int = 0) -> pd.DataFrame:
    """A parsed train.csv (label columns as floats): ``kept`` frontal rows that are no 5x200 candidate (half empty,
    half Edema with a support device), ``candidates`` frontal 5x200 candidates (Edema alone) and ``laterals``
    lateral Edema-only rows."""
    empty = dict.fromkeys(chexpert.LABEL_COLUMNS, np.nan)
    rows = ([dict(empty, **{"Frontal/Lateral": "Frontal"})] * (kept - kept // 2)
            + [dict(empty, **{"Frontal/Lateral": "Frontal", "Edema": 1.0, "Support Devices": 1.0})] * (kept // 2)
            + [dict(empty, **{"Frontal/Lateral": "Frontal", "Edema": 1.0})] * candidates
            + [dict(empty, **{"Frontal/Lateral": "Lateral", "Edema": 1.0})] * laterals)
    return pd.DataFrame(rows, columns=["Frontal/Lateral", *chexpert.LABEL_COLUMNS])


@pytest.mark.parametrize(("kept", "per_task"), [
    (0, 10), (439, 10), (440, 11), (479, 11), (1000, 25), (1599, 39), (1600, 40), (2007, 40), (5000, 40)])
def test_demo_holdout_per_task_is_one_per_40_kept_frontal_rows_within_10_to_40(kept, per_task):
    # floor(kept / 40) clipped to [10, 40]; candidates and lateral rows do not count, so the rows the demo writer
    # adds (candidates) leave the size unchanged
    assert chexpert.demo_holdout_per_task(label_frame(kept)) == per_task
    assert chexpert.demo_holdout_per_task(label_frame(kept, candidates=200, laterals=300)) == per_task


def test_split_sizes_take_the_demo_rule_for_demo_data_only(tmp_path):
    table = label_frame(1000, candidates=125)  # 25 per task would be drawn
    assert chexpert.split_sizes(PrepareOptions(raw=tmp_path, out=tmp_path / "out"), table) == chexpert.REFERENCE_SIZES
    (tmp_path / DEMO_MARKER).write_text("test data\n")
    # 1,125 frontal rows, 125 in the hold-out: validation 10% of the 1,000 left
    assert chexpert.split_sizes(PrepareOptions(raw=tmp_path, out=tmp_path / "out"), table) == chexpert.SplitSizes(25, 100)


# --- a tiny raw folder ---------------------------------------------------------------------------

LABELS = {task: "" for task in chexpert.LABEL_COLUMNS}
# 5x200 candidates of the tiny folder: one frontal image of its own patient each, 12 for Edema (so the hold-out
# draws 10 of them), the demo's 10 for every other task; numbered from patient 100 on, in competition-task order
CANDIDATES = {"Atelectasis": 10, "Cardiomegaly": 10, "Consolidation": 10, "Edema": 12, "Pleural Effusion": 10}
FIRST_CANDIDATE = 100


def write_jpg(path: Path, seed: int, size: tuple[int, int] = (40, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size, dtype=np.uint8)
    assert cv2.imwrite(str(path), pixels)


def candidate_ids() -> dict[str, list[str]]:
    """Task -> the IDs of the tiny folder's 5x200 candidates, in file order."""
    ids, number = {}, FIRST_CANDIDATE
    for task, count in CANDIDATES.items():
        ids[task] = [f"patient{n:05d}_study1_view1_frontal" for n in range(number, number + count)]
        number += count
    return ids


def make_raw(root: Path, patients: int = 20) -> Path:
    """CheXpert-v1.0-small layout: per patient two frontal and one lateral image; 3 valid patients,
    each with one frontal image positive for every competition task; then the 5x200 candidates
    (:data:`CANDIDATES`) and two rows that look like candidates but are not: a frontal Edema image
    with a support device, and a lateral Edema-only image."""
    raw = root / "CheXpert-v1.0-small"
    rows = {"train": [], "valid": []}

    def add(split: str, number: int, study: int, view: str, labels: dict[str, str]) -> None:
        relative = f"{split}/patient{number:05d}/study{study}/{view}.jpg"
        write_jpg(raw / relative, number * 10 + study)
        rows[split].append({"Path": f"CheXpert-v1.0-small/{relative}", "Sex": "Female", "Age": "50",
                            "Frontal/Lateral": "Lateral" if "lateral" in view else "Frontal", "AP/PA": "AP", **labels})

    for split, first, count in (("train", 1, patients), ("valid", 64541, 3)):
        for number in range(first, first + count):
            for study, view in ((1, "view1_frontal"), (2, "view1_frontal"), (2, "view2_lateral")):
                labels = dict(LABELS, **{"Atelectasis": "-1.0", "Cardiomegaly": "-1.0", "Edema": "1.0"} if number % 2 else {})
                if split == "valid" and study == 1:  # every task positive and negative in the test split (scorable)
                    labels.update({task: "1.0" for task in chexpert.COMPETITION_TASKS})
                add(split, number, study, view, labels)
    for task, ids in candidate_ids().items():
        for image_id in ids:
            add("train", int(image_id[7:12]), 1, "view1_frontal", dict(LABELS, **{task: "1.0", "No Finding": "0.0"}))
    add("train", 90, 1, "view1_frontal", dict(LABELS, Edema="1.0", **{"Support Devices": "1.0"}))
    add("train", 91, 1, "view2_lateral", dict(LABELS, Edema="1.0"))
    for split, frame in rows.items():
        pd.DataFrame(frame).to_csv(raw / f"{split}.csv", index=False)
    (raw / DEMO_MARKER).write_text("test data\n")
    return raw


def prepare(raw: Path, out: Path, **options) -> PreparedDataset:
    DATASETS.get("chexpert").prepare(PrepareOptions(raw=raw, out=out, image_size=32, workers=1, **options))
    return PreparedDataset(out)


def test_tiny_folder_end_to_end(tmp_path):
    data = prepare(make_raw(tmp_path), tmp_path / "out")
    counts = data.manifest.counts
    # 40 + 52 + 1 frontal training images, 50 in the hold-out: validation = whole patients until >= 10% of the
    # 43 left (4), training the rest
    assert (counts["classification/train"], counts["classification/val"], counts["classification/test"]) == (39, 4, 6)
    assert data.manifest.image_mode == "letterbox" and data.manifest.demo
    assert data.image("patient00001_study1_view1_frontal").shape == (32, 32)
    records = data.records
    # odd patients: Atelectasis -1 -> 1 (U-Ones), Cardiomegaly -1 -> 0 (U-Zeros), Edema 1; NaN -> 0
    assert records.loc["patient00001_study2_view1_frontal", list(chexpert.COMPETITION_TASKS)].tolist() == [1, 0, 0, 1, 0]
    assert records.loc["patient00002_study1_view1_frontal", list(chexpert.COMPETITION_TASKS)].tolist() == [0, 0, 0, 0, 0]
    assert records.loc["patient64541_study1_view1_frontal", "split_classification"] == "test"
    assert "patient00001_study2_view2_lateral" not in records.index
    train_patients = {records.loc[i, "patient"] for i in data.split_ids("train", partition="classification")}
    assert not train_patients & {records.loc[i, "patient"] for i in data.split_ids("val", partition="classification")}
    assert len(data.split_ids("train", 10, 2, partition="classification")) == 4


def test_tiny_folder_holdout_partition(tmp_path):
    data = prepare(make_raw(tmp_path), tmp_path / "out")
    assert data.manifest.partitions == ["classification", "holdout_5x200"]
    assert data.manifest.extra["holdout_pool_sizes"] == CANDIDATES  # the decoys are no candidates
    ids = data.split_ids("test", partition="holdout_5x200")
    # per task in competition order, pandas' sample(n=10, random_state=0) of its candidates in file order: all of a
    # 10-candidate pool, permuted; for Edema's 12, the positions RandomState(0).choice(12, 10, replace=False)
    expected = []
    for task, pool in candidate_ids().items():
        expected += [pool[k] for k in np.random.RandomState(0).choice(len(pool), 10, replace=False)]
    assert ids == expected and len(set(ids)) == 50
    assert data.split_ids("train", partition="holdout_5x200") == data.split_ids("val", partition="holdout_5x200") == []
    # cached, in records.csv with one-hot labels: positive for its task alone
    labels = data.records.loc[ids, list(chexpert.COMPETITION_TASKS)]
    assert (labels.sum(axis=1) == 1).all() and labels.sum().tolist() == [10] * 5
    assert [chexpert.COMPETITION_TASKS[k] for k in labels.to_numpy().argmax(1)] == [
        task for task, count in CANDIDATES.items() for _ in range(10)]
    assert data.images(ids).shape == (50, 32, 32)
    assert (data.records.loc[ids, "split_holdout_5x200"] == "test").all()
    assert (data.records.loc[ids, "split_classification"] == "").all()
    # removed from classification; the two Edema candidates left over train or validate like any image
    classification = {split: set(data.split_ids(split, partition="classification")) for split in ("train", "val", "test")}
    assert not set(ids) & set().union(*classification.values())
    leftover = set(candidate_ids()["Edema"]) - set(ids)
    assert len(leftover) == 2 and leftover <= classification["train"] | classification["val"]
    assert data.manifest.counts["holdout_5x200/test"] == 50 and data.manifest.counts["images"] == 50 + 43 + 6


def test_a_preparation_without_the_holdout_partition_is_stale(tmp_path):
    raw = make_raw(tmp_path)
    data = prepare(raw, tmp_path / "out")
    assert stale_reason(data.root, raw, 32) is None
    manifest = json.loads((data.root / "manifest.json").read_text())
    (data.root / "manifest.json").write_text(json.dumps({**manifest, "partitions": ["classification"]}))
    assert stale_reason(data.root, raw, 32) == "no partition holdout_5x200 (prepared before the preparer wrote it)"
    with pytest.raises(DataError, match=r"unknown partition 'holdout_5x200'.*--refresh"):
        PreparedDataset(data.root).split_ids("test", partition="holdout_5x200")


def test_renamed_column_names_the_file_and_column(tmp_path):
    raw = make_raw(tmp_path)
    frame = pd.read_csv(raw / "train.csv", dtype=str, keep_default_na=False)
    frame.rename(columns={"Edema": "edema"}).to_csv(raw / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv: missing column\(s\) 'Edema'"):
        prepare(raw, tmp_path / "out")


def test_bad_label_value_names_the_line(tmp_path):
    raw = make_raw(tmp_path)
    frame = pd.read_csv(raw / "train.csv", dtype=str, keep_default_na=False)
    frame.loc[4, "Edema"] = "2.0"
    frame.to_csv(raw / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train\.csv line 6: column 'Edema' holds '2.0'"):
        prepare(raw, tmp_path / "out")


def test_path_outside_the_release_layout_names_the_line(tmp_path):
    raw = make_raw(tmp_path)
    frame = pd.read_csv(raw / "valid.csv", dtype=str, keep_default_na=False)
    frame.loc[0, "Path"] = "patient64541/study1/view1_frontal.jpg"
    frame.to_csv(raw / "valid.csv", index=False)
    with pytest.raises(DataError, match=r"valid\.csv line 2: Path"):
        prepare(raw, tmp_path / "out")


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_image_raises_or_is_a_counted_exclusion(tmp_path, damage):
    raw = make_raw(tmp_path)
    image = raw / "train/patient00003/study1/view1_frontal.jpg"
    if damage == "corrupt":
        image.write_bytes(b"not a jpeg")
    else:
        image.unlink()
    with pytest.raises(DataError, match="patient00003/study1/view1_frontal.jpg"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["file"] for item in data.manifest.excluded] == [str(image)]
    assert "patient00003_study1_view1_frontal" not in data.records.index
    assert data.manifest.counts["images"] == 98
    assert all("patient00003_study1_view1_frontal" not in data.split_ids(split, partition="classification")
               for split in ("train", "val"))
