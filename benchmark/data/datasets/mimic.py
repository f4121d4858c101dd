"""MIMIC-CXR-JPG 2.0.0 (image-report pairs for pretraining).

Raw folder: the ``mimic-cxr-jpg/2.0.0`` folder with ``mimic-cxr-2.0.0-metadata.csv``,
``mimic-cxr-2.0.0-split.csv``, the images ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg`` and the
MIMIC-CXR report files ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt`` copied into the same tree (as the
reference expects, MGCA issue #41). ``mimic-cxr-2.0.0-chexpert.csv`` is not read (the reference
uses it only for an unused dataset class).

Images: frontal views only (``ViewPosition`` PA or AP, ``mgca/preprocess/mimic_cxr.py`` L19).

Text: ``impression + " " + findings`` (the reference's order), whitespace collapsed. Sections are
found by :func:`report_sections`, a compact stand-in for the MIT-LCP section splitter the
reference adapts: a header is an upper-case name followed by a colon at the start of a line
(``FINDINGS:``, ``IMPRESSION:``, ``COMPARISON:``, ...); a section runs to the next header or the
end of the report. ``FINDINGS``/``FINDING`` count as findings, ``IMPRESSION``/``IMPRESSIONS``/
``FINDINGS AND IMPRESSION`` as impression; a repeated section is joined. Unlike the reference there
are no hand-fixed studies and no "last paragraph" fallback. Studies with neither section (or both
empty) are dropped, as the reference drops them, and counted in the manifest
(``extra.studies_without_text``). A missing report file is an error, or with
``on_error="exclude"`` an exclusion of the study's images.

Split (partition ``pretraining``): the official ``mimic-cxr-2.0.0-split.csv``, ``train`` →
train, ``validate`` → val, ``test`` → test. The reference merges validate and test into one
validation set (``mimic_cxr.py`` L29-31); here the official three stay apart (pretraining code
may validate on ``val`` alone). No label fractions (pretraining has none, B15).

Image ID: ``dicom_id``. records.csv has ``id, subject, study, path, view, text`` plus ``split``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from benchmark.data.imaging import read_gray
from benchmark.data.prepared import DataError, Manifest
from benchmark.data.preparation import (
    LINE,
    Partition,
    Problems,
    cache_images,
    describe_sources,
    finish,
    listing_fingerprint,
    prepare_output,
    read_label_csv,
    verify_partitions,
)
from benchmark.data.registry import DATASETS, DatasetInfo, PrepareOptions

NAME = "mimic"
PARTITION = "pretraining"
METADATA_FILE = "mimic-cxr-2.0.0-metadata.csv"
SPLIT_FILE = "mimic-cxr-2.0.0-split.csv"
METADATA_COLUMNS = ("dicom_id", "subject_id", "study_id", "ViewPosition")
SPLIT_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")
FRONTAL_VIEWS = ("PA", "AP")
OFFICIAL_SPLITS = {"train": "train", "validate": "val", "test": "test"}
SECTION_OF_HEADER = {
    "FINDINGS": "findings", "FINDING": "findings",
    "IMPRESSION": "impression", "IMPRESSIONS": "impression", "FINDINGS AND IMPRESSION": "impression",
}
HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/,()-]*[A-Z)])[ \t]*:", re.MULTILINE)
NOTES = (
    "Official split kept as train / val (validate) / test; the reference merges validate and test into its "
    "validation set.",
    "Report text = impression + ' ' + findings from a compact header-based section splitter (FINDINGS:, "
    "IMPRESSION:, FINDINGS AND IMPRESSION:), not the reference's adapted MIT-LCP splitter with hand-fixed "
    "studies; studies with neither section are dropped and counted (extra.studies_without_text).",
)


def report_sections(report: str) -> dict[str, str]:
    """``{"findings": ..., "impression": ...}`` (only those present and non-empty), whitespace
    collapsed; see the module docstring for what counts as a header."""
    headers = list(HEADER.finditer(report))
    found: dict[str, list[str]] = {}
    for header, following in zip(headers, [*headers[1:], None]):
        section = SECTION_OF_HEADER.get(re.sub(r"\s+", " ", header.group(1)))
        if section is None:
            continue
        body = " ".join(report[header.end(): following.start() if following else len(report)].split())
        if body:
            found.setdefault(section, []).append(body)
    return {section: " ".join(parts) for section, parts in found.items()}


def report_text(report: str) -> str:
    """The reference's pretraining text, ``impression + " " + findings`` ("" when neither)."""
    sections = report_sections(report)
    return " ".join(part for part in (sections.get("impression"), sections.get("findings")) if part)


def study_folder(subject: str, study: str) -> str:
    """``files/p10/p10000032/s50414267`` for subject 10000032, study 50414267."""
    return f"files/p{subject[:2]}/p{subject}/s{study}"


