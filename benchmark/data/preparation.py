"""Shared machinery of the dataset preparers: official files in, prepared folder out.

Every preparer (``benchmark/data/datasets/<name>.py``) follows the same five steps, each one a
helper here, so that no preparer re-implements checking, sampling, verification or writing:

1. **Read** the official label files: :func:`require_file`, :func:`read_label_csv` (strips
   whitespace from column names and values, reference defect B3; checks required columns),
   :func:`numeric_column`. Rows are named by their line in the file (column :data:`LINE`).
2. **Split** into :class:`Partition` objects (train/val/test ID lists in the order the
   reference's split call returns them) and add label-fraction subsets with
   :func:`fraction_subsets`:

   * draw 0 reproduces the reference's rule: :func:`reference_frac_sample` (classification:
     ``df.sample(frac, random_state=42)`` on the training split in file order) or
     :func:`reference_numpy_choice` (detection/segmentation: ``np.random.choice`` on the
     global numpy RNG after ``seed_everything(42)``; see its docstring for what that means);
   * draws 1, 2, ... are independent seeded draws of the same size, stratified by the label
     where one is given (:func:`stratified_draw`).
3. **Verify** the splits against the shipped ID lists in ``benchmark/splits/<dataset>/<partition>/``
   (:func:`verify_partitions`): same IDs, same counts, or a :class:`DataError` naming the split,
   the missing/extra counts and examples. Skipped with ``--no-verify`` or when the raw folder
   holds the demo generator's marker file :data:`DEMO_MARKER`. Then :func:`require_scorable`
   refuses a test split that leaves a metric undefined (a class without positives).
4. **Decode** the images once into the uint8 cache (:func:`cache_images`, wrapping
   :func:`benchmark.data.cache.write_image_cache`). Label-level problems (a box outside the image,
   an RLE that does not fit) go through :class:`Problems`: an error naming file and row, or a
   counted exclusion with ``on_error="exclude"``.
5. **Write** masks (:func:`write_mask`), COCO annotations (:func:`coco_annotations`,
   :func:`write_coco`), then :func:`finish`: drops excluded IDs everywhere, writes
   ``splits/<partition>/*.txt``, ``records.csv`` and ``manifest.json`` (written last, so its
   presence means the preparation completed).

The layout itself is defined in :mod:`benchmark.data.prepared`.
"""

from __future__ import annotations

import csv
import datetime as dt
import difflib
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

import benchmark
from benchmark.data.cache import CacheResult, OnError, write_image_cache
from benchmark.data.csvfields import too_many_fields
from benchmark.data.imaging import RESIZERS, ResizeMode
from benchmark.data.prepared import (
    PREPARATION_VERSION,
    SPLITS,
    DataError,
    Manifest,
    SourceFile,
    read_ids,
    split_file_name,
    write_ids,
)
from benchmark.data.registry import DATASETS, PrepareOptions
from benchmark.hashing import file_sha256

DEMO_MARKER = "DEMO_DATASET"  # written by the demo generator into every raw folder it creates
SHIPPED_SPLITS = Path(benchmark.__file__).parent / "splits"
REFERENCE_SEED = 42  # pandas random_state of the reference's df.sample and its seed_everything default
SUBSET_PERCENTS = (1, 10)
DRAWS = 3  # draw 0 = the reference's rule, draws 1..DRAWS-1 = independent seeded draws
LINE = "_line"  # column added by read_label_csv: line number in the file (header = line 1)


# ---------------------------------------------------------------------------------------------
# 1. Reading official files


def is_demo(raw: Path) -> bool:
    """True when ``raw`` was written by the demo generator (it holds :data:`DEMO_MARKER`)."""
    return (Path(raw) / DEMO_MARKER).is_file()


def require_file(path: Path, what: str) -> Path:
    """``path`` if it is a file; otherwise a DataError naming it and what it should hold."""
    if not Path(path).is_file():
        raise DataError(f"{path}: missing; expected {what}. Check --raw points at the official download")
    return Path(path)


def describe_sources(raw: Path, paths: Iterable[Path]) -> list[SourceFile]:
    """Size and sha256 of the official label files, with paths relative to ``raw``."""
    return [
        SourceFile(path=Path(path).relative_to(raw).as_posix(), size=Path(path).stat().st_size, sha256=file_sha256(Path(path)))
        for path in paths
    ]


