"""RSNA Pneumonia Detection Challenge (stage 2): classification, detection and box-mask segmentation.

Raw layout: ``stage_2_train_labels.csv`` (one row per box; negatives one row with empty box
fields) and ``stage_2_train_images/<patientId>.dcm``. One record per patient with all its boxes
(xyxy pixels, ``[x, y, x + width, y + height]``).

Two partitions, both exactly the reference's (``mgca/preprocess/rsna.py``, PROTOCOL section 4.3,
defect B17): patients grouped and sorted by ``patientId``, ``train_test_split(random_state=0)``
with test size 0.3 (``classification``) or 2 × 5,337 (``detection``, also used by RSNA
segmentation), then 0.5 on the held-out part, whose first output is the test split. On the
official file: classification 18,678 / 4,003 / 4,003, detection 16,010 / 5,337 / 5,337.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmark.data.dicom import read_dicom
from benchmark.data.imaging import STRETCH_NOTE
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
    is_demo,
    listing_fingerprint,
    numeric_column,
    prepare_output,
    read_label_csv,
    reference_frac_sample,
    reference_numpy_choice,
    reference_three_way_split,
    require_file,
    require_scorable,
    verify_partitions,
    write_coco,
    write_mask,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

LABELS_FILE = "stage_2_train_labels.csv"
IMAGES_DIR = "stage_2_train_images"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")
# Held-out size of the first train_test_split call per partition (the second halves it).
HELD_OUT = {"classification": 0.3, "detection": 5337 * 2}
OFFICIAL_PATIENTS = 26684
# Draw 0 of each partition's label fractions reproduces the reference's sampler.
REFERENCE_DRAWS = {"classification": reference_frac_sample, "detection": reference_numpy_choice}
IMAGE_MODE = "stretch"  # images are square (1024 × 1024); detection and segmentation resize directly
NOTES = [
    "DICOMs decoded with the Modality LUT, VOI LUT/window and min-max scaling "
    "(reference: plain max-scaling), see benchmark/data/dicom.py.",
    "Both reference partitions are prepared: classification (test_size 0.3) and detection "
    "(test_size 2x5337, also used by segmentation); the reference generates only the latter (B17).",
    "Label fractions: draw 0 = reference rule (classification: df.sample(frac, random_state=42); "
    "detection/segmentation: second np.random.choice(n, int(frac*n)) after seeding numpy with 42, "
    "see preparation.reference_numpy_choice); draws 1-2 = independent draws stratified by Target.",
    "Boxes are stored in original pixels (COCO annotations/<split>.json, records.csv boxes) and "
    "normalised only on copies by the tasks (B9); negatives are kept as images without boxes (B1).",
    "Segmentation masks = filled boxes with coordinates truncated to int (reference), resized to "
    "the cache size and binarised at half coverage (reference: fractional INTER_AREA target).",
    STRETCH_NOTE,
]


DEMO_NOTE = (
    "Demo data: the detection partition holds out 10674/26684 of the patients instead of an "
    "absolute 10,674 (the demo lists fewer patients than the official file)."
)


def read_patients(labels_csv: Path) -> pd.DataFrame:
    """One row per patient, sorted by ``patientId`` (the reference's groupby order): columns
    ``id``, ``boxes`` (list of xyxy pixel boxes), ``target`` (1 if any box), ``lines`` (CSV lines)."""
    rows = read_label_csv(labels_csv, COLUMNS)
    target = rows["Target"]
    bad = ~target.isin(["0", "1"])
    if bad.any():
        row = rows[bad].iloc[0]
        raise DataError(f"{labels_csv} line {row[LINE]}: Target is {row['Target']!r}, expected 0 or 1")
    coordinates = {name: numeric_column(rows, name, labels_csv, allow_empty=True) for name in ("x", "y", "width", "height")}
    box = pd.DataFrame(coordinates)
    positive = target == "1"
    incomplete = positive & box.isna().any(axis=1)
    if incomplete.any():
        raise DataError(f"{labels_csv} line {rows[incomplete][LINE].iloc[0]}: Target is 1 but the box is incomplete")
    rows["box"] = [
        [x, y, x + w, y + h] if is_positive else None
        for is_positive, x, y, w, h in zip(positive, box["x"], box["y"], box["width"], box["height"])
    ]
    patients = []
    for patient_id, group in rows.groupby("patientId", sort=True):
        kinds = set(group["Target"])
        if len(kinds) > 1:
            raise DataError(f"{labels_csv} lines {group[LINE].tolist()}: patient {patient_id} has both negative and box rows")
        boxes = [item for item in group["box"] if item is not None]
        patients.append({"id": patient_id, "boxes": boxes, "target": int(bool(boxes)), "lines": group[LINE].tolist()})
    return pd.DataFrame(patients)


def held_out_size(partition: str, n_patients: int, demo: bool = False) -> float | int:
    """The first call's test_size. The detection partition holds out an absolute 10,674 patients;
    demo data (fewer patients) hold out the same share of the official 26,684 instead."""
    size = HELD_OUT[partition]
    if isinstance(size, float):
        return size
    if demo and n_patients < OFFICIAL_PATIENTS:
        return size / OFFICIAL_PATIENTS
    if size >= n_patients:
        raise DataError(
            f"{LABELS_FILE} lists {n_patients} patients, but the {partition} partition holds out {size} "
            f"(the official file lists {OFFICIAL_PATIENTS}); use the complete official label file"
        )
    return size


def split_patients(patient_ids: list[str], partition: str, demo: bool = False) -> dict[str, list[str]]:
    """The reference's two train_test_split calls; first output of the second call = test."""
    return reference_three_way_split(patient_ids, held_out_size(partition, len(patient_ids), demo))


def make_partitions(patients: pd.DataFrame, demo: bool = False) -> list[Partition]:
    """Both partitions with their 1 % / 10 % subsets (draw 0 = reference, draws 1-2 stratified)."""
    target = dict(zip(patients["id"], patients["target"]))
    partitions = []
    for name, reference_draw in REFERENCE_DRAWS.items():
        splits = split_patients(patients["id"].tolist(), name, demo)
        partitions.append(Partition(name, splits, fraction_subsets(splits["train"], reference_draw, target)))
    return partitions


def box_mask(boxes: list[list[float]], width: int, height: int) -> np.ndarray:
    """The reference's RSNA segmentation target: boxes filled after truncating coordinates to int."""
    mask = np.zeros((height, width), dtype=bool)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4).astype(np.int64):
        mask[y1:y2, x1:x2] = True
    return mask


