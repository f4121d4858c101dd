"""COVIDx CXR (linear classification, three classes: normal, pneumonia, COVID-19).

Raw folder: the label files of a COVIDx release plus its ``train/`` and ``test/`` image folders.
Label files are space-separated, no header, four fields: patient id, filename, class, data source
(PROTOCOL.md section 5.1). Supported, looked up in this order:

- ``train_COVIDx9A.txt`` / ``test_COVIDx9A.txt`` (V9A, what the reference reads);
- exactly one other ``train_COVIDx<version>.txt`` / ``test_COVIDx<version>.txt`` pair with
  three-class labels (COVID-Net's V5 and earlier and the V*A releases);
- ``train.txt`` / ``test.txt`` (the Kaggle CXR-2 naming), if its labels are three-class.

COVID-Net's ``docs/COVIDx.md`` states that V7B and later binary releases label images
``positive``/``negative``; the Kaggle CXR-2/3/4 ``train.txt``/``val.txt``/``test.txt`` files are of
that kind. The reference maps every class other than normal/pneumonia to COVID-19, which would turn
such a file silently into an all-COVID dataset; here any class outside the three-class vocabulary
is an error naming the line. Binary releases are therefore not supported.

Split (partition ``classification``, reference ``mgca/preprocess/covidx.py``):
``train_test_split(train list, train_size=0.8, random_state=0)`` → train / val, in the order it
returns; test = the test list. The paper is quoted with 10% validation, the code uses 20%
(defect B18): the code is followed. The split is drawn over the full train list before missing
images are excluded, so one missing file does not move every other image.

Label fractions: draw 0 = ``df.sample(frac, random_state=42)`` on the training split in the
order ``train_test_split`` returns it (the reference's rule); draws 1, 2 = seeded draws stratified
by class. Images missing from ``train/``/``test/`` (several V9A files are missing from the current
Kaggle copy, B18) stop the preparation, or with ``on_error="exclude"`` are listed in the manifest
and removed from every split and subset after the split was drawn.

The label files' sha256 are in the manifest (``source_files``); for V9A the class counts are
checked against COVID-Net's published numbers (train 8,085 / 5,555 / 16,490, test 100 / 100 /
200), skipped with ``--no-verify`` or on demo data.

Image ID: the filename as listed (already a file name, unique across both lists; checked).
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from benchmark.data.imaging import read_gray
from benchmark.data.prepared import DataError, Manifest
from benchmark.data.preparation import (
    Partition,
    cache_images,
    describe_sources,
    finish,
    fraction_subsets,
    is_demo,
    listing_fingerprint,
    prepare_output,
    reference_frac_sample,
    require_scorable,
    verify_partitions,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

NAME = "covidx"
PARTITION = "classification"

CLASSES = {"normal": 0, "pneumonia": 1, "COVID-19": 2}
BINARY_CLASSES = ("positive", "negative")
FIELDS = ("patient", "filename", "class", "source")
REFERENCE_LABEL_FILES = ("train_COVIDx9A.txt", "test_COVIDx9A.txt")
VERSIONED_TRAIN = re.compile(r"^train_COVIDx(?P<version>[0-9A-Za-z]+)\.txt$")
TRAIN_FRACTION = 0.8  # of the train list; the rest is validation (the reference code; paper: 0.9)
SPLIT_SEED = 0
IMAGE_FOLDERS = {"train": "train", "test": "test"}  # label list -> image folder
# Class counts (normal, pneumonia, COVID-19) published with the label files
# (lindawangg/COVID-Net docs/COVIDx.md and pull request 206).
KNOWN_COUNTS = {
    "train_COVIDx9A.txt": {"normal": 8085, "pneumonia": 5555, "COVID-19": 16490},
    "test_COVIDx9A.txt": {"normal": 100, "pneumonia": 100, "COVID-19": 200},
}
NOTES = (
    "Validation = 20% of the train list (train_test_split(train_size=0.8, random_state=0), the reference "
    "code); the paper is quoted with 10% (defect B18).",
    "Classes outside normal / pneumonia / COVID-19 are an error; the reference maps any other class to "
    "COVID-19, which would silently relabel binary (positive/negative) releases.",
    "Label fractions: draw 0 = df.sample(frac, random_state=42) on the training split (the reference's rule); "
    "draws 1, 2 = seeded draws stratified by class.",
)


def find_label_files(raw: Path) -> tuple[Path, Path]:
    """The (train, test) label files of the release in ``raw``; see the module docstring."""
    train, test = (raw / name for name in REFERENCE_LABEL_FILES)
    if train.is_file() and test.is_file():
        return train, test
    versions = sorted(m["version"] for p in raw.glob("train_COVIDx*.txt") if (m := VERSIONED_TRAIN.match(p.name)))
    paired = [v for v in versions if (raw / f"test_COVIDx{v}.txt").is_file()]
    if len(paired) > 1:
        raise DataError(f"{raw}: several COVIDx label-file pairs ({', '.join(paired)}); keep only the one to prepare")
    if paired:
        return raw / f"train_COVIDx{paired[0]}.txt", raw / f"test_COVIDx{paired[0]}.txt"
    if (raw / "train.txt").is_file() and (raw / "test.txt").is_file():
        return raw / "train.txt", raw / "test.txt"
    raise DataError(
        f"{raw}: no COVIDx label files; expected train_COVIDx9A.txt and test_COVIDx9A.txt (the reference's V9A), "
        "another train_/test_COVIDx<version>.txt pair, or train.txt and test.txt, next to the train/ and test/ folders"
    )


def parse_label_file(path: Path) -> pd.DataFrame:
    """Rows of a COVIDx label file with ``label`` (0/1/2) and ``line`` (1-based) added."""
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not a text label file ({error}); use the official COVIDx label file") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) != len(FIELDS):
            raise DataError(
                f"{path} line {number}: {len(fields)} fields, expected 4 space-separated fields "
                f"(patient id, filename, class, data source): {line!r}"
            )
        name = fields[2]
        if name not in CLASSES:
            hint = (" This is a binary (COVID positive/negative) release; the protocol needs a three-class label file "
                    "such as train_COVIDx9A.txt/test_COVIDx9A.txt.") if name in BINARY_CLASSES else ""
            raise DataError(f"{path} line {number}: class {name!r} is not one of {list(CLASSES)}.{hint}")
        rows.append((*fields, CLASSES[name], number))
    if not rows:
        raise DataError(f"{path}: empty label file")
    frame = pd.DataFrame(rows, columns=[*FIELDS, "label", "line"])
    duplicated = frame["filename"].duplicated()
    if duplicated.any():
        first = frame[duplicated].iloc[0]
        raise DataError(f"{path} line {first['line']}: image {first['filename']!r} is listed twice")
    return frame


def train_val_split(train_list: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The reference's ``train_test_split(train_size=0.8, random_state=0)``, order kept."""
    train, val = train_test_split(train_list, train_size=TRAIN_FRACTION, random_state=SPLIT_SEED)
    return train, val