def listing_fingerprint(raw: Path, paths: Iterable[str | Path]) -> dict[str, Any]:
    """Count and sha256 of (relative path, size) of the image files that exist among ``paths``
    (absolute or relative to ``raw``; missing ones are reported as exclusions elsewhere): cheap,
    catches missing or replaced files without hashing gigabytes of pixels."""
    digest = hashlib.sha256()
    count = 0
    present = (Path(raw) / p for p in paths)  # joining an absolute path keeps it as it is
    for path in sorted(p.relative_to(raw).as_posix() for p in present if p.is_file()):
        digest.update(f"{path}\t{(Path(raw) / path).stat().st_size}\n".encode())
        count += 1
    return {"count": count, "sha256": digest.hexdigest()}


def read_label_csv(path: Path, required: Sequence[str]) -> pd.DataFrame:
    """An official CSV as strings, whitespace stripped from column names and values (reference
    defect B3: SIIM's ``" EncodedPixels"``), with a :data:`LINE` column naming each row's line.

    A missing column is a DataError naming the file, the column, the columns found and, when one
    looks like a renamed version of it, that column.
    """
    require_file(path, f"a CSV with columns {', '.join(required)}")
    try:
        ragged = too_many_fields(path)
        if ragged:  # before pandas, which would shift columns or count lines its own way
            raise DataError(f"{path} {ragged}. Use the official, unmodified file")
        # Blank lines are read as empty rows and dropped below, so that LINE stays the true line number.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"{path}: not a readable CSV ({error})") from None
    frame.columns = [str(column).strip() for column in frame.columns]
    missing = [column for column in required if column not in frame.columns]
    if missing:
        hints = []
        for column in missing:
            close = difflib.get_close_matches(column, list(frame.columns), n=1, cutoff=0.6)
            hints.append(f"{column!r}" + (f" (renamed to {close[0]!r}?)" if close else ""))
        raise DataError(
            f"{path}: missing column(s) {', '.join(hints)}; found {list(frame.columns)}. "
            "Use the official, unmodified file"
        )
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    frame[LINE] = np.arange(2, len(frame) + 2)
    blank = (frame.drop(columns=LINE) == "").all(axis=1)
    if blank.all():
        raise DataError(f"{path}: the file has no rows (only a header); use the official, complete file")
    return frame[~blank].reset_index(drop=True)


def numeric_column(frame: pd.DataFrame, column: str, path: Path, allow_empty: bool = False) -> pd.Series:
    """``frame[column]`` as float; a non-number is a DataError naming the file, line and value.
    Empty cells become NaN when ``allow_empty``."""
    values = frame[column].replace("", np.nan) if allow_empty else frame[column]
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & (values.notna() if allow_empty else True)
    if bad.any():
        row = frame[bad].iloc[0]
        raise DataError(f"{path} line {row[LINE]}: column {column!r} holds {row[column]!r}, expected a number")
    return numbers.astype(float)


# ---------------------------------------------------------------------------------------------
# 2. Splits and label-fraction subsets


@dataclass
class Partition:
    """One train/val/test division (see :mod:`benchmark.data.prepared`) and its subsets."""

    name: str
    splits: dict[str, list[str]]  # "train"/"val"/"test" -> IDs, in the reference's order
    subsets: dict[tuple[int, int], list[str]] = field(default_factory=dict)  # (percent, draw) -> IDs

    def __post_init__(self) -> None:
        if set(self.splits) != set(SPLITS):
            raise DataError(f"partition {self.name!r} needs splits {SPLITS}, got {sorted(self.splits)}")
        seen: dict[str, str] = {}
        for split, ids in self.splits.items():
            for item in ids:
                if item in seen:
                    raise DataError(f"partition {self.name!r}: ID {item!r} is in both {seen[item]} and {split}")
                seen[item] = split

    def files(self) -> dict[str, list[str]]:
        """Split-file name -> IDs, as written under ``splits/<partition>/``."""
        files = {split_file_name(split): ids for split, ids in self.splits.items()}
        files.update({split_file_name("train", percent, draw): ids for (percent, draw), ids in self.subsets.items()})
        return files

    def with_files(self, files: Mapping[str, list[str]]) -> Partition:
        """The same partition with the lists named in ``files`` (split-file name -> IDs) replaced."""
        return Partition(
            self.name,
            {split: files.get(split_file_name(split), ids) for split, ids in self.splits.items()},
            {(p, d): files.get(split_file_name("train", p, d), ids) for (p, d), ids in self.subsets.items()},
        )

    def without(self, dropped: set[str]) -> Partition:
        """The same partition with ``dropped`` IDs removed from every list (excluded images)."""
        keep = lambda ids: [item for item in ids if item not in dropped]  # noqa: E731
        return Partition(
            self.name, {split: keep(ids) for split, ids in self.splits.items()},
            {key: keep(ids) for key, ids in self.subsets.items()},
        )


