"""Measure each demo dataset's ``minimum_images``: the fewest ``--images`` whose test splits can
be scored and whose detection splits hold a box (``benchmark.data.preparation.require_scorable``),
with seed 0.

    python tools/demo_minimums.py [DATASET ...]

For each size it writes the demo data (32 px) and runs the dataset's preparer up to the point
where the check has passed (nothing is decoded). Scans every size from 8 up to the first that
works and then the next 50 sizes, since a larger demo samples other rows: the printed minimum is
the smallest size from which all scanned sizes work. Paste the numbers into the ``@demo_writer``
registrations in ``benchmark/data/demo/``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from unittest import mock

import benchmark.data.datasets  # noqa: F401 - registers the preparers
from benchmark.data.demo import DEMO_WRITERS, MAX_IMAGES, MIN_IMAGES, generate
from benchmark.data.preparation import UnscorableSplit
from benchmark.data.registry import DATASETS, PrepareOptions

STEP = 4  # sizes scanned: 8, 12, 16, ...
TAIL = 48  # the scanned sizes up to this many above the first working one must work too


class Scorable(Exception):
    """Raised in place of writing the output: the preparer got past its scorability checks."""


def scorable(dataset: str, images: int, folder: Path) -> bool:
    generate(folder / "raw", [dataset], images=images, size=32, seed=0, overwrite=True)
    options = PrepareOptions(raw=folder / "raw" / dataset, out=folder / "prepared", image_size=32, workers=1)
    preparer = DATASETS.get(dataset).prepare
    with mock.patch.object(sys.modules[preparer.__module__], "prepare_output", side_effect=Scorable):
        try:
            preparer(options)
        except Scorable:
            return True
        except UnscorableSplit:
            return False
    raise AssertionError("the preparer finished without calling prepare_output")


def minimum(dataset: str) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        folder, size, first_working = Path(scratch), MIN_IMAGES, None
        while first_working is None or size <= first_working + TAIL:
            if size > MAX_IMAGES:
                raise SystemExit(f"{dataset}: no demo size up to {MAX_IMAGES} images can be scored")
            if scorable(dataset, size, folder):
                first_working = size if first_working is None else first_working
            else:
                first_working = None
            size += STEP
        return first_working


def main(names: list[str]) -> None:
    for name in names or [writer for writer in DEMO_WRITERS.names() if DEMO_WRITERS.get(writer).minimum_images]:
        print(f"{name}: minimum_images={minimum(name)}", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
