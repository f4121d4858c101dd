"""MIMIC-CXR-JPG demo, laid out as ``mimic-cxr-jpg/2.0.0`` with the reports in the ``files/`` tree.

- ``mimic-cxr-2.0.0-metadata.csv``, ``-split.csv`` (train / validate / test by subject, 80/10/10),
  ``-chexpert.csv`` (the 14 labels, columns in the official alphabetical order);
- ``files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg``: one frontal (PA or AP) image per study, often
  with a lateral (LATERAL or LL);
- ``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``: a report with FINDINGS and IMPRESSION (a few studies have
  an impression only, as in the real release).

Each study's labels are a real CheXpert row (real co-occurrence); its images draw those findings
and its report is made of real OpenI sentences that state them (and negate some absent ones), so
image-text pretraining on the demo data has a signal to learn.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from benchmark.data.demo import sources
from benchmark.data.demo.base import DemoOptions, dataset_rng, demo_writer, image_rng, write_csv, write_image, write_marker
from benchmark.data.demo.synthesis import CHEXPERT_FINDINGS, apply_findings, chexpert_strengths, new_chest, new_lateral

NAME = "mimic"
LABELS = sorted(["No Finding", *CHEXPERT_FINDINGS])  # the official chexpert.csv column order
METADATA_COLUMNS = [
    "dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns",
    "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning", "ViewCodeSequence_CodeMeaning",
    "PatientOrientationCodeSequence_CodeMeaning",
]
SPLIT_SHARES = {"train": 0.8, "validate": 0.1, "test": 0.1}
LATERAL_SHARE = 0.6
IMPRESSION_ONLY_SHARE = 0.05
VIEWS = {  # ViewPosition → (ViewCodeSequence_CodeMeaning, procedure)
    "PA": ("postero-anterior", "CHEST (PA AND LAT)"),
    "AP": ("antero-posterior", "CHEST (PORTABLE AP)"),
    "LATERAL": ("lateral", "CHEST (PA AND LAT)"),
    "LL": ("left lateral", "CHEST (PA AND LAT)"),
}

MENTIONS = {
    "Atelectasis": r"atelecta",
    "Cardiomegaly": r"cardiomegaly|heart (size )?is (mildly |moderately |markedly |severely )?enlarged|enlarged (heart|cardiac)",
    "Consolidation": r"consolidat",
    "Edema": r"edema",
    "Enlarged Cardiomediastinum": r"widen\w* (of the )?mediastin|mediastin\w* (contour |silhouette )?(is )?(widened|enlarged|prominent)",
    "Fracture": r"fracture",
    "Lung Lesion": r"nodul|\bmass\b|lesion",
    "Lung Opacity": r"opacit",
    "Pleural Effusion": r"effusion",
    "Pleural Other": r"pleural thickening",
    "Pneumonia": r"pneumonia",
    "Pneumothorax": r"pneumothora",
    "Support Devices": r"\btubes?\b|catheter|pacemaker|\bpicc\b|sternotomy|\bstent|\bport\b",
}
UNCERTAIN = re.compile(r"possibl|\bmay\b|\bcould\b|cannot be (excluded|ruled out)|question|suspicious|\bversus\b|concern")
NEGATED = re.compile(r"\bno\b|\bnot\b|\bwithout\b|negative|resolved|free of|\bclear\b")
NORMAL_IMPRESSION = re.compile(r"^no (acute|active) (cardiopulmonary|disease|abnormality|process|findings)")


@dataclass
class SentenceBank:
    """OpenI sentences by what they state: positive / uncertain mentions per label, negations."""

    positive: dict[str, list[tuple[str, frozenset[str]]]] = field(default_factory=dict)
    uncertain: dict[str, list[tuple[str, frozenset[str]]]] = field(default_factory=dict)
    negated: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    normal_impressions: list[str] = field(default_factory=list)


def sentence_bank() -> SentenceBank:
    bank = SentenceBank({label: [] for label in MENTIONS}, {label: [] for label in MENTIONS})
    patterns = {label: re.compile(pattern) for label, pattern in MENTIONS.items()}
    for sentence in sources.openi_sentences():
        lower = sentence.lower()
        mentioned = frozenset(label for label, pattern in patterns.items() if pattern.search(lower))
        if NORMAL_IMPRESSION.search(lower):
            bank.normal_impressions.append(sentence)
        elif not mentioned:
            continue
        elif UNCERTAIN.search(lower):
            for label in mentioned:
                bank.uncertain[label].append((sentence, mentioned))
        elif NEGATED.search(lower):
            bank.negated.append((sentence, mentioned))
        else:
            for label in mentioned:
                bank.positive[label].append((sentence, mentioned))
    return bank


def _pick(rng: np.random.Generator, options: list[str]) -> str | None:
    return options[int(rng.integers(len(options)))] if options else None


def write_report(bank: SentenceBank, cells: dict[str, str], examination: str, rng: np.random.Generator,
                 impression_only: bool) -> str:
    """A report in the MIMIC-CXR layout whose sentences state the study's labels."""
    present = [label for label in MENTIONS if cells[label] == "1.0"]
    unsure = [label for label in MENTIONS if cells[label] == "-1.0"]
    allowed = set(present) | set(unsure)
    stated = []
    for label in present:
        stated.append(_pick(rng, [s for s, m in bank.positive[label] if m <= allowed]) or f"There is {label.lower()}.")
    for label in unsure:
        stated.append(_pick(rng, [s for s, m in bank.uncertain[label] if m <= allowed]) or f"Possible {label.lower()}.")
    negations = [s for s, m in bank.negated if not m & allowed]
    filler = [negations[int(i)] for i in rng.choice(len(negations), size=int(rng.integers(1, 4)), replace=False)]
    findings = stated + filler
    if present:
        impression = stated[: 1 + int(rng.integers(len(stated)))]
    else:
        impression = stated[:1] if unsure else [_pick(rng, bank.normal_impressions) or "No acute cardiopulmonary process."]
    lines = ["                                 FINAL REPORT", f" EXAMINATION:  {examination}", " ",
             " INDICATION:  ___-year-old with shortness of breath.", " ", " COMPARISON:  None.", " "]
    sections = ([] if impression_only else [("FINDINGS", findings)]) + [("IMPRESSION", impression)]
    for title, sentences in sections:
        lines += [f" {title}: ", " "] + [" " + line for line in textwrap.wrap("  ".join(sentences), 78)] + [" "]
    return "\n".join(lines) + "\n"