def frontal_images(metadata: pd.DataFrame, splits: pd.DataFrame, split_csv: Path) -> pd.DataFrame:
    """Frontal metadata rows with their official split mapped to train/val/test."""
    frontal = metadata[metadata["ViewPosition"].isin(FRONTAL_VIEWS)]
    unknown = splits[~splits["split"].isin(OFFICIAL_SPLITS)]
    if len(unknown):
        row = unknown.iloc[0]
        raise DataError(f"{split_csv} line {row[LINE]}: split {row['split']!r} is not one of {list(OFFICIAL_SPLITS)}")
    split_of = dict(zip(splits["dicom_id"], splits["split"].map(OFFICIAL_SPLITS)))
    missing = frontal[~frontal["dicom_id"].isin(split_of)]
    if len(missing):
        raise DataError(f"{split_csv}: no split for dicom_id {missing['dicom_id'].iloc[0]!r} "
                        f"({len(missing)} frontal images in all); use the official split file")
    return frontal.assign(split=frontal["dicom_id"].map(split_of))


def read_texts(raw: Path, images: pd.DataFrame, problems: Problems, metadata_csv: Path) -> dict[str, str]:
    """study_id → report text for every study of ``images``; a missing report is reported for each
    of the study's images (named by their metadata line)."""
    texts: dict[str, str] = {}
    studies = images.drop_duplicates("study_id")
    rows_of = images.groupby("study_id", sort=False).indices  # study -> positions, found once (not per missing report)
    for subject, study in tqdm(zip(studies["subject_id"], studies["study_id"]), total=len(studies), desc="mimic reports", unit="report"):
        path = raw / f"{study_folder(subject, study)}.txt"
        if not path.is_file():
            affected = images.iloc[rows_of[study]]
            for dicom, line in zip(affected["dicom_id"], affected[LINE]):
                problems.report(metadata_csv, line, dicom, f"report {path} missing (copy the MIMIC-CXR reports into files/)")
            continue
        texts[study] = report_text(path.read_text(errors="replace"))
    return texts


def make_partition(images: pd.DataFrame) -> Partition:
    """The official split of ``images`` (in metadata order)."""
    splits = {split: images.loc[images["split"] == split, "dicom_id"].tolist() for split in OFFICIAL_SPLITS.values()}
    return Partition(PARTITION, splits)


def prepare(options: PrepareOptions) -> Manifest:
    """MIMIC-CXR-JPG raw folder → prepared ``pretraining`` dataset (see the module docstring)."""
    metadata_csv, split_csv = options.raw / METADATA_FILE, options.raw / SPLIT_FILE
    metadata = read_label_csv(metadata_csv, METADATA_COLUMNS)
    images = frontal_images(metadata, read_label_csv(split_csv, SPLIT_COLUMNS), split_csv)
    problems = Problems(options.on_error)
    texts = read_texts(options.raw, images, problems, metadata_csv)
    text = images["study_id"].map(texts)
    without_text = images[text == ""]
    images = images[text.notna() & (text != "")]
    (partition,), verification = verify_partitions(NAME, [make_partition(images)], options)
    out = prepare_output(options)

    paths = [f"{study_folder(subject, study)}/{dicom}.jpg"
             for subject, study, dicom in zip(images["subject_id"], images["study_id"], images["dicom_id"])]
    listed_at = {dicom: (metadata_csv, line) for dicom, line in zip(images["dicom_id"], images[LINE])}
    cache, dropped = cache_images(options, [(dicom, str(options.raw / path)) for dicom, path in zip(images["dicom_id"], paths)],
                                  read_gray, "letterbox", listed_at)
    records = pd.DataFrame({
        "id": images["dicom_id"], "subject": images["subject_id"], "study": images["study_id"], "path": paths,
        "view": images["ViewPosition"], "text": images["study_id"].map(texts),
    })
    return finish(
        options, dataset=NAME, partitions=[partition], records=records,
        sources=describe_sources(options.raw, [metadata_csv, split_csv]), cache=cache, image_mode="letterbox",
        verification=verification, excluded=problems.excluded, excluded_ids=dropped | problems.excluded_ids, notes=NOTES,
        extra={"studies_without_text": int(without_text["study_id"].nunique()),
               "frontal_images_without_text": len(without_text),
               "frontal_views": list(FRONTAL_VIEWS), "split_names": OFFICIAL_SPLITS,
               "images": listing_fingerprint(options.raw, paths)},
    )


DATASETS.add(NAME, DatasetInfo(
    name=NAME,
    title="MIMIC-CXR-JPG 2.0.0 with MIMIC-CXR reports (pretraining pairs)",
    partitions=(PARTITION,),
    raw_layout=f"the mimic-cxr-jpg/2.0.0 folder: {METADATA_FILE}, {SPLIT_FILE}, files/pXX/pXXXXXXXX/sXXXXXXXX/*.jpg and sXXXXXXXX.txt reports",
    prepare=prepare,
))
