"""Object-CXR (foreign-object detection, one class).

Raw folder: ``train.csv`` and ``dev.csv`` (columns ``image_name, annotation``) with the JPGs in
``train/`` and ``dev/``. An annotation lists objects separated by ``;``, each
``"<type> x1 y1 x2 y2 ..."`` in original pixels: type 0 rectangle and 1 ellipse (two corner
points), 2 polygon (three or more points); an empty annotation means no foreign object
(PROTOCOL.md section 7.1).

Split (partition ``detection``, reference ``mgca/preprocess/object_cxr.py`` L91-105):
``train_test_split(train.csv, test_size=0.1, random_state=0)`` → train / val (7,200 / 800 on the
official release; G2D uses 80/20, 6,400 / 1,600), test = ``dev.csv`` (1,000).

Label fractions: draw 0 = the reference's detection rule ``np.random.choice(n, int(pct * n))``
on a RandomState(42) stream (see ``preparation.reference_numpy_choice``: 72 / 720 images); draws
1, 2 = seeded draws stratified by "has a foreign object".

Boxes (COCO ``[x, y, w, h]``, original pixels, category 1 ``foreign object``):

- ``annotations/<split>.json``: tight bounding boxes of every shape (min/max of its points). Every
  detection task uses this variant (defect B19: the reference enlarges polygons).
- ``annotations/<split>.polylabel.json``: compatibility variant with the reference's polylabel
  boxes for polygons (``polylabel_box``), tight boxes for rectangles and ellipses. Used only by a
  task that asks for reference compatibility, and labelled so in its results.

There is no cap on the number of objects per image (the reference crashes above 20, B19). A
malformed annotation or a (tight) box reaching outside the image is an error naming the CSV line,
or with ``on_error="exclude"`` a counted exclusion; so are missing or corrupt JPGs.

The image cache uses the ``stretch`` geometry (detection resizes straight to a square).
records.csv has ``id, path, objects, boxes, width, height``: ``boxes`` is the JSON list of tight
``[x1, y1, x2, y2]`` boxes in original pixels and ``width``/``height`` the original size, so boxes
can be mapped onto the cache.

Image ID: the file name without extension (``00001``); train and dev names are distinct (checked).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from benchmark.data.imaging import STRETCH_NOTE, read_gray
from benchmark.data.prepared import DataError, Manifest
from benchmark.data.preparation import (
    LINE,
    Partition,
    Problems,
    cache_images,
    check_box,
    coco_annotations,
    describe_sources,
    finish,
    fraction_subsets,
    listing_fingerprint,
    prepare_output,
    read_label_csv,
    reference_numpy_choice,
    require_scorable,
    verify_partitions,
    write_coco,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

NAME = "object_cxr"
PARTITION = "detection"
CATEGORY = "foreign object"
COLUMNS = ("image_name", "annotation")
LABEL_FILES = {"train": "train.csv", "test": "dev.csv"}  # list -> file; images in train/ and dev/
VAL_FRACTION = 0.1  # of train.csv (the reference code; G2D: 0.2)
SPLIT_SEED = 0
IMAGE_MODE = "stretch"
COMPATIBILITY_VARIANT = "polylabel"  # annotations/<split>.polylabel.json
OBJECT_SEPARATOR = ";"
NOTES = (
    "Boxes: tight bounding boxes of every shape (annotations/<split>.json); the reference's polylabel boxes "
    "for polygons only in annotations/<split>.polylabel.json (defect B19). No cap on objects per image.",
    "Validation = 10% of train.csv (train_test_split(test_size=0.1, random_state=0), the reference code); "
    "G2D uses 20%.",
    "Label fractions: draw 0 = np.random.choice(n, int(pct*n)) on RandomState(42), second draw (the "
    "reference's mechanism, not a released list); draws 1, 2 = seeded draws stratified by has-object.",
    STRETCH_NOTE,
)


class ShapeKind(IntEnum):
    RECTANGLE = 0
    ELLIPSE = 1
    POLYGON = 2


MIN_POINTS = {ShapeKind.RECTANGLE: 2, ShapeKind.ELLIPSE: 2, ShapeKind.POLYGON: 3}


@dataclass(frozen=True)
class Shape:
    kind: ShapeKind
    points: np.ndarray  # (n, 2) float x, y in original pixels


def parse_annotation(text: str) -> list[Shape]:
    """Shapes of one annotation string (empty → none); ValueError with the reason when malformed."""
    shapes = []
    for part in (piece.strip() for piece in text.split(OBJECT_SEPARATOR)):
        if not part:
            continue
        fields = part.split()
        try:
            kind = ShapeKind(int(fields[0]))
        except ValueError:
            raise ValueError(f"object {part!r}: type {fields[0]!r} is not 0 (rectangle), 1 (ellipse) or 2 (polygon)") from None
        try:
            numbers = np.array([float(value) for value in fields[1:]])
        except ValueError:
            raise ValueError(f"object {part!r}: coordinates must be numbers") from None
        if len(numbers) % 2 or not np.isfinite(numbers).all():
            raise ValueError(f"object {part!r}: expected finite x y pairs, got {len(numbers)} values")
        points = numbers.reshape(-1, 2)
        if len(points) < MIN_POINTS[kind]:
            raise ValueError(f"object {part!r}: a {kind.name.lower()} needs at least {MIN_POINTS[kind]} points")
        shapes.append(Shape(kind, points))
    return shapes


def tight_box(shape: Shape) -> list[float]:
    """``[x1, y1, x2, y2]`` enclosing every listed point (for an ellipse: its two corners)."""
    (x1, y1), (x2, y2) = shape.points.min(axis=0), shape.points.max(axis=0)
    return [float(x1), float(y1), float(x2), float(y2)]


def polylabel_box(shape: Shape) -> list[float]:
    """The reference's box for a polygon (``mgca/preprocess/object_cxr.py`` ``polylabel_box``) as
    ``[x1, y1, x2, y2]``: centred on the pole of inaccessibility of the closed outline buffered by
    100 px (tolerance 10), half-size per axis the larger distance from that centre to the
    outline's bounds on that axis. Usually larger than the tight box, and may leave the image."""
    from shapely.geometry import LineString
    from shapely.ops import polylabel

    outline = LineString(np.vstack([shape.points, shape.points[:1]]))
    centre = polylabel(outline.buffer(100), tolerance=10)
    cxy = np.array([centre.x, centre.y])
    half = np.abs(np.asarray(outline.bounds).reshape(2, 2) - cxy).max(axis=0)
    return [*map(float, cxy - half), *map(float, cxy + half)]