def _ids(rng: np.random.Generator, low: int, high: int, count: int) -> list[int]:
    return [int(value) for value in rng.choice(np.arange(low, high), size=count, replace=False)]


def _dicom_id(rng: np.random.Generator) -> str:
    return "-".join(rng.bytes(4).hex() for _ in range(5))


@dataclass
class Study:
    subject_id: int
    study_id: int
    split: str
    cells: dict[str, str]
    views: list[str]


def plan_studies(options: DemoOptions, rng: np.random.Generator) -> list[Study]:
    """Subjects with one to three studies each, one frontal plus often a lateral per study, until
    ``options.images`` images; labels from real frontal CheXpert rows."""
    table = sources.chexpert_rows()
    frontal = table[table["Frontal/Lateral"] == "Frontal"]
    label_rows = frontal.iloc[rng.choice(len(frontal), size=options.images, replace=False)]
    subjects = _ids(rng, 10_000_000, 20_000_000, options.images)
    study_ids = _ids(rng, 50_000_000, 60_000_000, options.images)
    studies: list[Study] = []
    images = 0
    for subject in subjects:
        split = str(rng.choice(list(SPLIT_SHARES), p=list(SPLIT_SHARES.values())))
        for _ in range(int(rng.integers(1, 4))):
            row = label_rows.iloc[len(studies)]
            views = [str(row["AP/PA"]) if row["AP/PA"] in VIEWS else "AP"]
            if rng.random() < LATERAL_SHARE:
                views.append("LATERAL" if rng.random() < 0.8 else "LL")
            views = views[: options.images - images]
            cells = {label: row[label] for label in LABELS}
            studies.append(Study(subject, study_ids[len(studies)], split, cells, views))
            images += len(views)
            if images == options.images:
                return studies
    return studies


@demo_writer(NAME, "mimic-cxr-2.0.0-{metadata,split,chexpert}.csv, files/pXX/pXXXXXXXX/sXXXXXXXX/<dicom_id>.jpg and sXXXXXXXX.txt", minimum_images=None)
def write_mimic(options: DemoOptions) -> dict[str, int]:
    rng = dataset_rng(options.seed, NAME)
    bank = sentence_bank()
    studies = plan_studies(options, rng)
    metadata, splits, labels = [], [], []
    for study in tqdm(studies, desc="demo mimic", unit="study"):
        folder = options.out / "files" / f"p{str(study.subject_id)[:2]}" / f"p{study.subject_id}"
        folder.mkdir(parents=True, exist_ok=True)
        procedure = VIEWS[study.views[0]][1]
        report = write_report(bank, study.cells, procedure, image_rng(options.seed, NAME, f"report {study.study_id}"),
                              rng.random() < IMPRESSION_ONLY_SHARE)
        (folder / f"s{study.study_id}.txt").write_text(report)
        labels.append([study.subject_id, study.study_id, *(study.cells[label] for label in LABELS)])
        date = f"21{rng.integers(10, 99)}{rng.integers(1, 13):02d}{rng.integers(1, 29):02d}"
        time_ = f"{rng.integers(24):02d}{rng.integers(60):02d}{rng.integers(60):02d}.{rng.integers(1000):03d}"
        build = f"subject {study.subject_id}"
        width = round(options.size * image_rng(options.seed, NAME, build).uniform(0.8, 0.95))
        for view in study.views:
            dicom_id = _dicom_id(rng)
            make = new_lateral if view in ("LATERAL", "LL") else new_chest
            chest = make(image_rng(options.seed, NAME, dicom_id), options.size, width, anatomy=image_rng(options.seed, NAME, build))
            apply_findings(chest, chexpert_strengths(study.cells))
            write_image(folder / f"s{study.study_id}" / f"{dicom_id}.jpg", chest.render())
            meaning = VIEWS[view][0]
            metadata.append([dicom_id, study.subject_id, study.study_id, procedure, view, options.size, width,
                             date, time_, procedure, meaning, "Erect" if view != "AP" else "Recumbent"])
            splits.append([dicom_id, study.study_id, study.subject_id, study.split])
    write_csv(options.out / "mimic-cxr-2.0.0-metadata.csv", METADATA_COLUMNS, metadata)
    write_csv(options.out / "mimic-cxr-2.0.0-split.csv", ["dicom_id", "study_id", "subject_id", "split"], splits)
    write_csv(options.out / "mimic-cxr-2.0.0-chexpert.csv", ["subject_id", "study_id", *LABELS], labels)
    write_marker(options, NAME)
    return {"images": len(metadata), "studies": len(studies), "subjects": len({s.subject_id for s in studies})} | {
        split: sum(row[3] == split for row in splits) for split in SPLIT_SHARES
    }
