"""CheXpert (linear classification): five competition labels, patient-disjoint validation.

Raw folder: the ``CheXpert-v1.0-small`` (or ``CheXpert-v1.0``) folder with ``train.csv``,
``valid.csv`` and the ``train/`` and ``valid/`` image trees. The CSV ``Path`` column starts with
the release folder name, which is dropped and the rest resolved against the raw folder (as the
reference does), so both releases give the same IDs.

Partitions, see PROTOCOL.md section 3:

1. ``holdout_5x200`` (zero-shot classification, test only): the reference's 5×200 hold-out
   (``mgca/preprocess/chexpert.py`` L8-36) rebuilt exactly: per competition task, 200 frontal
   rows positive for that task alone (:func:`holdout_5x200`), in the reference's order. Their
   five competition labels are one-hot. Its training and validation lists are empty.
2. ``classification``: the hold-out's 1,000 rows are removed from training, as the reference
   does. The remaining frontal rows are grouped by patient. Patients are shuffled with
   ``numpy.random.default_rng(0)`` (patients sorted by ID first) and taken in that order until
   the validation split holds at least 5,000 frontal images. Training is every other remaining
   frontal image. Deviation (defect B5): the reference draws 5,000 rows of any view by position
   and drops them by label, so 4,203 of its 4,284 frontal validation images stay in training;
   here validation is drawn after the frontal filter and is disjoint from training by patient.
   Test = the frontal images of the official ``valid.csv`` (202 of 234), as the reference.

On the public ``train.csv`` this gives 185,027 training and 5,000 validation images (1,683
patients); 1% / 10% subsets hold 1,850 / 18,503; the hold-out's candidate pools hold 1,087 /
1,034 / 537 / 2,257 / 2,425 rows (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural
Effusion). The shipped ID lists in ``benchmark/splits/chexpert/{classification,holdout_5x200}/``
were made from the CheXpert-v1.0-small ``train.csv`` (copy in torchxrayvision 1.5.7); the
classification test list comes from ``valid.csv`` at preparation time.

Demo data (raw folder with the demo marker) is too small for the reference's sizes: a hold-out
that grows with the demo (:func:`demo_holdout_per_task`: one row per task for every 40 frontal
rows of ``train.csv`` that are no 5×200 candidate, clipped to 10-40), drawn by the same rule
(the demo writer adds candidate rows of new patients where its sampled patients hold too few,
by the same function), and 10% of the frontal images left for training and validation as
validation, recorded in the manifest (``extra.split_sizes``). The tests' demos (96-500 images)
keep 10 per task (50 zero-shot test images). At the 3,000 images of ``make bench`` (seed 0):
40 per task, the 5×200 test set holds 200 images (was 50); ``train.csv`` holds 2,657 rows
(2,550 sampled, 107 candidates added; 2,207 frontal), and the hold-out takes all 93 sampled
candidates out of classification, which gives train/val/test 1,806 / 201 / 380 and 1% / 10%
draws of 18 / 181 (10 per task gave 1,850 / 206 / 380 and 18 / 185).

Labels: NaN → 0, uncertain (−1) → U-Ones for Atelectasis, Edema, Pleural Effusion and U-Zeros for
Cardiomegaly, Consolidation (``CHEXPERT_UNCERTAIN_MAPPINGS``).

Image ID: the path below the split folder without extension, with ``/`` replaced by ``_``,
e.g. ``patient00001_study1_view1_frontal`` (file-system safe; train and valid patients are
distinct, which preparation checks).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from benchmark.data.imaging import read_gray
from benchmark.data.prepared import DataError, Manifest
from benchmark.data.preparation import (
    LINE,
    Partition,
    cache_images,
    describe_sources,
    finish,
    fraction_subsets,
    is_demo,
    listing_fingerprint,
    numeric_column,
    prepare_output,
    read_label_csv,
    reference_frac_sample,
    require_scorable,
    verify_partitions,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

NAME = "chexpert"
PARTITION = "classification"
HOLDOUT_PARTITION = "holdout_5x200"  # zero-shot classification's test set (tasks/zeroshot)
COMPETITION_TASKS = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
UNCERTAIN_MAPPING = {"Atelectasis": 1, "Cardiomegaly": 0, "Consolidation": 0, "Edema": 1, "Pleural Effusion": 1}
# The further observations that must be 0 for a 5×200 candidate (mgca/preprocess/chexpert.py).
HOLDOUT_OTHER_OBSERVATIONS = (
    "Enlarged Cardiomediastinum", "Lung Lesion", "Lung Opacity", "Pneumonia", "Pneumothorax",
    "Pleural Other", "Fracture", "Support Devices",
)
LABEL_COLUMNS = (*COMPETITION_TASKS, *HOLDOUT_OTHER_OBSERVATIONS)
REQUIRED_COLUMNS = ("Path", "Frontal/Lateral", *LABEL_COLUMNS)
LABEL_VALUES = (1.0, 0.0, -1.0)
HOLDOUT_SEED = 0  # random_state of the reference's per-task sample
VALIDATION_SEED = 0


@dataclass(frozen=True)
class SplitSizes:
    holdout_per_task: int  # 5×200 hold-out rows per competition task
    validation_images: int  # at least this many frontal validation images (whole patients)


REFERENCE_SIZES = SplitSizes(holdout_per_task=200, validation_images=5000)
# Demo data (a few hundred to a few thousand images): the hold-out grows with the demo, one row per task for every
# DEMO_KEPT_PER_HOLDOUT_ROW frontal rows that are no 5x200 candidate (the images that stay for classification),
# clipped to DEMO_HOLDOUT_PER_TASK_RANGE: the tests' demos (96-500 images) keep 10 per task (50 zero-shot test
# images), `make bench` (3,000 images) gets 40 (200 images: there a 28% accuracy against 20% chance has a binomial
# tail p of 0.004, at 50 images 0.11, too weak for a test against chance with Holm over a few columns).
# 10% of the frontal images left after the hold-out are validation. See demo_holdout_per_task.
DEMO_HOLDOUT_PER_TASK_RANGE = (10, 40)
DEMO_KEPT_PER_HOLDOUT_ROW = 40
DEMO_VALIDATION_FRACTION = 0.1
NOTES = (
    "Validation: whole patients (default_rng(0) over sorted patient IDs) until >= 5,000 frontal images, "
    "drawn after the frontal filter and disjoint from training by patient; the reference draws 5,000 rows "
    "of any view and drops them by index label, leaving 4,203 of its 4,284 frontal validation images in "
    "training (defect B5).",
    "The reference's 5x200 hold-out (1,000 frontal rows) is removed from training as in the reference and "
    "prepared as partition holdout_5x200 (test only, one-hot labels) for zero-shot classification.",
    "Label fractions: draw 0 = df.sample(frac, random_state=42) on the frontal training split in train.csv "
    "order (the reference's rule on a different, leak-free training split); draws 1, 2 = seeded draws "
    "stratified by the 5-label combination.",
)


def release_relative_path(csv_path: str) -> PurePosixPath:
    """``CheXpert-v1.0-small/train/p/s/v.jpg`` → ``train/p/s/v.jpg`` (the release folder dropped)."""
    parts = PurePosixPath(csv_path).parts
    if len(parts) != 5 or parts[1] not in ("train", "valid"):
        raise ValueError(f"Path {csv_path!r} is not <release>/<train|valid>/<patient>/<study>/<view>.jpg")
    return PurePosixPath(*parts[1:])


def image_id(relative: PurePosixPath) -> str:
    """Stable, file-system-safe ID: ``train/patient00001/study1/view1_frontal.jpg`` →
    ``patient00001_study1_view1_frontal``."""
    return "_".join(relative.with_suffix("").parts[1:])


def read_label_table(path: Path) -> pd.DataFrame:
    """A checked CheXpert ``train.csv``/``valid.csv``: label columns as floats (NaN = empty),
    plus ``id``, ``patient`` and ``path`` (relative to the raw folder)."""
    frame = read_label_csv(path, REQUIRED_COLUMNS)
    for column in LABEL_COLUMNS:
        values = numeric_column(frame, column, path, allow_empty=True)
        bad = values.notna() & ~values.isin(LABEL_VALUES)
        if bad.any():
            row = frame[bad].iloc[0]
            raise DataError(f"{path} line {row[LINE]}: column {column!r} holds {row[column]!r}; "
                            "CheXpert labels are 1.0, 0.0, -1.0 or empty. Use the official file")
        frame[column] = values
    relative = []
    for value, line in zip(frame["Path"], frame[LINE]):
        try:
            relative.append(release_relative_path(value))
        except ValueError as error:
            raise DataError(f"{path} line {line}: {error}") from None
    frame["id"] = [image_id(item) for item in relative]
    frame["patient"] = [item.parts[1] for item in relative]
    frame["path"] = [str(item) for item in relative]
    duplicated = frame["id"].duplicated()
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(f"{path} line {row[LINE]}: image {row['Path']!r} is listed twice")
    return frame


def competition_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """int 0/1 labels of the five competition tasks: NaN → 0, then −1 per UNCERTAIN_MAPPING."""
    labels = frame[list(COMPETITION_TASKS)].astype(float).fillna(0.0)
    for task, value in UNCERTAIN_MAPPING.items():
        labels[task] = labels[task].replace(-1.0, float(value))
    return labels.astype(int)


def demo_holdout_per_task(frame: pd.DataFrame) -> int:
    """Hold-out rows per competition task of demo data (a parsed ``train.csv``, label columns as floats): one per
    :data:`DEMO_KEPT_PER_HOLDOUT_ROW` frontal rows that are no 5×200 candidate of any task (:func:`holdout_pools`),
    clipped to :data:`DEMO_HOLDOUT_PER_TASK_RANGE`. The one rule of the preparer (:func:`split_sizes`) and the demo
    writer (``benchmark.data.demo.chexpert.holdout_additions``): the writer computes it on its sampled rows, then
    adds candidate rows only, which leave the count unchanged, so both get the same size."""
    frontal = int((frame["Frontal/Lateral"] == "Frontal").sum())
    kept = frontal - sum(len(pool) for pool in holdout_pools(frame).values())  # the pools are disjoint
    fewest, most = DEMO_HOLDOUT_PER_TASK_RANGE
    return min(max(kept // DEMO_KEPT_PER_HOLDOUT_ROW, fewest), most)


def split_sizes(options: PrepareOptions, train_table: pd.DataFrame) -> SplitSizes:
    """The reference's sizes, or for demo data (marker file) :func:`demo_holdout_per_task` hold-out rows per
    task and 10% of the frontal images left after the hold-out as validation."""
    if not is_demo(options.raw):
        return REFERENCE_SIZES
    per_task = demo_holdout_per_task(train_table)
    frontal = int((train_table["Frontal/Lateral"] == "Frontal").sum()) - per_task * len(COMPETITION_TASKS)
    return SplitSizes(holdout_per_task=per_task, validation_images=max(1, round(DEMO_VALIDATION_FRACTION * frontal)))


def holdout_pools(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per competition task, the 5×200 candidates of a parsed ``train.csv`` (label columns as floats):
    frontal rows where that task is 1 and the other competition tasks and the eight further
    observations are 0 after NaN → 0 (``mgca/preprocess/chexpert.py`` L8-36; uncertain rows never
    qualify). The demo writer counts them with this same rule."""
    filled = frame[["Frontal/Lateral", *LABEL_COLUMNS]].fillna(0.0)
    frontal = filled[filled["Frontal/Lateral"] == "Frontal"]
    pools = {}
    for task in COMPETITION_TASKS:
        others = [column for column in LABEL_COLUMNS if column != task]
        pools[task] = frontal[(frontal[task] == 1) & (frontal[others] == 0).all(axis=1)]
    return pools