def prepare(options: PrepareOptions) -> Manifest:
    """Official RSNA download → prepared ``rsna`` folder (both partitions, boxes, masks, cache)."""
    labels_csv = require_file(options.raw / LABELS_FILE, "the RSNA stage 2 label file")
    patients = read_patients(labels_csv)
    demo = is_demo(options.raw)
    partitions, verification = verify_partitions("rsna", make_partitions(patients, demo), options)
    positives = {"pneumonia": set(patients["id"][patients["target"] == 1])}
    for partition in partitions:
        classification = partition.name == "classification"
        require_scorable("rsna", partition, positives, "AUROC" if classification else "mAP and Dice", options.raw,
                         needs_negatives=classification, splits=("test",) if classification else ("train", "val", "test"))
    out = prepare_output(options)
    paths = {patient_id: options.raw / IMAGES_DIR / f"{patient_id}.dcm" for patient_id in patients["id"]}
    listed_at = {patient.id: (labels_csv, patient.lines[0]) for patient in patients.itertuples()}
    cache, dropped = cache_images(options, [(key, str(path)) for key, path in paths.items()], read_dicom, IMAGE_MODE, listed_at)

    problems = Problems(options.on_error)
    for patient in patients.itertuples():
        if patient.id in dropped:
            continue
        width, height = cache.sizes[patient.id]
        for box, line in zip(patient.boxes, patient.lines):
            reason = check_box(box, width, height)
            if reason:
                problems.report(labels_csv, line, patient.id, reason)
    dropped |= problems.excluded_ids

    kept = patients[~patients["id"].isin(dropped)]
    for patient in tqdm(kept.itertuples(), total=len(kept), desc="rsna masks", unit="mask"):
        width, height = cache.sizes[patient.id]
        write_mask(out, patient.id, box_mask(patient.boxes, width, height), options.image_size, IMAGE_MODE)
    detection = next(partition for partition in partitions if partition.name == "detection")
    by_id = kept.set_index("id")
    for split, ids in detection.splits.items():
        entries = [(item, *cache.sizes[item], by_id.at[item, "boxes"]) for item in ids if item in by_id.index]
        write_coco(out, split, coco_annotations(entries, "pneumonia"))

    records = pd.DataFrame({
        "id": patients["id"],
        "path": [paths[item].relative_to(options.raw).as_posix() for item in patients["id"]],
        "target": patients["target"],
        "boxes": [json.dumps(boxes) for boxes in patients["boxes"]],
        "width": [cache.sizes.get(item, (0, 0))[0] for item in patients["id"]],
        "height": [cache.sizes.get(item, (0, 0))[1] for item in patients["id"]],
    })
    return finish(
        options, dataset="rsna", partitions=partitions, records=records,
        sources=describe_sources(options.raw, [labels_csv]), cache=cache, image_mode=IMAGE_MODE,
        verification=verification, excluded=problems.excluded, excluded_ids=dropped,
        notes=NOTES + ([DEMO_NOTE] if demo and len(patients) < OFFICIAL_PATIENTS else []),
        extra={"images": listing_fingerprint(options.raw, paths.values()),
               "detection_category": "pneumonia", "segmentation_partition": "detection"},
    )


DATASETS.add("rsna", DatasetInfo(
    name="rsna",
    title="RSNA Pneumonia Detection Challenge (stage 2)",
    partitions=("classification", "detection"),
    raw_layout=f"{LABELS_FILE} and {IMAGES_DIR}/<patientId>.dcm",
    prepare=prepare,
))