def reference_three_way_split(ids: Sequence[str], held_out: float | int) -> dict[str, list[str]]:
    """The reference's train/val/test calls (``mgca/preprocess/rsna.py``, ``siim.py``):
    ``train_test_split(ids, test_size=held_out, random_state=0)``, then the held-out part halved
    by ``train_test_split(test_size=0.5, random_state=0)``, whose *first* output is the test split."""
    train, rest = train_test_split(list(ids), test_size=held_out, random_state=0)
    test, val = train_test_split(rest, test_size=0.5, random_state=0)
    return {"train": list(train), "val": list(val), "test": list(test)}


def reference_frac_sample(train_ids: Sequence[str], percent: int) -> list[str]:
    """The reference's classification subset: ``df.sample(frac=percent/100, random_state=42)`` on
    the training split in file order (``round(frac * n)`` rows). Returned in split order."""
    frame = pd.DataFrame({"id": list(train_ids)})
    chosen = set(frame.sample(frac=percent / 100, random_state=REFERENCE_SEED)["id"])
    return [item for item in train_ids if item in chosen]


def reference_numpy_choice(train_ids: Sequence[str], percent: int, constructions: int = 2) -> list[str]:
    """The reference's detection/segmentation subset: ``np.random.choice(n, int(pct*n), replace=False)``
    on the global numpy RNG, which ``seed_everything(42)`` seeds with 42.

    The training dataset is built twice before training (once by ``num_training_steps``, once by
    ``trainer.fit``, PROTOCOL section 8.1), so the subset trained on is the *second* draw of a
    RandomState(42) stream; ``constructions`` says how many draws to advance. This reproduces the
    reference only if nothing else consumed the global numpy RNG in between, which the reference
    does not guarantee (defect B27): draw 0 is therefore "the reference's mechanism, seed 42", not
    a file the authors released. Returned in split order.
    """
    state = np.random.RandomState(REFERENCE_SEED)
    n = len(train_ids)
    for _ in range(constructions):
        positions = state.choice(n, int(percent / 100 * n), replace=False)
    chosen = set(positions.tolist())
    return [item for position, item in enumerate(train_ids) if position in chosen]


def stratified_draw(
    train_ids: Sequence[str], count: int, seed: Sequence[int], labels: Mapping[str, Any] | None = None, balanced: bool = False
) -> list[str]:
    """``count`` IDs drawn without replacement with ``np.random.default_rng(seed)``; when
    ``labels`` is given, each label keeps its share of the training split, or an equal share when
    ``balanced`` (shares rounded by largest remainder). Returned in split order."""
    rng = np.random.default_rng(list(seed))
    positions = np.arange(len(train_ids))
    if labels is None:
        chosen = rng.choice(positions, size=count, replace=False)
    else:
        label_of = np.array([str(labels[item]) for item in train_ids])
        classes = sorted(set(label_of))
        members = {label: positions[label_of == label] for label in classes}
        share = {label: 1 / len(classes) if balanced else len(members[label]) / len(train_ids) for label in classes}
        quotas = {label: count * share[label] for label in classes}
        allocation = {label: int(quotas[label]) for label in classes}
        by_remainder = sorted(classes, key=lambda label: (-(quotas[label] - allocation[label]), label))
        for label in by_remainder[: count - sum(allocation.values())]:
            allocation[label] += 1
        short = [label for label in classes if allocation[label] > len(members[label])]
        if short:
            raise DataError(f"cannot draw {count} IDs: too few training images labelled {short}")
        chosen = np.concatenate(
            [rng.choice(members[label], size=allocation[label], replace=False) for label in classes]
        )
    keep = set(chosen.tolist())
    return [item for position, item in enumerate(train_ids) if position in keep]