def holdout_5x200(frame: pd.DataFrame, per_task: int = REFERENCE_SIZES.holdout_per_task) -> pd.Index:
    """Index labels of the reference's 5×200 hold-out rows (``mgca/preprocess/chexpert.py`` L8-36),
    in its order: per competition task, ``per_task`` (200) of :func:`holdout_pools` sampled with
    ``random_state=0``."""
    chosen = []
    for task, pool in holdout_pools(frame).items():
        if len(pool) < per_task:
            raise DataError(f"train.csv: only {len(pool)} 5x200 candidates for {task}, {per_task} needed; use the complete "
                            "official train.csv (demo data: generate it again with `python -m benchmark demo-data`)")
        chosen.append(pool.sample(n=per_task, random_state=HOLDOUT_SEED).index)
    return chosen[0].append(chosen[1:])


def holdout_partition(train_table: pd.DataFrame, sizes: SplitSizes = REFERENCE_SIZES) -> Partition:
    """The test-only ``holdout_5x200`` partition: the hold-out's IDs in the reference's order;
    nothing to train or validate on (zero-shot classification trains nothing)."""
    ids = train_table.loc[holdout_5x200(train_table, sizes.holdout_per_task), "id"].tolist()
    return Partition(HOLDOUT_PARTITION, {"train": [], "val": [], "test": ids})


