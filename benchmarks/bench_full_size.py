"""The six datasets at their real sizes: preparation time, peak memory and disk, at two sizes.

    .venv/bin/python benchmarks/bench_full_size.py --out /scratch/fullsize            # full size + 1/10
    .venv/bin/python benchmarks/bench_full_size.py --out DIR --datasets rsna siim --scale 0.5
    .venv/bin/python benchmarks/bench_full_size.py --smoke                             # tiny, seconds

Each dataset is written in its official download layout at ``--scale`` × its real size (and at
``--small`` × that, to check that time grows linearly with the count), then prepared by the real
preparer, each step in its own process so that its peak RSS is its own:

- RSNA: the real ``stage_2_train_labels.csv`` (26,684 patients, stage 2), boxes scaled from 1024
  px to ``--size``; one DICOM per patient (encodings as in the demo: MONOCHROME1/2, 8/12 bit, rescaled).
- SIIM: the real ``train-rle.csv`` (12,047 images), every instance decoded at 1024 px, downscaled
  and re-encoded at ``--size`` (an instance of zero-length runs stays ``-1``); DICOMs in
  ``dicom-images-train/<study>/<series>/``.
- CheXpert: the real ``train.csv`` (223,414 rows; at full size the file itself, byte for byte), an
  image for every row; ``valid.csv`` from 200 other patients' rows renamed ``patient64541``… as
  the demo does (the official valid.csv is not in the wheel).
- COVIDx V9A, Object-CXR, MIMIC-CXR: generated label files at the real counts (COVIDx 30,130 +
  400 with V9A's class counts; Object-CXR 8,000 + 1,000; MIMIC-CXR 377,110 images of 227,835
  studies of 65,379 subjects, 243,334 of them frontal, the official split's shares, reports made
  of OpenI sentences that state the study's CheXpert labels, as the demo's).

Images are synthetic chests (:mod:`benchmark.data.demo.synthesis`) of ``--size`` pixels; to keep
generation cheap, a bank of 64 rendered images per dataset and view is reused (8 with ``--smoke``) (the image does not
show the row's finding: this measures data handling, not learning). At full size the raw folders
hold no demo marker, so RSNA, SIIM and CheXpert are verified against ``benchmark/splits/`` and the
prepared split files are compared byte for byte with the shipped ones; at the small size (and in
``--smoke``) the marker is written, which skips that check and gives CheXpert the demo's split
sizes, its 5×200 hold-out included (its candidate rows added as the demo writer adds them).

For MIMIC-CXR the pretraining data path is timed too: indexing the pairs
(:func:`pretrain.data.read_pairs`), training the WordPiece tokenizer on the training captions,
encoding them, and one epoch of the training loader (:class:`pretrain.data.PairDataset`,
``DataLoader``, no model). At full size ``python -m benchmark run --backbone mgca_vit --board
mgca-cxr-v1 --data <prepared> --dry-run`` is run on the prepared folders and its output saved.

The table gives, per dataset, the images at the two sizes, generation and preparation wall time
at both, the preparation's CPU time (its process and workers: unlike wall time, not inflated by
other work on a shared machine), ``ratio/count`` = (CPU time ratio) / (image count ratio), 1.0 for
linear growth (below 1: fixed costs such as start-up weigh more at the small size), and the preparing process's
peak RSS at both sizes: ``RSS`` (ru_maxrss: everything resident, mapped cache pages included),
``anon`` (peak RssAnon: the heap, which would grow by the cache's size if images were held in
memory) and the largest decoding worker's.

Raw folders are deleted once prepared and prepared folders after the measurement (``--keep``
keeps both); ``results.json`` and ``dry_run.txt`` stay in ``--out``. On a disk mounted with
``discard`` every deleted file waits for a synchronous discard (minutes per 100k files): put
``--out`` on a loop-mounted file system there. Exits 1 if a shipped split is not reproduced byte
for byte, or a step failed. Numbers measured on the development machine: bench_full_size.results.md.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmark.data.demo import sources
from benchmark.data.demo.base import dataset_rng, image_rng, write_csv, write_image
from benchmark.data.demo.covidx import _draw_lines
from benchmark.data.demo.chexpert import holdout_additions, patient_of, validation_rows
from benchmark.data.demo.dicom import write_demo_dicom
from benchmark.data.demo.mimic import LABELS as MIMIC_LABELS, METADATA_COLUMNS, VIEWS, sentence_bank, write_report
from benchmark.data.demo.rsna import ENCODING_MIX
from benchmark.data.demo.siim import dicom_folders, downscale_mask, rle_encode
from benchmark.data.demo.synthesis import FOREIGN_OBJECTS, new_chest, new_lateral
from benchmark.data.datasets.siim import NEGATIVE, rle_to_mask
from benchmark.data.preparation import DEMO_MARKER, SHIPPED_SPLITS

DATASETS = ("rsna", "siim", "chexpert", "covidx", "object_cxr", "mimic")
BANK = 64  # rendered images per dataset and view, reused across files (--smoke: SMOKE_BANK)
SMOKE_BANK = 8
ORIGINAL_SIDE = 1024  # RSNA boxes and SIIM masks are given at 1024 px
COVIDX_COUNTS = {"train": {"normal": 8085, "pneumonia": 5555, "COVID-19": 16490},
                 "test": {"normal": 100, "pneumonia": 100, "COVID-19": 200}}
OBJECT_CXR_COUNTS = {"train": 8000, "dev": 1000}
MIMIC = {"images": 377_110, "studies": 227_835, "subjects": 65_379, "frontal": 243_334}
MIMIC_SPLIT_SHARES = {"train": 0.9784, "validate": 0.0079, "test": 0.0137}  # 368,960 / 2,991 / 5,159 images
CHEXPERT_VALID_PATIENTS = 200
SMOKE_SCALE = 0.005


# ---------------------------------------------------------------------------------------------
# Generation: each dataset's official layout at a fraction of its real size


def spread(count: int, fraction: float) -> np.ndarray:
    """Boolean mask picking ``round(fraction * count)`` of ``count`` items, evenly spread (all at 1)."""
    positions = np.arange(count)
    return np.floor((positions + 1) * fraction) > np.floor(positions * fraction)


class Bank:
    """A few rendered images per view, encoded once and written as bytes many times."""

    def __init__(self, dataset: str, size: int, suffix: str, bank: int, lateral: bool = False) -> None:
        folder = Path(tempfile.mkdtemp())
        self.images: list[bytes] = []
        for index in range(bank):
            rng = image_rng(0, dataset, f"bank {lateral} {index}")
            width = round(size * rng.uniform(0.8, 1.0))
            chest = (new_lateral if lateral else new_chest)(rng, size, width)
            write_image(folder / f"x{suffix}", chest.render())
            self.images.append((folder / f"x{suffix}").read_bytes())
        shutil.rmtree(folder)
        self.folders: set[Path] = set()

    def write(self, path: Path, key: str) -> None:
        if path.parent not in self.folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.folders.add(path.parent)
        path.write_bytes(self.images[zlib.crc32(key.encode()) % len(self.images)])


def dicom_bank(dataset: str, size: int, bank: int) -> list[bytes]:
    """DICOM files of rendered chests in the demo's encoding mix (identifying tags of the bank)."""
    folder = Path(tempfile.mkdtemp())
    encodings = [name for name, share in ENCODING_MIX.items() for _ in range(round(share * 10))]
    files = []
    for index in range(bank):
        path = folder / f"{index}.dcm"
        write_demo_dicom(path, new_chest(image_rng(0, dataset, f"bank {index}"), size).render(),
                         encodings[index % len(encodings)], {"PatientID": f"bank{index}", "ViewPosition": "PA"})
        files.append(path.read_bytes())
    shutil.rmtree(folder)
    return files


