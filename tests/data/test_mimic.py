"""MIMIC-CXR-JPG: report sectioning, frontal filter, official splits, a tiny raw folder end to end."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from benchmark.data.datasets import mimic
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.registry import DATASETS, PrepareOptions

REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough.

 COMPARISON:  ___

 FINDINGS:

 There is no focal consolidation, pleural effusion or pneumothorax.  Bilateral
 nodular opacities that most likely represent nipple shadows.

 IMPRESSION:

 No acute cardiopulmonary process.

 NOTIFICATION:  The findings were discussed with Dr. ___.
"""
ONLY_IMPRESSION = " FINAL REPORT\n INDICATION: fever\n\n FINDINGS AND IMPRESSION:  Lungs are clear.\n"
NO_SECTIONS = " FINAL REPORT\n INDICATION: fever\n\n Portable chest. Lungs are clear.\n"

# subject, study, report, [(dicom_id, view, official split)]
STUDIES = (
    ("10000032", "50414267", REPORT, [("d1", "PA", "train"), ("d2", "LATERAL", "train")]),
    ("10000032", "53189527", ONLY_IMPRESSION, [("d3", "AP", "train"), ("d4", "AP", "train")]),
    ("10000764", "57375967", NO_SECTIONS, [("d5", "PA", "train")]),
    ("11000011", "51029426", REPORT, [("d6", "PA", "validate"), ("d7", "", "validate")]),
    ("12000012", "52000012", ONLY_IMPRESSION, [("d8", "AP", "test")]),
)


def make_raw(root: Path) -> Path:
    raw = root / "mimic-cxr-jpg" / "2.0.0"
    metadata, splits = [], []
    for number, (subject, study, report, images) in enumerate(STUDIES):
        folder = raw / mimic.study_folder(subject, study)
        folder.mkdir(parents=True)
        (folder.parent / f"s{study}.txt").write_text(report)
        for dicom, view, split in images:
            pixels = np.random.default_rng(number).integers(0, 255, (48, 40), dtype=np.uint8)
            assert cv2.imwrite(str(folder / f"{dicom}.jpg"), pixels)
            metadata.append({"dicom_id": dicom, "subject_id": subject, "study_id": study, "PerformedProcedureStepDescription": "CHEST",
                             "ViewPosition": view, "Rows": 48, "Columns": 40})
            splits.append({"dicom_id": dicom, "study_id": study, "subject_id": subject, "split": split})
    pd.DataFrame(metadata).to_csv(raw / mimic.METADATA_FILE, index=False)
    pd.DataFrame(splits).to_csv(raw / mimic.SPLIT_FILE, index=False)
    (raw / DEMO_MARKER).write_text("test data\n")
    return raw


def prepare(raw: Path, out: Path, **options) -> PreparedDataset:
    DATASETS.get("mimic").prepare(PrepareOptions(raw=raw, out=out, image_size=32, workers=1, **options))
    return PreparedDataset(out)


def test_sections_of_a_mimic_report():
    sections = mimic.report_sections(REPORT)
    assert sections == {
        "findings": "There is no focal consolidation, pleural effusion or pneumothorax. Bilateral nodular "
                    "opacities that most likely represent nipple shadows.",
        "impression": "No acute cardiopulmonary process.",
    }
    assert mimic.report_text(REPORT) == "No acute cardiopulmonary process. " + sections["findings"]


def test_combined_repeated_empty_and_missing_sections():
    assert mimic.report_sections(ONLY_IMPRESSION) == {"impression": "Lungs are clear."}
    assert mimic.report_sections("IMPRESSION: One.\nCOMPARISON: none\nIMPRESSION:  Two.\n") == {"impression": "One. Two."}
    assert mimic.report_sections("FINDINGS:\n\nIMPRESSION: Clear.") == {"impression": "Clear."}
    assert mimic.report_text(NO_SECTIONS) == ""
    # a colon inside a sentence is not a header
    assert mimic.report_sections("FINDINGS: Heart size: normal.") == {"findings": "Heart size: normal."}