def patient_disjoint_validation(patients: pd.Series, target: int, seed: int = VALIDATION_SEED) -> np.ndarray:
    """Boolean mask over ``patients`` (one entry per frontal image): whole patients, shuffled with
    ``default_rng(seed)`` from sorted order, taken until at least ``target`` images are covered."""
    counts = patients.value_counts().sort_index()
    if counts.sum() <= target:
        raise DataError(f"train.csv: {counts.sum()} frontal training images, too few for {target} validation images")
    shuffled = counts.iloc[np.random.default_rng(seed).permutation(len(counts))]
    taken = int(np.searchsorted(shuffled.cumsum().to_numpy(), target)) + 1  # shortest prefix reaching target
    return patients.isin(shuffled.index[:taken]).to_numpy()


def train_val_split(train_table: pd.DataFrame, sizes: SplitSizes = REFERENCE_SIZES) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Frontal training and validation rows of a parsed ``train.csv``, in file order."""
    remaining = train_table.drop(index=holdout_5x200(train_table, sizes.holdout_per_task))
    frontal = remaining[remaining["Frontal/Lateral"] == "Frontal"]
    is_val = patient_disjoint_validation(frontal["patient"], sizes.validation_images)
    return frontal[~is_val], frontal[is_val]


def label_combination(frame: pd.DataFrame) -> dict[str, str]:
    """ID → the five mapped labels as a string (``"10010"``), the strata of the seeded draws."""
    labels = competition_labels(frame).astype(str)
    joined = labels[COMPETITION_TASKS[0]]
    for task in COMPETITION_TASKS[1:]:  # column by column: the row-wise "".join, without a Python call per row
        joined = joined + labels[task]
    return dict(zip(frame["id"], joined))


def training_partition(train_table: pd.DataFrame, test_ids: list[str], sizes: SplitSizes = REFERENCE_SIZES) -> Partition:
    """The ``classification`` partition with its 1%/10% subsets (draws 0-2)."""
    train, val = train_val_split(train_table, sizes)
    train_ids = train["id"].tolist()
    subsets = fraction_subsets(train_ids, reference_frac_sample, labels=label_combination(train))
    return Partition(PARTITION, {"train": train_ids, "val": val["id"].tolist(), "test": test_ids}, subsets)


def prepare(options: PrepareOptions) -> Manifest:
    """CheXpert raw folder → prepared ``classification`` and ``holdout_5x200`` partitions (see the module docstring)."""
    train_csv, valid_csv = options.raw / "train.csv", options.raw / "valid.csv"
    train_table, valid_table = read_label_table(train_csv), read_label_table(valid_csv)
    shared = sorted(set(train_table["patient"]) & set(valid_table["patient"]))
    if shared:
        raise DataError(f"{valid_csv}: patients {shared[:3]} also appear in {train_csv}; use the official files")
    test = valid_table[valid_table["Frontal/Lateral"] == "Frontal"]
    sizes = split_sizes(options, train_table)
    partitions = [training_partition(train_table, test["id"].tolist(), sizes), holdout_partition(train_table, sizes)]
    (partition, holdout), verification = verify_partitions(NAME, partitions, options)
    test_labels = competition_labels(test)
    positives = {task: set(test["id"][test_labels[task] == 1]) for task in COMPETITION_TASKS}
    require_scorable(NAME, partition, positives, "AUROC", options.raw, needs_negatives=True)
    held = train_table[train_table["id"].isin(holdout.splits["test"])]
    held_labels = competition_labels(held)
    holdout_positives = {task: set(held["id"][held_labels[task] == 1]) for task in COMPETITION_TASKS}
    require_scorable(NAME, holdout, holdout_positives, "per-class accuracy", options.raw)
    out = prepare_output(options)

    used = set().union(*partition.splits.values(), *holdout.splits.values())
    rows = pd.concat([train_table.assign(label_file=train_csv), test.assign(label_file=valid_csv)])
    rows = rows[rows["id"].isin(used)]
    records = pd.concat([rows[["id", "path", "patient"]], competition_labels(rows)], axis=1)
    paths = [options.raw / path for path in records["path"]]
    jobs = [(image_id, str(path)) for image_id, path in zip(records["id"], paths)]
    listed_at = {item: (label_file, line) for item, label_file, line in zip(rows["id"], rows["label_file"], rows[LINE])}
    cache, excluded_ids = cache_images(options, jobs, read_gray, "letterbox", listed_at)
    return finish(
        options, dataset=NAME, partitions=[partition, holdout], records=records,
        sources=describe_sources(options.raw, [train_csv, valid_csv]), cache=cache, image_mode="letterbox",
        verification=verification, excluded_ids=excluded_ids, notes=NOTES,
        extra={"label_columns": list(COMPETITION_TASKS), "uncertain_mapping": UNCERTAIN_MAPPING,
               "split_sizes": asdict(sizes),
               "holdout_pool_sizes": {task: len(pool) for task, pool in holdout_pools(train_table).items()},
               "images": listing_fingerprint(options.raw, paths)},
    )


DATASETS.add(NAME, DatasetInfo(
    name=NAME,
    title="CheXpert v1.0 (5 competition labels)",
    partitions=(PARTITION, HOLDOUT_PARTITION),
    raw_layout="the CheXpert-v1.0(-small) folder: train.csv, valid.csv, train/, valid/",
    prepare=prepare,
))
