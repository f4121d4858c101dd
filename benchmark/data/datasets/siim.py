"""SIIM-ACR Pneumothorax Segmentation (stage 1): pneumothorax masks from Kaggle RLE.

Raw layout: ``train-rle.csv`` (``ImageId, EncodedPixels``; negatives ``-1``; one row per
pneumothorax instance) and ``dicom-images-train/**/<ImageId>.dcm`` in nested study/series
folders, found by a recursive walk and stored relative to the raw folder (reference defect B4).

Deviations from the reference (``mgca/preprocess/siim.py``, ``mgca/datasets/segmentation_dataset.py``):

* the split is over **ImageIds**, not CSV rows (defect B2): the reference's calls
  (``train_test_split(test_size=0.3, random_state=0)``, then 0.5 with the first output = test)
  applied to the unique ImageIds in file order, 8,432 / 1,808 / 1,807 on the official file;
* whitespace is stripped from column names and values and ``-1`` is the one negative marker (B3);
* all rows of an ImageId are merged into one mask on a canvas of the DICOM's Rows × Columns.

Training balance: the reference trains on all positive training images plus as many negatives
(``np.random.choice``), and draws its 1 %/10 % subsets from that balanced set. Here ``train.txt``
holds every training image and the balancing is a sampler the segmentation task applies at 100 %
(:func:`balanced_training_ids`, recorded in the manifest); the 1 %/10 % files are already drawn
from a balanced set (draw 0 with the reference's numpy calls, draws 1-2 half positive, half
negative) and are used as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from benchmark.data.dicom import read_dicom
from benchmark.data.imaging import STRETCH_NOTE
from benchmark.data.prepared import DataError, Manifest
from benchmark.data.preparation import (
    LINE,
    REFERENCE_SEED,
    Partition,
    Problems,
    cache_images,
    describe_sources,
    finish,
    fraction_subsets,
    listing_fingerprint,
    prepare_output,
    read_label_csv,
    reference_three_way_split,
    require_file,
    require_scorable,
    verify_partitions,
    write_mask,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

LABELS_FILE = "train-rle.csv"
IMAGES_DIR = "dicom-images-train"
NEGATIVE = "-1"
PARTITION = "segmentation"
IMAGE_MODE = "stretch"  # the reference resizes image and mask straight to 224 × 224
SAMPLER = "benchmark.data.datasets.siim.balanced_training_ids"
NOTES = [
    "Split by ImageId, not by CSV row (reference defect B2): every image and its full mask sit in "
    "one split; train_test_split(0.3, random_state=0) then 0.5 (first = test) on the unique "
    "ImageIds in file order.",
    "Column names and values are whitespace-stripped and '-1' is the only negative marker (B3); "
    "a row whose runs all have length 0 encodes an empty mask and counts as negative, as '-1' does; "
    "DICOM paths come from a recursive walk, relative to the raw folder (B4).",
    "train.txt holds all training images; at 100% the task trains on the balanced set of "
    f"{SAMPLER} (all positives + as many negatives, seeded by the run), as the reference does.",
    "Label fractions: draw 0 = the reference's numpy calls after seeding with 42 (balance, then "
    "int(n*frac) of the balanced set, second dataset construction; 42 also at 10%, where the "
    "reference's run_seg_finetune.sh passes --seed 0); draws 1-2 = seeded draws of "
    "the same size, half positive, half negative.",
    "Masks: all RLE rows of an image merged on a Rows x Columns canvas from the DICOM, resized to "
    "the cache size and binarised at half coverage (reference: fractional INTER_AREA target).",
    "DICOMs decoded with the Modality LUT, VOI LUT/window and min-max scaling (reference: plain "
    "max-scaling), see benchmark/data/dicom.py.",
    STRETCH_NOTE,
]


def read_rle_rows(labels_csv: Path) -> pd.DataFrame:
    """``train-rle.csv`` with stripped names/values; each value is ``-1`` or an even-length list
    of non-negative integers, and an image is either negative (every row encodes an empty mask,
    :func:`encodes_pixels`) or positive on all its rows."""
    rows = read_label_csv(labels_csv, ("ImageId", "EncodedPixels"))
    for image_id, value, line in zip(rows["ImageId"], rows["EncodedPixels"], rows[LINE]):
        if value == NEGATIVE:
            continue
        tokens = value.split()
        if not tokens or len(tokens) % 2 or not all(token.isdigit() for token in tokens):
            raise DataError(
                f"{labels_csv} line {line} ({image_id}): EncodedPixels is neither "
                f"{NEGATIVE!r} nor pairs of non-negative integers: {value[:40]!r}"
            )
    positive = encodes_pixels(rows)
    mixed = positive.groupby(rows["ImageId"]).nunique() > 1
    if mixed.any():
        image_id = mixed[mixed].index[0]
        lines = rows.loc[rows["ImageId"] == image_id, LINE].tolist()
        raise DataError(f"{labels_csv} lines {lines}: image {image_id} has both empty ({NEGATIVE!r}) and non-empty RLE rows")
    return rows


def encodes_pixels(rows: pd.DataFrame) -> pd.Series:
    """Per row: does its RLE cover at least one pixel? ``-1`` and runs that all have length 0
    (``"5 0"``) encode an empty mask, so both mark a negative image."""
    return rows["EncodedPixels"].map(lambda value: value != NEGATIVE and any(int(length) for length in value.split()[1::2]))


def find_dicoms(raw: Path) -> dict[str, str]:
    """ImageId → DICOM path relative to ``raw``, from a recursive walk of ``dicom-images-train/``."""
    folder = raw / IMAGES_DIR
    if not folder.is_dir():
        raise DataError(f"{folder}: missing; expected the SIIM stage 1 DICOM folder")
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*.dcm")):
        relative = path.relative_to(raw).as_posix()
        if path.stem in found:
            raise DataError(f"{raw}: ImageId {path.stem} has two DICOMs: {found[path.stem]} and {relative}")
        found[path.stem] = relative
    return found


def split_images(image_ids: Sequence[str]) -> dict[str, list[str]]:
    """The reference's calls on unique ImageIds (not rows): 0.3 held out, halved, first = test."""
    return reference_three_way_split(image_ids, 0.3)