def check_known_counts(path: Path, frame: pd.DataFrame) -> None:
    """Class counts of a label file with published counts (V9A) must match them."""
    expected = KNOWN_COUNTS.get(path.name)
    found = {name: int((frame["class"] == name).sum()) for name in CLASSES}
    if expected is not None and found != expected:
        raise DataError(
            f"{path}: class counts {found} differ from the published {expected}; use the official, "
            "unmodified label file or pass --no-verify"
        )


def make_partition(train_list: pd.DataFrame, test_list: pd.DataFrame) -> Partition:
    """The ``classification`` partition with its 1%/10% subsets (draws 0-2)."""
    shared = sorted(set(train_list["filename"]) & set(test_list["filename"]))
    if shared:
        raise DataError(f"COVIDx: images {shared[:3]} are listed in both the train and the test label file")
    train, val = train_val_split(train_list)
    train_ids = train["filename"].tolist()
    subsets = fraction_subsets(train_ids, reference_frac_sample, labels=dict(zip(train["filename"], train["label"])))
    return Partition(PARTITION, {"train": train_ids, "val": val["filename"].tolist(), "test": test_list["filename"].tolist()}, subsets)


def prepare(options: PrepareOptions) -> Manifest:
    """COVIDx raw folder → prepared ``classification`` dataset (see the module docstring)."""
    label_files = dict(zip(("train", "test"), find_label_files(options.raw)))
    lists = {name: parse_label_file(path) for name, path in label_files.items()}
    if options.verify_shipped and not is_demo(options.raw):
        for name, path in label_files.items():
            check_known_counts(path, lists[name])
    (partition,), verification = verify_partitions(NAME, [make_partition(lists["train"], lists["test"])], options)
    test = lists["test"]
    require_scorable(NAME, partition, {name: set(test["filename"][test["label"] == label]) for name, label in CLASSES.items()},
                     "the one-vs-rest AUROC", options.raw)
    out = prepare_output(options)

    rows = pd.concat([frame.assign(folder=IMAGE_FOLDERS[name], label_file=label_files[name]) for name, frame in lists.items()])
    paths = [options.raw / folder / filename for folder, filename in zip(rows["folder"], rows["filename"])]
    listed_at = {item: (label_file, line) for item, label_file, line in zip(rows["filename"], rows["label_file"], rows["line"])}
    cache, excluded_ids = cache_images(options, [(item, str(path)) for item, path in zip(rows["filename"], paths)], read_gray,
                                       "letterbox", listed_at)
    records = pd.DataFrame({
        "id": rows["filename"], "path": [f"{folder}/{name}" for folder, name in zip(rows["folder"], rows["filename"])],
        "patient": rows["patient"], "source": rows["source"], "class": rows["class"], "label": rows["label"],
    })
    return finish(
        options, dataset=NAME, partitions=[partition], records=records,
        sources=describe_sources(options.raw, label_files.values()), cache=cache, image_mode="letterbox",
        verification=verification, excluded_ids=excluded_ids, notes=NOTES,
        extra={"label_files": {name: path.name for name, path in label_files.items()},
               "classes": list(CLASSES), "label_columns": ["label"],
               "images": listing_fingerprint(options.raw, paths)},
    )


DATASETS.add(NAME, DatasetInfo(
    name=NAME,
    title="COVIDx CXR (three classes: normal, pneumonia, COVID-19)",
    partitions=(PARTITION,),
    raw_layout="train_COVIDx9A.txt, test_COVIDx9A.txt (or another three-class release's label files), train/, test/",
    prepare=prepare,
))
