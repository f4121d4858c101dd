"""Regenerate the shipped split ID lists in benchmark/splits/ from the official label files.

    .venv/bin/python tools/make_splits.py            # label files from the torchxrayvision wheel
    .venv/bin/python tools/make_splits.py --labels rsna=/data/stage_2_train_labels.csv

The lists are the package data every ``prepare`` checks a user's splits against. They are made
by the same functions the preparers run (all seeded: the reference's random_state=0 splits, the
reference's fraction rules for draw 0, seeds (42, percent, draw) for draws 1-2), so rerunning
this script must leave ``git diff benchmark/splits`` empty. ``source.json`` beside each
dataset's lists records the label file's sha256 and the sizes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from benchmark.data.datasets import chexpert, rsna, siim
from benchmark.data.prepared import ids_fingerprint, split_file_name, write_ids
from benchmark.data.preparation import SHIPPED_SPLITS, Partition
from benchmark.hashing import file_sha256

# dataset -> (label file name inside torchxrayvision/data, official name, partitions from the file)
SOURCES: dict[str, tuple[str, str, Callable[[Path], list[Partition]]]] = {
    "rsna": ("kaggle_stage_2_train_labels.csv.zip", rsna.LABELS_FILE, lambda path: rsna.make_partitions(rsna.read_patients(path))),
    "siim": ("siim-pneumothorax-train-rle.csv.gz", siim.LABELS_FILE, lambda path: [siim.make_partition(siim.read_rle_rows(path))]),
    # Classification's test comes from valid.csv at preparation time (not in the wheel): its empty list is not shipped.
    "chexpert": ("chexpert_train.csv.gz", "train.csv", lambda path: chexpert_partitions(chexpert.read_label_table(path))),
}


def chexpert_partitions(table: pd.DataFrame) -> list[Partition]:
    """CheXpert's partitions from ``train.csv``: classification (without its test) and the 5×200 hold-out."""
    return [chexpert.training_partition(table, test_ids=[]), chexpert.holdout_partition(table)]


def torchxrayvision_labels(name: str) -> Path:
    import torchxrayvision

    return Path(os.path.dirname(torchxrayvision.__file__)) / "data" / name


def write_shipped(dataset: str, labels: Path, root: Path = SHIPPED_SPLITS) -> dict[str, int]:
    """Rewrite ``root/<dataset>/`` from ``labels``; returns the size of every list written."""
    wheel_name, official_name, build = SOURCES[dataset]
    partitions = build(labels)  # before deleting anything: a bad label file leaves the shipped lists in place
    folder = root / dataset
    if folder.exists():
        shutil.rmtree(folder)
    sizes: dict[str, int] = {}
    fingerprints: dict[str, str] = {}
    for partition in partitions:
        for file_name, ids in partition.files().items():
            if not ids:
                if file_name != split_file_name("test"):  # empty by construction (the 5x200 hold-out trains nothing)
                    sizes[f"{partition.name}/{file_name}"] = 0
                continue  # no file; an empty test list is one the label file cannot give (CheXpert's classification test)
            write_ids(folder / partition.name / file_name, ids)
            sizes[f"{partition.name}/{file_name}"] = len(ids)
            fingerprints[f"{partition.name}/{file_name}"] = ids_fingerprint(ids)
    source = {
        "label_file": official_name,
        "copy_used": f"torchxrayvision==1.5.7 data/{wheel_name}" if labels.name == wheel_name else labels.name,
        "sha256": file_sha256(labels),
        "generated_by": "tools/make_splits.py",
        "sizes": sizes,
        "fingerprints": fingerprints,
    }
    (folder / "source.json").write_text(json.dumps(source, indent=2) + "\n")
    return sizes


def labels_option(value: str) -> tuple[str, Path]:
    """``DATASET=PATH`` of ``--labels``; anything else is a usage error, not a traceback."""
    dataset, separator, path = value.partition("=")
    if not separator or dataset not in SOURCES or not path:
        raise argparse.ArgumentTypeError(f"{value!r}: expected DATASET=PATH with DATASET one of {', '.join(sorted(SOURCES))}")
    return dataset, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", action="append", default=[], type=labels_option, metavar="DATASET=PATH",
                        help="official label file for a dataset (default: the torchxrayvision copy)")
    parser.add_argument("--datasets", nargs="*", default=sorted(SOURCES), choices=sorted(SOURCES))
    args = parser.parse_args()
    given = dict(args.labels)
    for dataset in args.datasets:
        labels = given[dataset] if dataset in given else torchxrayvision_labels(SOURCES[dataset][0])
        sizes = write_shipped(dataset, labels)
        print(f"{dataset}: {sizes}")


if __name__ == "__main__":
    main()