def balanced_training_ids(train_ids: Sequence[str], positives: set[str], rng: np.random.RandomState) -> list[str]:
    """The reference's training set: every positive, then as many negatives drawn without
    replacement (each group in split order), as ``SIIMImageDataset`` builds it."""
    positive = [item for item in train_ids if item in positives]
    negative = [item for item in train_ids if item not in positives]
    if len(negative) < len(positive):
        raise DataError(f"cannot balance: {len(positive)} positive but only {len(negative)} negative training images")
    chosen = set(rng.choice(np.array(negative, dtype=object), size=len(positive), replace=False).tolist())
    return positive + [item for item in negative if item in chosen]


def reference_subset(train_ids: Sequence[str], percent: int, positives: set[str], constructions: int = 2) -> list[str]:
    """Draw 0: the reference's balance + ``int(n * frac)`` draw on RandomState(42), kept from the
    second dataset construction (see ``preparation.reference_numpy_choice`` for the caveat).
    Seed 42 for every fraction, although ``run_seg_finetune.sh`` runs SIIM 10 % with ``--seed 0``."""
    state = np.random.RandomState(REFERENCE_SEED)
    for _ in range(constructions):
        balanced = balanced_training_ids(train_ids, positives, state)
        chosen = set(state.choice(np.array(balanced, dtype=object), size=int(len(balanced) * percent / 100), replace=False).tolist())
    return [item for item in train_ids if item in chosen]


def make_partition(rows: pd.DataFrame) -> Partition:
    image_ids = rows["ImageId"].unique().tolist()
    positives = set(rows.loc[encodes_pixels(rows), "ImageId"])
    splits = split_images(image_ids)
    subsets = fraction_subsets(
        splits["train"], lambda ids, percent: reference_subset(ids, percent, positives),
        labels={item: item in positives for item in image_ids}, balanced=True,
    )
    return Partition(PARTITION, splits, subsets)


