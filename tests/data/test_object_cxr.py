"""Object-CXR: annotation parsing, tight and reference boxes, and a tiny raw folder end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from benchmark.data.datasets import object_cxr
from benchmark.data.datasets.object_cxr import Shape, ShapeKind
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.registry import DATASETS, PrepareOptions

WIDTH, HEIGHT = 60, 40
ANNOTATIONS = (
    "",
    "0 10 5 20 15",
    "1 30 10 40 30;0 1 1 3 3",
    "2 10 10 30 10 30 20 10 20",
)


def write_jpg(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.random.default_rng(seed).integers(0, 255, (HEIGHT, WIDTH), dtype=np.uint8))


def make_raw(root: Path, train: int = 30, dev: int = 6) -> Path:
    raw = root / "object-CXR"
    for folder, first, count in (("train", 1, train), ("dev", 8001, dev)):
        names = [f"{number:05d}.jpg" for number in range(first, first + count)]
        for name in names:
            write_jpg(raw / folder / name, int(name[:5]))
        annotations = [ANNOTATIONS[i % len(ANNOTATIONS)] for i in range(count)]
        pd.DataFrame({"image_name": names, "annotation": annotations}).to_csv(raw / f"{folder}.csv", index=False)
    (raw / DEMO_MARKER).write_text("test data\n")
    return raw


def edit_csv(path: Path, row: int, annotation: str) -> None:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame.loc[row, "annotation"] = annotation
    frame.to_csv(path, index=False)


def prepare(raw: Path, out: Path, **options) -> PreparedDataset:
    DATASETS.get("object_cxr").prepare(PrepareOptions(raw=raw, out=out, image_size=32, workers=1, **options))
    return PreparedDataset(out)


# --- pure parts -----------------------------------------------------------------------------------


def test_parse_annotation_reads_all_three_types():
    shapes = object_cxr.parse_annotation("0 10 5 20 15; 1 30 10 40 30;2 1 2 3 4 5 0")
    assert [shape.kind for shape in shapes] == [ShapeKind.RECTANGLE, ShapeKind.ELLIPSE, ShapeKind.POLYGON]
    assert shapes[2].points.tolist() == [[1, 2], [3, 4], [5, 0]]
    assert object_cxr.parse_annotation("") == []


@pytest.mark.parametrize("text, message", [
    ("3 1 2 3 4", "type '3'"),
    ("0 1 2 3", "x y pairs"),
    ("0 1 2 a 4", "must be numbers"),
    ("2 1 2 3 4", "at least 3 points"),
    ("x", "type 'x'"),
])
def test_malformed_annotations_say_why(text, message):
    with pytest.raises(ValueError, match=message):
        object_cxr.parse_annotation(text)


def test_tight_box_of_a_polygon_encloses_its_points():
    shape = Shape(ShapeKind.POLYGON, np.array([[10.0, 40.0], [50.0, 10.0], [30.0, 60.0]]))
    assert object_cxr.tight_box(shape) == [10.0, 10.0, 50.0, 60.0]


def test_reference_polylabel_box_of_a_rectangle_outline():
    # The reference's recipe by hand for the axis-aligned 40x30 rectangle (10,10)-(50,40): the
    # buffered outline is symmetric, so its pole of inaccessibility is the centre (30, 25) and the
    # half-sizes are the distances to the bounds, 20 and 15: the tight box again.
    square = Shape(ShapeKind.POLYGON, np.array([[10.0, 10.0], [50.0, 10.0], [50.0, 40.0], [10.0, 40.0]]))
    assert object_cxr.polylabel_box(square) == pytest.approx([10.0, 10.0, 50.0, 40.0], abs=1.0)
    # An L-shaped polygon: the polylabel box is centred away from the bounds' centre and therefore
    # larger than the tight box (defect B19).
    ell = Shape(ShapeKind.POLYGON, np.array([[0.0, 0.0], [300.0, 0.0], [300.0, 40.0], [40.0, 40.0], [40.0, 300.0], [0.0, 300.0]]))
    x1, y1, x2, y2 = object_cxr.polylabel_box(ell)
    assert (x2 - x1) * (y2 - y1) > 300 * 300
    assert object_cxr.reference_box(Shape(ShapeKind.ELLIPSE, ell.points[:2])) == object_cxr.tight_box(Shape(ShapeKind.ELLIPSE, ell.points[:2]))


def test_split_is_the_reference_train_test_split():
    frame = pd.DataFrame({"id": [f"{i:05d}" for i in range(1, 8001)], "annotation": ""})
    test = pd.DataFrame({"id": [f"{i:05d}" for i in range(8001, 9001)], "annotation": ""})
    partition = object_cxr.make_partition(frame, test)
    expected_train, expected_val = train_test_split(frame, test_size=0.1, random_state=0)
    assert partition.splits["train"] == expected_train["id"].tolist()
    assert partition.splits["val"] == expected_val["id"].tolist()
    assert [len(partition.splits[s]) for s in ("train", "val", "test")] == [7200, 800, 1000]
    assert (len(partition.subsets[1, 0]), len(partition.subsets[10, 0])) == (72, 720)


# --- tiny raw folders -----------------------------------------------------------------------------


def test_tiny_folder_end_to_end(tmp_path):
    data = prepare(make_raw(tmp_path), tmp_path / "out")
    counts = data.manifest.counts
    assert (counts["detection/train"], counts["detection/val"], counts["detection/test"]) == (27, 3, 6)
    assert data.manifest.image_mode == "stretch"
    record = data.records.loc["00003"]
    assert (record["width"], record["height"], record["objects"]) == (WIDTH, HEIGHT, 2)
    assert json.loads(record["boxes"]) == [[30.0, 10.0, 40.0, 30.0], [1.0, 1.0, 3.0, 3.0]]
    for split in ("train", "val", "test"):
        tight = json.loads((data.root / "annotations" / f"{split}.json").read_text())
        reference = json.loads((data.root / "annotations" / f"{split}.polylabel.json").read_text())
        assert [image["file_name"] for image in tight["images"]] == data.split_ids(split)  # negatives kept
        assert len(tight["annotations"]) == len(reference["annotations"])
    test = json.loads((data.root / "annotations" / "test.json").read_text())
    image_of = {image["id"]: image["file_name"] for image in test["images"]}
    assert [a["bbox"] for a in test["annotations"] if image_of[a["image_id"]] == "08002"] == [[10.0, 5.0, 10.0, 10.0]]


def test_missing_column_names_the_file(tmp_path):
    raw = make_raw(tmp_path)
    pd.read_csv(raw / "dev.csv").rename(columns={"annotation": "annotations"}).to_csv(raw / "dev.csv", index=False)
    with pytest.raises(DataError, match=r"dev\.csv: missing column\(s\) 'annotation' \(renamed to 'annotations'\?\)"):
        prepare(raw, tmp_path / "out")


def test_malformed_annotation_raises_or_is_a_counted_exclusion(tmp_path):
    raw = make_raw(tmp_path)
    edit_csv(raw / "train.csv", 4, "0 1 2 3")
    with pytest.raises(DataError, match=r"train\.csv line 6 \(00005\): malformed annotation"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [(item["id"], item["row"]) for item in data.manifest.excluded] == [("00005", 6)]
    assert data.manifest.counts["images"] == 35 and "00005" not in data.records.index


def test_box_outside_the_image_raises_or_is_a_counted_exclusion(tmp_path):
    raw = make_raw(tmp_path)
    edit_csv(raw / "dev.csv", 1, f"0 10 10 {WIDTH + 5} 20")
    with pytest.raises(DataError, match=r"dev\.csv line 3 \(08002\): box .* outside the 60x40 image"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["id"] for item in data.manifest.excluded] == ["08002"]
    assert "08002" not in data.split_ids("test")
    test = json.loads((data.root / "annotations" / "test.json").read_text())
    assert "08002" not in [image["file_name"] for image in test["images"]]


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_image_raises_or_is_a_counted_exclusion(tmp_path, damage):
    raw = make_raw(tmp_path)
    image = raw / "train" / "00007.jpg"
    if damage == "corrupt":
        image.write_bytes(b"\xff\xd8 truncated")
    else:
        image.unlink()
    with pytest.raises(DataError, match="train/00007.jpg"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["file"] for item in data.manifest.excluded] == [str(image)]
    assert "00007" not in data.records.index