def reference_box(shape: Shape) -> list[float]:
    """The reference's conversion: polylabel boxes for polygons, tight boxes otherwise."""
    return polylabel_box(shape) if shape.kind == ShapeKind.POLYGON else tight_box(shape)


def image_id(image_name: str) -> str:
    """``00001.jpg`` → ``00001``."""
    return PurePosixPath(image_name).stem


def read_list(path: Path, problems: Problems) -> pd.DataFrame:
    """One official CSV with ``id`` and parsed ``shapes``; malformed annotations go to ``problems``."""
    frame = read_label_csv(path, COLUMNS)
    frame["id"] = [image_id(name) for name in frame["image_name"]]
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(f"{path} line {row[LINE]}: image {row['image_name']!r} is listed twice")
    shapes = []
    for item, annotation, line in zip(frame["id"], frame["annotation"], frame[LINE]):
        try:
            shapes.append(parse_annotation(annotation))
        except ValueError as error:
            problems.report(path, line, item, f"malformed annotation: {error}")
            shapes.append([])
    return frame.assign(shapes=shapes)


def make_partition(train_list: pd.DataFrame, test_list: pd.DataFrame) -> Partition:
    """train/val = the reference's ``train_test_split(test_size=0.1, random_state=0)`` of train.csv
    (order kept), test = dev.csv; with the 1%/10% subsets."""
    shared = sorted(set(train_list["id"]) & set(test_list["id"]))
    if shared:
        raise DataError(f"{NAME}: images {shared[:3]} are in both train.csv and dev.csv")
    train, val = train_test_split(train_list, test_size=VAL_FRACTION, random_state=SPLIT_SEED)
    train_ids = train["id"].tolist()
    has_object = dict(zip(train["id"], train["annotation"] != ""))
    subsets = fraction_subsets(train_ids, reference_numpy_choice, labels=has_object)
    return Partition(PARTITION, {"train": train_ids, "val": val["id"].tolist(), "test": test_list["id"].tolist()}, subsets)


