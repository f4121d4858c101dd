"""Demo data: small synthetic versions of the six datasets in their official download layouts.

``python -m benchmark demo-data --out DIR`` writes ``DIR/<dataset>/`` for every registered writer
(one module per dataset here), so that ``python -m benchmark prepare DATASET --raw DIR/<dataset>``
and everything after it run end to end without the real data. Images are synthetic radiographs
(:mod:`benchmark.data.demo.synthesis`) whose findings follow real label rows, boxes, masks and
report sentences (:mod:`benchmark.data.demo.sources`).
"""

from __future__ import annotations

import importlib
import pkgutil
import shutil
from pathlib import Path

from benchmark.data.demo.base import DEMO_WRITERS, DemoOptions, marker_text
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.prepared import DataError

MIN_IMAGES, MAX_IMAGES = 8, 5000
MIN_SIZE = 32

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def require_scorable_size(names: list[str], images: int) -> None:
    """DataError when ``images`` is below the ``minimum_images`` of a dataset in ``names``: its
    test (or, for detection, validation or training) split would lack a class and every cell on
    it would fail."""
    short = [(name, minimum) for name in names
             if (minimum := DEMO_WRITERS.get(name).minimum_images) and images < minimum]
    if short:
        sizes = ", ".join(f"{name} needs {minimum}" for name, minimum in short)
        raise DataError(f"--images {images} is too few to score every split ({sizes}); "
                        f"choose --images {max(minimum for _, minimum in short)} or more")


def generate(out: Path, datasets: list[str] | None = None, images: int = 300, size: int = 256, seed: int = 0,
             overwrite: bool = False, scorable: bool = False, refresh: bool = False) -> dict[str, dict[str, int]]:
    """Write the demo datasets under ``out/<name>/``; returns the counts each writer reports.

    With ``scorable`` (the ``demo-data`` verb), sizes too small to score every split are
    refused; without it any size is written (tests of the layout use a few images).

    An existing dataset folder is an error unless ``overwrite``, and even then only a folder that
    holds the demo marker is replaced: a real download is never deleted. With ``refresh``, demo data
    written with these same options and generator version are kept (reported as ``{}``) and other
    demo data are replaced.
    """
    if not MIN_IMAGES <= images <= MAX_IMAGES:
        raise DataError(f"--images {images}: choose {MIN_IMAGES} to {MAX_IMAGES} (the demo samples real label rows, "
                        "e.g. 40% of RSNA's 6,012 positive patients; fewer than 8 images leave splits empty)")
    if size < MIN_SIZE:
        raise DataError(f"--size {size}: choose at least {MIN_SIZE} pixels")
    names = datasets or DEMO_WRITERS.names()
    if scorable:
        require_scorable_size(names, images)
    writers = [DEMO_WRITERS.get(name) for name in names]
    summary: dict[str, dict[str, int]] = {}
    for writer in writers:
        folder = out / writer.name
        options = DemoOptions(out=folder, images=images, size=size, seed=seed)
        if folder.exists() and any(folder.iterdir()):
            marker = folder / DEMO_MARKER
            if refresh and marker.is_file() and marker.read_text() == marker_text(options, writer.name):
                summary[writer.name] = {}
                continue
            if not (overwrite or refresh):
                raise DataError(f"{folder} exists and is not empty; pass --overwrite to replace demo data there")
            if not marker.is_file():
                raise DataError(f"{folder} has no {DEMO_MARKER} marker, so it may be real data; remove it by hand")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        summary[writer.name] = writer.write(options)
    return summary