def test_tiny_folder_end_to_end(tmp_path):
    data = prepare(make_raw(tmp_path), tmp_path / "out")
    assert data.manifest.partitions == ["pretraining"]
    assert data.split_ids("train") == ["d1", "d3", "d4"]  # d2 lateral, d5 without text
    assert data.split_ids("val") == ["d6"] and data.split_ids("test") == ["d8"]  # d7 has no view
    assert data.manifest.extra["studies_without_text"] == 1 and data.manifest.extra["frontal_images_without_text"] == 1
    records = data.records
    assert records.loc["d1", "text"] == mimic.report_text(REPORT)
    assert (records.loc["d3", "subject"], records.loc["d3", "study"], records.loc["d3", "split"]) == (10000032, 53189527, "train")
    assert records.loc["d6", "path"] == "files/p11/p11000011/s51029426/d6.jpg"
    assert data.image("d8").shape == (32, 32) and data.manifest.image_mode == "letterbox"


def test_missing_column_names_the_file(tmp_path):
    raw = make_raw(tmp_path)
    pd.read_csv(raw / mimic.METADATA_FILE).drop(columns="ViewPosition").to_csv(raw / mimic.METADATA_FILE, index=False)
    with pytest.raises(DataError, match=r"metadata\.csv: missing column\(s\) 'ViewPosition'"):
        prepare(raw, tmp_path / "out")


def test_unknown_split_value_names_the_line(tmp_path):
    raw = make_raw(tmp_path)
    frame = pd.read_csv(raw / mimic.SPLIT_FILE, dtype=str)
    frame.loc[2, "split"] = "valid"
    frame.to_csv(raw / mimic.SPLIT_FILE, index=False)
    with pytest.raises(DataError, match=r"split\.csv line 4: split 'valid'"):
        prepare(raw, tmp_path / "out")


def test_missing_report_raises_or_excludes_the_study(tmp_path):
    raw = make_raw(tmp_path)
    report = raw / "files/p10/p10000032/s53189527.txt"
    report.unlink()
    with pytest.raises(DataError, match=r"metadata\.csv line 4 \(d3\): report .*s53189527\.txt missing"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["id"] for item in data.manifest.excluded] == ["d3", "d4"]
    assert data.split_ids("train") == ["d1"]


def test_missing_reports_are_matched_to_images_without_a_scan_per_study(tmp_path, monkeypatch):
    # Regression: each missing report scanned the whole image table (images["study_id"] == study),
    # quadratic when the reports were not copied at all (hundreds of thousands of studies).
    from benchmark.data.preparation import LINE, Problems

    studies = [f"5{number:07d}" for number in range(200)]
    images = pd.DataFrame({
        "dicom_id": [f"d{number}" for number in range(400)], "subject_id": "10000032",
        "study_id": [study for study in studies for _ in range(2)], LINE: range(2, 402),
    })
    comparisons = []
    original = pd.Series.__eq__
    monkeypatch.setattr(pd.Series, "__eq__", lambda self, other: comparisons.append(1) or original(self, other))
    problems = Problems("exclude")
    assert mimic.read_texts(tmp_path, images, problems, tmp_path / "metadata.csv") == {}
    assert len(comparisons) < 10
    assert [(item["id"], item["row"]) for item in problems.excluded] == list(zip(images["dicom_id"], images[LINE]))


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_bad_image_raises_or_is_a_counted_exclusion(tmp_path, damage):
    raw = make_raw(tmp_path)
    image = raw / "files/p11/p11000011/s51029426/d6.jpg"
    if damage == "corrupt":
        image.write_bytes(b"")
    else:
        image.unlink()
    with pytest.raises(DataError, match="s51029426/d6.jpg"):
        prepare(raw, tmp_path / "raise")
    data = prepare(raw, tmp_path / "exclude", on_error="exclude")
    assert [item["file"] for item in data.manifest.excluded] == [str(image)]
    assert data.split_ids("val") == [] and "d6" not in data.records.index