def fraction_subsets(
    train_ids: Sequence[str],
    reference_draw: Callable[[Sequence[str], int], list[str]],
    labels: Mapping[str, Any] | None = None,
    percents: Sequence[int] = SUBSET_PERCENTS,
    draws: int = DRAWS,
    balanced: bool = False,
) -> dict[tuple[int, int], list[str]]:
    """(percent, draw) -> IDs for every subset of one training split.

    Draw 0 is ``reference_draw(train_ids, percent)``; draws k > 0 are :func:`stratified_draw` of
    the same size, seeded with ``(42, percent, k)``, stratified by ``labels`` when given (with
    equal class shares when ``balanced``, for datasets whose reference trains on a balanced set).
    """
    subsets: dict[tuple[int, int], list[str]] = {}
    for percent in percents:
        subsets[percent, 0] = reference_draw(train_ids, percent)
        for draw in range(1, draws):
            subsets[percent, draw] = stratified_draw(
                train_ids, len(subsets[percent, 0]), (REFERENCE_SEED, percent, draw), labels, balanced
            )
    return subsets


class UnscorableSplit(DataError):
    """A split leaves its metric undefined (or its cells without anything to learn) for every run."""


def require_scorable(
    dataset: str, partition: Partition, positives: Mapping[str, set[str]], metric: str, raw: Path,
    needs_negatives: bool = False, splits: Sequence[str] = ("test",),
) -> None:
    """Refuse a partition whose splits leave ``metric`` undefined for every run.

    ``positives`` maps each scored class to the IDs that show it. A class without a positive
    test image (or, when ``needs_negatives``, without a negative one, as per-class AUROC needs)
    would fail every cell at scoring time, as the reference's torchmetrics would; detection also
    passes ``splits=("train", "val", "test")``: a validation split without a box selects no epoch
    and a training split without one teaches nothing, so every cell would fail at run time. Tiny
    demo data are the usual cause, so the message says how many demo images work.
    """
    consequence = {"test": f"{metric} is undefined for every run",
                   "val": f"validation {metric} selects no epoch and every cell fails",
                   "train": "no cell has anything to learn"}
    for split in splits:
        ids_in_split = partition.splits[split]
        for name, ids in positives.items():
            count = sum(item in ids for item in ids_in_split)
            missing = "positive" if count == 0 else "negative" if needs_negatives and count == len(ids_in_split) else None
            if missing is None:
                continue
            if is_demo(raw):
                from benchmark.data.demo import DEMO_WRITERS  # the demo package imports this module

                minimum = DEMO_WRITERS.get(dataset).minimum_images
                hint = f"generate the demo data with at least {minimum} images (demo-data --images {minimum}, seed 0)"
            else:
                hint = "use the complete official files"
            raise UnscorableSplit(
                f"{dataset}: the {partition.name} {split} split ({len(ids_in_split)} images) holds no {missing} {name!r} image, "
                f"so {consequence[split]}; {hint}"
            )


# ---------------------------------------------------------------------------------------------
# 3. Verification against the shipped ID lists


def _differences(name: str, shipped: list[str], ours: list[str]) -> str | None:
    missing = sorted(set(shipped) - set(ours))
    extra = sorted(set(ours) - set(shipped))
    if not missing and not extra and len(shipped) == len(ours):
        return None
    return (
        f"{name}: {len(ours)} IDs, shipped {len(shipped)}; {len(missing)} missing (e.g. {missing[:3]}), "
        f"{len(extra)} extra (e.g. {extra[:3]})"
    )


def verify_partitions(
    dataset: str, partitions: list[Partition], options: PrepareOptions, shipped_root: Path = SHIPPED_SPLITS
) -> tuple[list[Partition], str]:
    """Compare every split and subset with ``shipped_root/<dataset>/<partition>/<file>``.

    Returns the partitions (ID order taken from the shipped files, so that split fingerprints
    match across machines) and a verification status for the manifest. A mismatch is a DataError
    listing each differing file with missing/extra counts and examples.
    """
    if is_demo(options.raw):
        return partitions, f"skipped: demo data ({DEMO_MARKER} in the raw folder)"
    if not options.verify_shipped:
        return partitions, "skipped: --no-verify"
    verified: list[Partition] = []
    problems: list[str] = []
    compared = 0
    for partition in partitions:
        folder = shipped_root / dataset / partition.name
        ours = partition.files()
        ordered: dict[str, list[str]] = {}
        for path in sorted(folder.glob("*.txt")):
            shipped = read_ids(path)
            compared += 1
            if path.name not in ours:
                problems.append(f"{partition.name}/{path.name}: not produced (shipped {len(shipped)} IDs)")
                continue
            difference = _differences(f"{partition.name}/{path.name}", shipped, ours[path.name])
            if difference:
                problems.append(difference)
            else:
                ordered[path.name] = shipped
        verified.append(partition.with_files(ordered))
    if problems:
        raise DataError(
            f"{dataset}: the splits made from {options.raw} differ from the shipped ID lists in "
            f"{shipped_root / dataset}:\n  " + "\n  ".join(problems)
            + "\nUse the official, complete label files; pass --no-verify to prepare anyway "
            "(results are then not comparable with the leaderboard)"
        )
    if not compared:
        return partitions, "no shipped ID lists for this dataset"
    return verified, f"passed: {compared} ID lists equal to {shipped_root.name}/{dataset}"


