"""COVIDx demo: ``train_COVIDx9A.txt`` / ``test_COVIDx9A.txt`` + ``train/`` and ``test/`` images.

Label lines as in V9A: ``<patient id> <filename> <class> <data source>``, space-separated, no
header, class in {normal, pneumonia, COVID-19}. Patient ids and file names follow the pattern of
each data source (RSNA UUIDs, BIMCV ``sub-S…`` sessions, RICORD ``MIDRC-RICORD-…``, Cohen's
``covid-19-pneumonia-…``), PNG and JPG mixed, some patients with several images. The test list
is balanced 1:1:2 like the real one (100/100/200); train is 30/30/40.

Signal: pneumonia = a focal fluffy opacity; COVID-19 = bilateral peripheral, lower-zone ground glass.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, split_counts, write_image, write_marker
from benchmark.data.demo.synthesis import apply_findings, new_chest

NAME = "covidx"
CLASS_FINDING = {"normal": {}, "pneumonia": {"pneumonia": 1.3}, "COVID-19": {"covid_ground_glass": 1.0}}
TRAIN_SHARES = {"normal": 0.3, "pneumonia": 0.3, "COVID-19": 0.4}
TEST_SHARES = {"normal": 0.25, "pneumonia": 0.25, "COVID-19": 0.5}
TEST_SHARE = 0.15


@dataclass(frozen=True)
class Source:
    classes: tuple[str, ...]
    patient: Callable[[np.random.Generator], str]
    filename: Callable[[str, int, np.random.Generator], str]  # (patient, image index, rng) → file name
    max_images: int  # images per patient, at most


def _uuid(rng: np.random.Generator) -> str:
    return str(uuid.UUID(bytes=rng.bytes(16)))


SOURCES = {
    "rsna": Source(("normal", "pneumonia"), _uuid, lambda patient, _, __: f"{patient}.png", 1),
    "bimcv": Source(
        ("COVID-19",), lambda rng: f"sub-S{rng.integers(10000):05d}",
        lambda patient, index, rng: f"{patient}_ses-E{rng.integers(100000):05d}_run-{index + 1}_bp-chest_vp-ap_cr.png", 3,
    ),
    "ricord": Source(
        ("COVID-19",), lambda rng: f"MIDRC-RICORD-1C-{rng.integers(100000, 999999)}-{rng.integers(1000000):06d}",
        lambda patient, index, rng: f"{patient}-{rng.integers(10000, 99999)}-{index}.png", 2,
    ),
    "cohen": Source(
        ("COVID-19", "pneumonia"), lambda rng: str(rng.integers(1, 1000)),
        lambda patient, index, rng: f"covid-19-pneumonia-{patient}-day{index * 3}.jpg", 2,
    ),
    "actmed": Source(("COVID-19",), lambda rng: f"COVID-{rng.integers(100000):05d}", lambda patient, _, __: f"{patient}.jpg", 1),
}


def _draw_lines(rng: np.random.Generator, counts: dict[str, int], taken: set[str]) -> list[tuple[str, str, str, str]]:
    """(patient, filename, class, source) lines with ``counts`` images per class, new patient ids."""
    lines = []
    for label, count in counts.items():
        sources = [name for name, source in SOURCES.items() if label in source.classes]
        while count > 0:
            source_name = sources[int(rng.integers(len(sources)))]
            source = SOURCES[source_name]
            patient = source.patient(rng)
            if patient in taken:
                continue
            taken.add(patient)
            for index in range(min(count, int(rng.integers(1, source.max_images + 1)))):
                lines.append((patient, source.filename(patient, index, rng), label, source_name))
                count -= 1
    return lines


@demo_writer(NAME, "train_COVIDx9A.txt, test_COVIDx9A.txt (patient filename class source), train/, test/", minimum_images=8)
def write_covidx(options: DemoOptions) -> dict[str, int]:
    rng = dataset_rng(options.seed, NAME)
    n_train, n_test = split_counts(options.images, [1 - TEST_SHARE, TEST_SHARE], minimum=4)
    taken: set[str] = set()
    counts = {}
    for split, total, shares in (("train", n_train, TRAIN_SHARES), ("test", n_test, TEST_SHARES)):
        per_class = dict(zip(shares, split_counts(total, list(shares.values()))))
        lines = _draw_lines(rng, per_class, taken)
        order = rng.permutation(len(lines))
        lines = [lines[i] for i in order]
        (options.out / f"{split}_COVIDx9A.txt").write_text("".join(" ".join(line) + "\n" for line in lines))
        for patient, filename, label, _ in tqdm(lines, desc=f"demo covidx {split}", unit="img"):
            image_random = image_rng(options.seed, NAME, filename)
            height = options.size
            width = options.size if filename.endswith(".png") else round(options.size * image_random.uniform(0.85, 1.15))
            chest = new_chest(image_random, height, width, anatomy=image_rng(options.seed, NAME, f"patient {patient}"))
            apply_findings(chest, CLASS_FINDING[label])
            write_image(options.out / split / filename, chest.render())
        counts[split] = len(lines)
    write_marker(options, NAME)
    return counts