def write_dicoms(paths: dict[str, Path], bank: list[bytes]) -> None:
    made: set[Path] = set()
    for key, path in paths.items():
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(bank[zlib.crc32(key.encode()) % len(bank)])


def generate_rsna(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    labels = sources.rsna_labels()
    targets = labels.groupby("patientId", sort=False)["Target"].max()
    keep = np.zeros(len(targets), bool)
    for value in (0, 1):  # spread within each class, so a small size keeps the positive share
        members = np.flatnonzero(targets.to_numpy() == value)
        keep[members[spread(len(members), fraction)]] = True
    patients = targets.index[keep]
    rows = labels[labels["patientId"].isin(set(patients))]
    scale = size / ORIGINAL_SIDE
    csv_rows = []
    for patient, x, y, width, height, target in rows.itertuples(index=False):
        if target == 1:  # the demo's scaling (benchmark.data.demo.rsna)
            x, y, width, height = (round(value * scale, 1) for value in (x, y, width, height))
            csv_rows.append([patient, x, y, min(width, size - x), min(height, size - y), 1])
        else:
            csv_rows.append([patient, None, None, None, None, 0])
    write_csv(raw / "stage_2_train_labels.csv", ["patientId", "x", "y", "width", "height", "Target"], csv_rows)
    write_dicoms({p: raw / "stage_2_train_images" / f"{p}.dcm" for p in patients}, dicom_bank("rsna", size, bank))
    return {"images": len(patients), "label_rows": len(rows)}


def generate_siim(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    table = sources.siim_rle()
    positive = table.groupby("ImageId", sort=False)["EncodedPixels"].agg(lambda values: (values != NEGATIVE).any())
    keep = np.zeros(len(positive), bool)
    for value in (False, True):
        members = np.flatnonzero(positive.to_numpy() == value)
        keep[members[spread(len(members), fraction)]] = True
    image_ids = positive.index[keep]
    rows = table[table["ImageId"].isin(set(image_ids))]
    lines = [sources.siim_header()]
    for image_id, rle in rows.itertuples(index=False):
        mask = rle_to_mask(rle, ORIGINAL_SIDE, ORIGINAL_SIDE)
        lines.append(f"{image_id},{rle_encode(downscale_mask(mask, size)) if mask.any() else NEGATIVE}")
    (raw / "train-rle.csv").write_text("\n".join(lines) + "\n")
    paths = {}
    for image_id in image_ids:
        study, series = dicom_folders(image_id)
        paths[image_id] = raw / "dicom-images-train" / study / series / f"{image_id}.dcm"
    write_dicoms(paths, dicom_bank("siim", size, bank))
    return {"images": len(image_ids), "label_rows": len(rows)}


def generate_chexpert(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    table = sources.chexpert_rows()
    patient = table["Path"].map(patient_of)
    patients = patient.unique()
    kept = set(patients[spread(len(patients), fraction)])
    positions = np.flatnonzero(patient.isin(kept).to_numpy()).tolist()
    if fraction < 1:  # the demo marker asks for the demo's 5x200 hold-out: its candidates added as the demo writer adds them
        positions = sorted(positions + holdout_additions(table, positions, kept, dataset_rng(0, "chexpert full size hold-out")))
    train = table.iloc[positions]
    if fraction == 1:  # the official file itself
        with gzip.open(sources.source_folder() / "chexpert_train.csv.gz", "rb") as handle:
            (raw / "train.csv").write_bytes(handle.read())
    else:
        write_csv(raw / "train.csv", list(table.columns), train.to_numpy().tolist())
    rng = dataset_rng(0, "chexpert full size")
    chosen = rng.choice(sorted(kept), size=min(len(kept), max(40, round(CHEXPERT_VALID_PATIENTS * fraction))), replace=False)
    first_study = train[patient[train.index].isin(set(chosen))]
    first_study = first_study[first_study["Path"].str.split("/").str[3] == "study1"]
    valid = validation_rows(first_study)
    write_csv(raw / "valid.csv", list(table.columns), valid.to_numpy().tolist())
    banks = {view: Bank("chexpert", size, ".jpg", bank, lateral=view == "Lateral") for view in ("Frontal", "Lateral")}
    for rows in (train, valid):
        for path, view in zip(rows["Path"], rows["Frontal/Lateral"]):
            banks[view].write(raw / path.split("/", 1)[1], path)
    return {"images": len(train) + len(valid), "train": len(train), "valid": len(valid)}


def generate_covidx(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    rng = dataset_rng(0, "covidx full size")
    banks = {suffix: Bank("covidx", size, suffix, bank) for suffix in (".png", ".jpg")}
    taken: set[str] = set()
    counts = {}
    for split, per_class in COVIDX_COUNTS.items():
        lines = _draw_lines(rng, {label: max(2, round(count * fraction)) for label, count in per_class.items()}, taken)
        lines = [lines[i] for i in rng.permutation(len(lines))]
        (raw / f"{split}_COVIDx9A.txt").write_text("".join(" ".join(line) + "\n" for line in lines))
        for _, filename, _, _ in lines:
            banks[Path(filename).suffix].write(raw / split / filename, filename)
        counts[split] = len(lines)
    return {"images": sum(counts.values()), **counts}


def generate_object_cxr(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    rng = dataset_rng(0, "object_cxr full size")
    kinds = FOREIGN_OBJECTS.names()
    negatives = Bank("object_cxr", size, ".jpg", bank)
    positives: list[tuple[bytes, str]] = []  # (JPG, annotation) of chests with 1-3 objects drawn in
    folder = Path(tempfile.mkdtemp())
    for index in range(bank):
        image_random = image_rng(0, "object_cxr", f"bank positive {index}")
        chest = new_chest(image_random, size, round(size * image_random.uniform(0.8, 1.0)))
        objects = [FOREIGN_OBJECTS.get(kinds[int(image_random.integers(len(kinds)))])(chest)
                   for _ in range(int(image_random.integers(1, 4)))]
        write_image(folder / "x.jpg", chest.render())
        positives.append(((folder / "x.jpg").read_bytes(), ";".join(objects)))
    shutil.rmtree(folder)
    counts = {}
    n_train = max(20, round(OBJECT_CXR_COUNTS["train"] * fraction))
    for split, first in (("train", 1), ("dev", max(8001, n_train + 1))):
        total = n_train if split == "train" else max(10, round(OBJECT_CXR_COUNTS["dev"] * fraction))
        positive = rng.permutation(total) < round(total / 2)
        rows = []
        for index in range(total):
            name = f"{first + index:05d}.jpg"
            path = raw / split / name
            if positive[index]:
                data, annotation = positives[zlib.crc32(name.encode()) % bank]
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
            else:
                negatives.write(path, name)
                annotation = ""
            rows.append([name, annotation])
        write_csv(raw / f"{split}.csv", ["image_name", "annotation"], rows)
        counts[split] = total
    return {"images": sum(counts.values()), **counts}


def generate_mimic(raw: Path, fraction: float, size: int, bank: int) -> dict[str, int]:
    """Subjects → studies → images at MIMIC-CXR-JPG's counts; label and metadata files written row
    by row (nothing of the size of the dataset is held but the ID arrays)."""
    rng = dataset_rng(0, "mimic full size")
    n_subjects, n_studies, n_images, n_frontal = (max(1, round(MIMIC[key] * fraction)) for key in ("subjects", "studies", "images", "frontal"))
    subjects = 10_000_000 + rng.choice(10_000_000, n_subjects, replace=False)
    study_ids = 50_000_000 + rng.choice(10_000_000, n_studies, replace=False)
    subject_of = np.sort(np.concatenate([np.arange(n_subjects), rng.integers(n_subjects, size=n_studies - n_subjects)]))
    images_of = 1 + np.bincount(rng.integers(n_studies, size=n_images - n_studies), minlength=n_studies)
    split_of = rng.choice(list(MIMIC_SPLIT_SHARES), size=n_subjects, p=list(MIMIC_SPLIT_SHARES.values()))
    extra_frontal = (n_frontal - n_studies) / max(1, n_images - n_studies)
    # Report bank: real frontal CheXpert label rows and reports that state them (the demo's writer).
    table = sources.chexpert_rows()
    frontal = table[table["Frontal/Lateral"] == "Frontal"]
    sentences = sentence_bank()
    templates = []
    for index in range(min(16 * bank, n_studies)):
        row = frontal.iloc[int(rng.integers(len(frontal)))]
        cells = {label: row[label] for label in MIMIC_LABELS}
        templates.append((cells, write_report(sentences, cells, "@EXAMINATION@", image_rng(0, "mimic", f"report {index}"), index % 20 == 0)))
    banks = {"frontal": Bank("mimic", size, ".jpg", bank), "lateral": Bank("mimic", size, ".jpg", bank, lateral=True)}
    names = ["metadata", "split", "chexpert"]
    handles = {name: (raw / f"mimic-cxr-2.0.0-{name}.csv").open("w", newline="") for name in names}
    writers = {name: csv.writer(handle, lineterminator="\n") for name, handle in handles.items()}
    writers["metadata"].writerow(METADATA_COLUMNS)
    writers["split"].writerow(["dicom_id", "study_id", "subject_id", "split"])
    writers["chexpert"].writerow(["subject_id", "study_id", *MIMIC_LABELS])
    frontal_written = 0
    for study_index, (subject_index, count) in enumerate(zip(subject_of, images_of)):
        subject, study = int(subjects[subject_index]), int(study_ids[study_index])
        cells, report = templates[int(rng.integers(len(templates)))]
        views = ["AP" if rng.random() < 0.6 else "PA"]
        for _ in range(count - 1):
            views.append(("AP" if rng.random() < 0.6 else "PA") if rng.random() < extra_frontal
                         else ("LATERAL" if rng.random() < 0.7 else "LL"))
        frontal_written += sum(view in ("AP", "PA") for view in views)
        procedure = VIEWS[views[0]][1]
        folder = raw / "files" / f"p{str(subject)[:2]}" / f"p{subject}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"s{study}.txt").write_text(report.replace("@EXAMINATION@", procedure))
        writers["chexpert"].writerow([subject, study, *(cells[label] for label in MIMIC_LABELS)])
        for view, dicom in zip(views, _dicom_ids(rng, len(views))):
            lateral = view in ("LATERAL", "LL")
            banks["lateral" if lateral else "frontal"].write(folder / f"s{study}" / f"{dicom}.jpg", dicom)
            writers["metadata"].writerow([dicom, subject, study, procedure, view, size, size, "21500101", "120000.000",
                                          procedure, VIEWS[view][0], "Erect" if view != "AP" else "Recumbent"])
            writers["split"].writerow([dicom, study, subject, split_of[subject_index]])
    for handle in handles.values():
        handle.close()
    return {"images": n_images, "studies": n_studies, "subjects": n_subjects, "frontal": frontal_written}


def _dicom_ids(rng: np.random.Generator, count: int) -> list[str]:
    """MIMIC-style dicom_ids (five dash-separated 8-hex groups)."""
    text = rng.bytes(20 * count).hex()
    return ["-".join(text[i * 40 + 8 * k: i * 40 + 8 * (k + 1)] for k in range(5)) for i in range(count)]


GENERATORS: dict[str, Callable[[Path, float, int, int], dict[str, int]]] = {
    "rsna": generate_rsna, "siim": generate_siim, "chexpert": generate_chexpert,
    "covidx": generate_covidx, "object_cxr": generate_object_cxr, "mimic": generate_mimic,
}


# ---------------------------------------------------------------------------------------------
# Steps, each measured in its own process (wall time, peak RSS of the process and its workers)


class PeakMemory:
    """Peak resident memory of this process, sampled from /proc every 50 ms: ``anon`` (heap, what
    grows if something holds the data) and ``file`` (mapped file pages, the memory-mapped cache)."""

    def __init__(self) -> None:
        self.anon = self.file = 0
        self._cpu_start = self._cpu()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    @staticmethod
    def _cpu() -> float:
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.read()

    def read(self) -> None:
        try:
            fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
        except OSError:  # no /proc (not Linux): ru_maxrss alone is reported
            return
        kib = lambda key: int(fields.get(key, "0 kB").split()[0])  # noqa: E731
        self.anon, self.file = max(self.anon, kib("RssAnon")), max(self.file, kib("RssFile"))

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self.read()
        own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return {"cpu_s": self._cpu() - self._cpu_start, "rss_mb": own.ru_maxrss / 1024, "anon_mb": self.anon / 1024, "file_mb": self.file / 1024,
                "worker_rss_mb": children.ru_maxrss / 1024}


def step_generate(dataset: str, raw: Path, fraction: float, size: int, bank: int, marker: bool) -> dict[str, object]:
    if raw.exists():
        shutil.rmtree(raw)
    raw.mkdir(parents=True)
    counts = GENERATORS[dataset](raw, fraction, size, bank)
    (raw / "README.txt").write_text(f"{dataset} at {fraction} x its real size, written by benchmarks/bench_full_size.py: "
                                    "real or generated label files, synthetic images. Not for evaluation.\n")
    if marker:
        (raw / DEMO_MARKER).write_text("benchmarks/bench_full_size.py at a reduced size (skips the shipped-split check)\n")
    return counts


def step_prepare(dataset: str, raw: Path, out: Path, size: int, workers: int) -> dict[str, object]:
    from benchmark.data.registry import DATASETS as PREPARERS, PrepareOptions
    import benchmark.data.datasets  # noqa: F401 - registers the preparers

    if out.exists():
        shutil.rmtree(out)
    manifest = PREPARERS.get(dataset).prepare(PrepareOptions(raw=raw, out=out, image_size=size, workers=workers))
    return {"cached": manifest.counts["images"], "verification": manifest.extra.get("verification", "")}


def step_pretrain_data(prepared: Path, workers: int, batch_size: int = 72, vocab_size: int = 8000,
                       max_words: int = 112) -> dict[str, object]:
    """What a pretraining run does with the data before and around the model, timed by phase."""
    import torch
    from torch.utils.data import DataLoader

    from benchmark.data.prepared import PreparedDataset
    from benchmark.backbones.text.mgca import prepare_for_encoding
    from pretrain import text
    from pretrain.data import PairDataset, crop_geometry, read_pairs

    times: dict[str, float] = {}
    start = time.perf_counter()
    dataset = PreparedDataset(prepared)
    train, val = read_pairs(dataset, "train"), read_pairs(dataset, "val")
    times["index_s"] = time.perf_counter() - start
    start = time.perf_counter()
    tokenizer = prepare_for_encoding(text.train_tokenizer(train.captions, vocab_size), max_words)
    times["tokenizer_s"] = time.perf_counter() - start
    start = time.perf_counter()
    encoded = text.encode(tokenizer, train.captions, max_words)
    times["encode_s"] = time.perf_counter() - start
    crop, _ = crop_geometry(dataset.manifest.image_size, 16, None)
    loader = DataLoader(PairDataset(dataset, train, encoded, crop, train=True), batch_size=batch_size, shuffle=True,
                        drop_last=True, num_workers=workers, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    batches = pixels = 0
    for batch in loader:
        batches += 1
        pixels += int(batch["images"].sum())  # touch every image
    times["epoch_s"] = time.perf_counter() - start
    return {**times, "train_pairs": len(train.image_ids), "val_pairs": len(val.image_ids),
            "train_studies": len(set(train.studies)), "batches": batches, "vocab": tokenizer.get_vocab_size()}


STEPS: dict[str, Callable[..., dict[str, object]]] = {
    "generate": step_generate, "prepare": step_prepare, "pretrain_data": step_pretrain_data,
}


def run_step(name: str, in_process: bool, **arguments: object) -> dict[str, object]:
    """``STEPS[name](**arguments)`` with its wall time and peak memory; in a fresh process unless
    ``in_process`` (the smoke form), so that each step's peak RSS is its own."""
    if in_process:
        memory, start = PeakMemory(), time.perf_counter()
        result = STEPS[name](**arguments)
        return {**result, "wall_s": time.perf_counter() - start, **memory.stop()}
    encoded = json.dumps({name: {key: str(value) if isinstance(value, Path) else value for key, value in arguments.items()}})
    completed = subprocess.run([sys.executable, __file__, "--step", encoded], capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"step {name} {arguments} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def child_step(encoded: str) -> None:
    (name, arguments), = json.loads(encoded).items()
    paths = {"raw", "out", "prepared"}
    arguments = {key: Path(value) if key in paths else value for key, value in arguments.items()}
    print(json.dumps(run_step(name, in_process=True, **arguments)))


def disk_mb(path: Path) -> float:
    """Space the files under ``path`` take on disk (allocated blocks), in MB."""
    total = 0
    for folder, _, files in os.walk(path):
        for file in files:
            total += os.lstat(os.path.join(folder, file)).st_blocks * 512
    return total / 1e6


def shipped_splits_identical(dataset: str, prepared: Path) -> tuple[int, list[str]]:
    """(shipped files compared, those whose prepared copy differs in any byte)."""
    shipped = sorted((SHIPPED_SPLITS / dataset).glob("*/*.txt"))
    differ = [str(path.relative_to(SHIPPED_SPLITS)) for path in shipped
              if not (prepared / "splits" / path.parent.name / path.name).is_file()
              or (prepared / "splits" / path.parent.name / path.name).read_bytes() != path.read_bytes()]
    return len(shipped), differ


# ---------------------------------------------------------------------------------------------
# The measurement


def measure_dataset(entry: dict[str, object], dataset: str, raw: Path, prepared: Path, fraction: float, size: int,
                    workers: int, in_process: bool, keep: bool) -> None:
    """Generate, prepare (and for MIMIC-CXR, time the pretraining data path) one dataset at one size."""
    label = f"{fraction:g}"
    entry["generate"] = run_step("generate", in_process, dataset=dataset, raw=raw, fraction=fraction, size=size,
                                 bank=SMOKE_BANK if in_process else BANK, marker=fraction < 1)
    entry["raw_mb"] = disk_mb(raw)
    print(f"[{time.strftime('%H:%M:%S')}] {dataset} x{label}: preparing", flush=True)
    entry["prepare"] = run_step("prepare", in_process, dataset=dataset, raw=raw, out=prepared, size=size, workers=workers)
    entry["prepared_mb"] = disk_mb(prepared)
    if not keep:
        shutil.rmtree(raw)
    if fraction == 1 and (SHIPPED_SPLITS / dataset).is_dir():
        compared, differ = shipped_splits_identical(dataset, prepared)
        entry["shipped_splits"] = {"compared": compared, "differ": differ}
    if dataset == "mimic":
        print(f"[{time.strftime('%H:%M:%S')}] mimic x{label}: pretraining data path", flush=True)
        entry["pretrain_data"] = run_step("pretrain_data", in_process, prepared=prepared, workers=workers)


def measure(out: Path, datasets: list[str], scale: float, small: float | None, size: int, workers: int,
            in_process: bool, keep: bool, dry_run: bool) -> dict[str, object]:
    results: dict[str, object] = {"size": size, "workers": workers, "scale": scale, "datasets": {}}
    fractions = ([scale * small] if small else []) + [scale]
    for fraction in fractions:
        label = f"{fraction:g}"
        raw_root, prepared_root = out / f"raw_{label}", out / f"prepared_{label}"
        for dataset in datasets:
            raw, prepared = raw_root / dataset, prepared_root / dataset
            print(f"[{time.strftime('%H:%M:%S')}] {dataset} x{label}: generating", flush=True)
            entry: dict[str, object] = {}
            results["datasets"].setdefault(dataset, {})[label] = entry
            try:
                measure_dataset(entry, dataset, raw, prepared, fraction, size, workers, in_process, keep)
            except RuntimeError as error:  # a failed step is reported, the other datasets still run
                entry["error"] = str(error)
                print(error, flush=True)
            (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
        if dry_run and fraction == fractions[-1]:
            command = [sys.executable, "-m", "benchmark", "run", "--backbone", "mgca_vit", "--board", "mgca-cxr-v1",
                       "--data", str(prepared_root), "--dry-run"]
            completed = subprocess.run(command, capture_output=True, text=True)
            (out / "dry_run.txt").write_text(f"$ {' '.join(command[1:])}\n(exit {completed.returncode})\n"
                                             + completed.stdout + completed.stderr)
            results["dry_run"] = {"exit": completed.returncode, "file": str(out / "dry_run.txt")}
        if not keep:
            shutil.rmtree(raw_root, ignore_errors=True)
            shutil.rmtree(prepared_root, ignore_errors=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def table(results: dict[str, object]) -> str:
    """One line per dataset: images at each size, generation and preparation wall time, the
    preparation's time ratio over the count ratio (1.0 = linear), peak RSS and disk at the larger size."""
    head = ("dataset", "images", "gen s", "prep s", "prep CPU s", "ratio/count", "RSS MB main", "anon MB", "worker MB", "raw MB", "prepared MB")
    lines = [" | ".join(head), " | ".join("---" for _ in head)]
    for dataset, by_size in results["datasets"].items():
        entries = [by_size[key] for key in sorted(by_size, key=float) if "prepare" in by_size[key]]
        if not entries:
            lines.append(f"{dataset} | failed: see results.json")
            continue
        counts = [int(entry["generate"]["images"]) for entry in entries]
        walls = [float(entry["prepare"]["wall_s"]) for entry in entries]
        cpus = [float(entry["prepare"]["cpu_s"]) for entry in entries]
        ratio = f"{(cpus[-1] / cpus[0]) / (counts[-1] / counts[0]):.2f}" if len(entries) > 1 else "-"
        last = entries[-1]
        rss = " / ".join(f"{entry['prepare']['rss_mb']:.0f}" for entry in entries)
        anon = " / ".join(f"{entry['prepare']['anon_mb']:.0f}" for entry in entries)
        worker = " / ".join(f"{entry['prepare']['worker_rss_mb']:.0f}" for entry in entries)
        lines.append(" | ".join([
            dataset, " / ".join(f"{count:,}" for count in counts),
            " / ".join(f"{float(entry['generate']['wall_s']):.1f}" for entry in entries),
            " / ".join(f"{wall:.1f}" for wall in walls), " / ".join(f"{cpu:.1f}" for cpu in cpus), ratio, rss, anon, worker,
            f"{last['raw_mb']:.0f}", f"{last['prepared_mb']:.0f}",
        ]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the data (deleted after) and results.json")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the real size (default 1: full size)")
    parser.add_argument("--small", type=float, default=0.1, help="the second size, as a fraction of --scale (default 0.1)")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding / loading processes")
    parser.add_argument("--keep", action="store_true", help="keep the raw and prepared folders")
    parser.add_argument("--smoke", action="store_true", help=f"one size ({SMOKE_SCALE} x real), in one process: seconds")
    parser.add_argument("--step", help=argparse.SUPPRESS)  # internal: run one step in this process
    args = parser.parse_args(argv)
    if args.step:
        child_step(args.step)
        return 0
    if not 0 < args.scale <= 1 or not 0 < args.small < 1:
        parser.error("--scale must be in (0, 1] and --small in (0, 1)")
    # The smoke form's few thousand files go to a RAM disk where there is one: deleting them on a
    # disk mounted with ``discard`` takes longer than writing and preparing them.
    ram_disk = Path("/dev/shm")
    with tempfile.TemporaryDirectory(dir=ram_disk if args.smoke and ram_disk.is_dir() else None) as scratch:
        out = Path(scratch) if args.smoke or args.out is None else args.out
        out.mkdir(parents=True, exist_ok=True)
        smoke = args.smoke
        results = measure(out, args.datasets, SMOKE_SCALE if smoke else args.scale, None if smoke else args.small,
                          args.size, 1 if smoke else args.workers, in_process=smoke, keep=args.keep and not smoke,
                          dry_run=not smoke and args.scale == 1)
        print(table(results))
        for dataset, by_size in results["datasets"].items():
            for entry in by_size.values():
                if "pretrain_data" in entry:
                    data = entry["pretrain_data"]
                    print(f"{dataset} pretraining data ({data['train_pairs']:,} training pairs of {data['train_studies']:,} studies): "
                          f"index {data['index_s']:.1f} s, tokenizer {data['tokenizer_s']:.1f} s, encode {data['encode_s']:.1f} s, "
                          f"one epoch of loading {data['epoch_s']:.1f} s ({data['batches']} batches), CPU {data['cpu_s']:.0f} s, "
                          f"peak RSS {data['rss_mb']:.0f} MB (anon {data['anon_mb']:.0f}), workers {data['worker_rss_mb']:.0f} MB")
        failures = [f"{dataset}: shipped splits differ: {entry['shipped_splits']['differ']}"
                    for dataset, by_size in results["datasets"].items()
                    for entry in by_size.values() if entry.get("shipped_splits", {}).get("differ")]
        failures += [f"{dataset} x{size_label}: {entry['error'].splitlines()[0]}" for dataset, by_size in results["datasets"].items()
                     for size_label, entry in by_size.items() if "error" in entry]
        for dataset, by_size in results["datasets"].items():
            for entry in by_size.values():
                if "shipped_splits" in entry:
                    print(f"{dataset}: {entry['shipped_splits']['compared']} shipped split files compared byte for byte, "
                          f"{len(entry['shipped_splits']['differ'])} differ")
        if "dry_run" in results:
            print((out / "dry_run.txt").read_text())
        if failures:
            print("FAILED: " + "; ".join(failures))
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