def prepare(options: PrepareOptions) -> Manifest:
    """Object-CXR raw folder → prepared ``detection`` dataset (see the module docstring)."""
    problems = Problems(options.on_error)
    label_files = {name: options.raw / file_name for name, file_name in LABEL_FILES.items()}
    lists = {name: read_list(path, problems) for name, path in label_files.items()}
    (partition,), verification = verify_partitions(NAME, [make_partition(lists["train"], lists["test"])], options)
    with_objects = {item for frame in lists.values() for item in frame["id"][frame["annotation"] != ""]}
    require_scorable(NAME, partition, {"foreign object": with_objects}, "mAP", options.raw, splits=("train", "val", "test"))
    out = prepare_output(options)

    rows = pd.concat([frame.assign(folder=Path(LABEL_FILES[name]).stem, source=label_files[name])
                      for name, frame in lists.items()]).set_index("id", drop=False)
    rows["path"] = [f"{folder}/{name}" for folder, name in zip(rows["folder"], rows["image_name"])]
    readable = rows[~rows["id"].isin(problems.excluded_ids)]
    jobs = [(item, str(options.raw / path)) for item, path in zip(readable["id"], readable["path"])]
    listed_at = {item: (source, line) for item, source, line in zip(readable["id"], readable["source"], readable[LINE])}
    cache, dropped = cache_images(options, jobs, read_gray, IMAGE_MODE, listed_at)
    dropped |= problems.excluded_ids

    rows["boxes"] = [[tight_box(shape) for shape in shapes] for shapes in rows["shapes"]]
    checked = rows[~rows["id"].isin(dropped)]
    for item, boxes, source, line in zip(checked["id"], checked["boxes"], checked["source"], checked[LINE]):
        reason = next((r for box in boxes if (r := check_box(box, *cache.sizes[item]))), None)
        if reason:
            problems.report(source, line, item, reason)
    dropped |= problems.excluded_ids

    variants = {"": lambda shapes: [tight_box(s) for s in shapes],
                f".{COMPATIBILITY_VARIANT}": lambda shapes: [reference_box(s) for s in shapes]}
    for split, ids in partition.splits.items():
        kept = [item for item in ids if item not in dropped]
        for suffix, boxes_of in variants.items():
            entries = [(item, *cache.sizes[item], boxes_of(rows.at[item, "shapes"])) for item in kept]
            write_coco(out, f"{split}{suffix}", coco_annotations(entries, CATEGORY))

    records = pd.DataFrame({
        "id": rows["id"], "path": rows["path"], "objects": rows["shapes"].map(len),
        "boxes": rows["boxes"].map(json.dumps),
        "width": [cache.sizes.get(item, (0, 0))[0] for item in rows["id"]],
        "height": [cache.sizes.get(item, (0, 0))[1] for item in rows["id"]],
    })
    return finish(
        options, dataset=NAME, partitions=[partition], records=records,
        sources=describe_sources(options.raw, label_files.values()), cache=cache, image_mode=IMAGE_MODE,
        verification=verification, excluded=problems.excluded, excluded_ids=dropped, notes=NOTES,
        extra={"detection_category": CATEGORY, "box_variants": {"tight": "annotations/<split>.json",
               "reference_polylabel": f"annotations/<split>.{COMPATIBILITY_VARIANT}.json"},
               "images": listing_fingerprint(options.raw, rows["path"])},
    )


DATASETS.add(NAME, DatasetInfo(
    name=NAME,
    title="Object-CXR (foreign objects on chest X-rays)",
    partitions=(PARTITION,),
    raw_layout="train.csv, dev.csv (image_name, annotation), train/ and dev/ JPGs",
    prepare=prepare,
))