# ---------------------------------------------------------------------------------------------
# 4. Images and label-level problems


class Problems:
    """Label-level problems of one preparation: raised at once (``on_error="raise"``) or
    collected as manifest exclusions (``"exclude"``), never dropped silently."""

    def __init__(self, on_error: OnError) -> None:
        self.on_error = on_error
        self.excluded: list[dict[str, Any]] = []
        self.excluded_ids: set[str] = set()

    def report(self, file: Path | str, row: int | str, image_id: str, reason: str) -> None:
        if self.on_error == "raise":
            raise DataError(
                f"{file} line {row} ({image_id}): {reason} "
                "(pass --on-error exclude to skip such images and list them in the manifest)"
            )
        self.excluded.append({"file": str(file), "row": row, "id": image_id, "reason": reason})
        self.excluded_ids.add(image_id)


def stale_reason(out: Path, raw: Path, image_size: int) -> str | None:
    """Why the preparation in ``out`` no longer matches ``raw`` at ``image_size`` (None: it does):
    another preparation version, a partition its preparer now also writes (CheXpert's
    ``holdout_5x200``: added without moving any existing list, so without a version bump that
    would re-prepare every dataset), another image size, or label files that changed or went missing."""
    manifest = Manifest.read(out)
    if manifest.preparation_version != PREPARATION_VERSION:
        return f"preparation version {manifest.preparation_version}, this code writes {PREPARATION_VERSION}"
    declared = DATASETS.get(manifest.dataset).partitions if manifest.dataset in DATASETS else ()
    missing = [name for name in declared if name not in manifest.partitions]
    if missing:
        return f"no partition {', '.join(missing)} (prepared before the preparer wrote it)"
    if manifest.image_size != image_size:
        return f"image size {manifest.image_size}, asked for {image_size}"
    for source in manifest.source_files:
        path = Path(raw) / source.path
        if not path.is_file() or path.stat().st_size != source.size or file_sha256(path) != source.sha256:
            return f"{path} is not the file it was prepared from"
    return None


def prepare_output(options: PrepareOptions) -> Path:
    """Create the output folder; refuse to overwrite a completed preparation."""
    if (options.out / "manifest.json").exists():
        raise DataError(f"{options.out}: already prepared (manifest.json exists); delete the folder or choose another --out")
    options.out.mkdir(parents=True, exist_ok=True)
    return options.out


def cache_images(
    options: PrepareOptions, jobs: list[tuple[str, str]], decode: Callable[[str], np.ndarray], mode: ResizeMode,
    listed_at: Mapping[str, tuple[Path, int]],
) -> tuple[CacheResult, set[str]]:
    """Decode ``(id, path)`` jobs into the image cache; returns the result and the excluded IDs.

    ``listed_at`` gives each ID's label file and line: an excluded image's manifest entry names
    its image file, that label file and row, and the reason.
    """
    result = write_image_cache(
        options.out, jobs, decode, options.image_size, mode, options.on_error, options.workers,
        description=f"decoding {options.out.name}",
    )
    for entry in result.excluded:
        label_file, row = listed_at[entry["id"]]
        entry.update(label_file=str(label_file), row=int(row))
    written = set(result.ids)
    return result, {image_id for image_id, _ in jobs if image_id not in written}


def check_box(box: Sequence[float], width: int, height: int) -> str | None:
    """Why an xyxy pixel box is invalid on a ``width`` × ``height`` image, or None."""
    x1, y1, x2, y2 = box
    if not all(np.isfinite(box)):
        return f"box {list(box)} has a missing coordinate"
    if x2 <= x1 or y2 <= y1:
        return f"box {list(box)} is empty"
    if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
        return f"box {list(box)} lies outside the {width}x{height} image"
    return None


# ---------------------------------------------------------------------------------------------
# 5. Writing