def rle_to_mask(rle: str, width: int, height: int) -> np.ndarray:
    """Kaggle RLE (relative starts, column-major) → bool [height, width]; ValueError if a run
    ends beyond the image."""
    if rle == NEGATIVE:
        return np.zeros((height, width), dtype=bool)
    tokens = rle.split()
    last_end = sum(int(token) for token in tokens)  # runs are relative: the last one ends at the sum (Python ints, no overflow)
    if last_end > width * height:
        raise ValueError(f"RLE run ends at pixel {last_end}, beyond the {width}x{height} image")
    values = np.array(tokens, dtype=np.int64)  # every number fits: none exceeds width * height
    starts = np.cumsum(values[0::2] + np.concatenate([[0], values[1::2][:-1]]))
    ends = starts + values[1::2]
    if len(values) % 2 == 0 and (values >= 0).all():
        # Well-formed runs (the usual case) lie in order, within the image and apart: set each slice,
        # the same mask as the +1/-1 count below without its cumulative sum over every pixel (20x faster).
        flat_mask = np.zeros(width * height, dtype=bool)
        for start, end in zip(starts.tolist(), ends.tolist()):
            flat_mask[start:end] = True
        return flat_mask.reshape(width, height).T
    flat = np.zeros(width * height + 1, dtype=np.int32)
    np.add.at(flat, starts, 1)
    np.add.at(flat, ends, -1)
    return (np.cumsum(flat[:-1]) > 0).reshape(width, height).T


def prepare(options: PrepareOptions) -> Manifest:
    """Official SIIM stage 1 download → prepared ``siim`` folder (split, masks, cache)."""
    labels_csv = require_file(options.raw / LABELS_FILE, "the SIIM stage 1 train-rle.csv")
    rows = read_rle_rows(labels_csv)
    [partition], verification = verify_partitions("siim", [make_partition(rows)], options)
    positives = set(rows.loc[encodes_pixels(rows), "ImageId"])
    require_scorable("siim", partition, {"pneumothorax": positives}, "Dice", options.raw)
    dicoms = find_dicoms(options.raw)
    out = prepare_output(options)
    image_ids = rows["ImageId"].unique().tolist()
    jobs = [(item, str(options.raw / dicoms.get(item, f"{IMAGES_DIR}/{item}.dcm"))) for item in image_ids]
    listed_at = {item: (labels_csv, line) for item, line in rows.groupby("ImageId", sort=False)[LINE].first().items()}
    cache, dropped = cache_images(options, jobs, read_dicom, IMAGE_MODE, listed_at)

    problems = Problems(options.on_error)
    groups = rows[~rows["ImageId"].isin(dropped)].groupby("ImageId", sort=False)
    for image_id, group in tqdm(groups, total=groups.ngroups, desc="siim masks", unit="mask"):
        width, height = cache.sizes[image_id]
        mask = np.zeros((height, width), dtype=bool)
        try:
            for rle, line in zip(group["EncodedPixels"], group[LINE]):
                mask |= rle_to_mask(rle, width, height)
        except ValueError as error:
            problems.report(labels_csv, line, image_id, str(error))
            continue
        write_mask(out, image_id, mask, options.image_size, IMAGE_MODE)

    positive_rows = rows[encodes_pixels(rows)]
    positives, instances = set(positive_rows["ImageId"]), positive_rows.groupby("ImageId").size()
    records = pd.DataFrame({
        "id": image_ids,
        "path": [dicoms.get(item, "") for item in image_ids],
        "positive": [int(item in positives) for item in image_ids],
        "instances": [int(instances.get(item, 0)) for item in image_ids],
        "width": [cache.sizes.get(item, (0, 0))[0] for item in image_ids],
        "height": [cache.sizes.get(item, (0, 0))[1] for item in image_ids],
    })
    return finish(
        options, dataset="siim", partitions=[partition], records=records,
        sources=describe_sources(options.raw, [labels_csv]), cache=cache, image_mode=IMAGE_MODE,
        verification=verification, excluded=problems.excluded, excluded_ids=dropped | problems.excluded_ids,
        notes=NOTES,
        extra={"images": listing_fingerprint(options.raw, dicoms.values()),
               "train_sampler": {"partition": PARTITION, "fractions": [100], "function": SAMPLER}},
    )


DATASETS.add("siim", DatasetInfo(
    name="siim",
    title="SIIM-ACR Pneumothorax Segmentation (stage 1)",
    partitions=(PARTITION,),
    raw_layout=f"{LABELS_FILE} and {IMAGES_DIR}/**/<ImageId>.dcm",
    prepare=prepare,
))