def write_mask(out: Path, image_id: str, mask: np.ndarray, size: int, mode: ResizeMode) -> None:
    """``out/masks/<id>.png``: a full-resolution boolean mask resized like its image (same
    geometry as the cache) and binarised at half coverage to uint8 {0, 255}."""
    if mask.any():
        resized = RESIZERS[mode](np.where(mask, 255, 0).astype(np.uint8), size)
    else:  # most images are negatives: skip the resize
        resized = np.zeros((size, size), dtype=np.uint8)
    path = out / "masks" / f"{image_id}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.where(resized >= 128, 255, 0).astype(np.uint8)):
        raise DataError(f"{path}: could not write the mask")


def coco_annotations(
    images: Iterable[tuple[str, int, int, Sequence[Sequence[float]]]], category: str
) -> dict[str, Any]:
    """COCO detection JSON from ``(id, width, height, xyxy pixel boxes)``; images without boxes
    stay in ``images`` (negatives must be scored, reference defect B1). ``file_name`` is the ID."""
    coco: dict[str, Any] = {"images": [], "annotations": [], "categories": [{"id": 1, "name": category}]}
    for number, (image_id, width, height, boxes) in enumerate(images, start=1):
        coco["images"].append({"id": number, "file_name": image_id, "width": int(width), "height": int(height)})
        for x1, y1, x2, y2 in boxes:
            coco["annotations"].append({
                "id": len(coco["annotations"]) + 1, "image_id": number, "category_id": 1,
                "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                "area": float((x2 - x1) * (y2 - y1)), "iscrowd": 0,
            })
    return coco


def write_coco(out: Path, split: str, coco: dict[str, Any]) -> None:
    path = out / "annotations" / f"{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(coco) + "\n")


def finish(
    options: PrepareOptions,
    *,
    dataset: str,
    partitions: list[Partition],
    records: pd.DataFrame,
    sources: list[SourceFile],
    cache: CacheResult,
    image_mode: ResizeMode,
    verification: str,
    excluded: Sequence[dict[str, Any]] = (),
    excluded_ids: set[str] = frozenset(),
    notes: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> Manifest:
    """Drop excluded IDs, write the split files, ``records.csv`` and (last) ``manifest.json``.

    ``records`` has one row per image with an ``id`` column plus task columns; a ``split`` column
    is added (``split_<partition>`` per partition when there are several, as RSNA has). Manifest
    counts are keyed ``<partition>/<file stem>`` (e.g. ``detection/train``,
    ``detection/train_1pct_draw0``) plus ``images``.
    """
    cached = set(cache.ids)
    dropped = set(excluded_ids) | {item for item in records["id"] if item not in cached}
    partitions = [partition.without(dropped) for partition in partitions]
    records = records[~records["id"].isin(dropped)].copy()
    if dropped and verification.startswith("passed"):
        verification += f"; then {len(dropped)} image(s) excluded (see excluded): splits are smaller than shipped"
    if records["id"].duplicated().any():
        raise DataError(f"{dataset}: duplicate image IDs in records: {records['id'][records['id'].duplicated()].tolist()[:3]}")
    counts: dict[str, int] = {"images": len(records)}
    for partition in partitions:
        column = "split" if len(partitions) == 1 else f"split_{partition.name}"
        split_of = {item: split for split, ids in partition.splits.items() for item in ids}
        records[column] = records["id"].map(split_of).fillna("")
        for file_name, ids in partition.files().items():
            write_ids(options.out / "splits" / partition.name / file_name, ids)
            counts[f"{partition.name}/{file_name.removesuffix('.txt')}"] = len(ids)
    records.to_csv(options.out / "records.csv", index=False)
    all_excluded = [*cache.excluded, *excluded]
    manifest = Manifest(
        dataset=dataset,
        preparation_version=PREPARATION_VERSION,
        package_version=benchmark.__version__,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        source_files=sources,
        counts=counts,
        image_size=options.image_size,
        image_mode=image_mode,
        partitions=[partition.name for partition in partitions],
        fractions={
            str(percent): sorted({draw for partition in partitions for (p, draw) in partition.subsets if p == percent})
            for percent in sorted({p for partition in partitions for (p, _) in partition.subsets})
        },
        excluded=all_excluded,
        notes=list(notes),
        demo=is_demo(options.raw),
        extra={"verification": verification, **(extra or {})},
    )
    manifest.write(options.out)
    return manifest

