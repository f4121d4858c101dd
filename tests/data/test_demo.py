"""The demo generator: official layouts, readable files, consistent labels, determinism, learnable signal."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pydicom
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from benchmark.cli import main
from benchmark.data.datasets import chexpert
from benchmark.data.datasets.siim import rle_to_mask
from benchmark.data.demo import DEMO_WRITERS, generate, sources
from benchmark.data.demo.base import DemoOptions, write_csv
from benchmark.data.demo.chexpert import demo_rows
from benchmark.data.demo.mimic import LABELS as MIMIC_LABELS
from benchmark.data.demo.mimic import MENTIONS
from benchmark.data.demo.siim import rle_encode
from benchmark.data.dicom import read_dicom
from benchmark.data.preparation import DEMO_MARKER
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.data.registry import DATASETS, PrepareOptions

SIZE = 64
CHEXPERT_COLUMNS = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly",
    "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax",
    "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    generate(root, images=40, size=SIZE, seed=3)
    return root


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert image is not None, f"{path} unreadable"
    return image


def test_every_dataset_has_a_writer_and_the_writers_name_known_datasets() -> None:
    assert DEMO_WRITERS.names() == ["chexpert", "covidx", "mimic", "object_cxr", "rsna", "siim"]
    assert set(DEMO_WRITERS.names()) <= set(DATASETS.names())


def test_marker_in_every_raw_folder(demo: Path) -> None:
    for name in DEMO_WRITERS.names():
        text = (demo / name / DEMO_MARKER).read_text()
        assert "synthetic" in text.lower() and "generator version" in text and "seed=3" in text


def test_chexpert_layout(demo: Path) -> None:
    root = demo / "chexpert"
    for split in ("train", "valid"):
        with open(root / f"{split}.csv") as handle:
            assert handle.readline().rstrip("\n").split(",") == CHEXPERT_COLUMNS
        rows = pd.read_csv(root / f"{split}.csv", dtype=str, keep_default_na=False)
        assert rows["Path"].str.match(rf"CheXpert-v1\.0-small/{split}/patient\d{{5}}/study\d+/view\d+_(frontal|lateral)\.jpg$").all()
        for path in rows["Path"]:
            assert read_image(root / path.split("/", 1)[1]).shape[0] == SIZE
        labels = rows[CHEXPERT_COLUMNS[5:]].to_numpy().ravel()
        assert set(labels) <= ({"1.0", "0.0", "-1.0", ""} if split == "train" else {"1.0", "0.0"})
    train = pd.read_csv(root / "train.csv", dtype=str, keep_default_na=False)
    assert (train[CHEXPERT_COLUMNS[5:]] == "-1.0").any().any(), "no uncertain label"
    assert (train["Frontal/Lateral"] == "Lateral").any()
    assert train["Path"].str.split("/").str[2].value_counts().max() > 1, "one image per patient"
    real = set(sources.chexpert_rows()["Path"])
    assert set(train["Path"]) <= real, "train rows must be real CheXpert rows"
    # the 5x200 hold-out of demo data can always be drawn: the writer adds candidates where the sampled patients lack them
    table = chexpert.read_label_table(root / "train.csv")
    pools = chexpert.holdout_pools(table)
    assert all(len(pool) >= chexpert.demo_holdout_per_task(table) == 10 for pool in pools.values()), pools


@pytest.mark.parametrize(("images", "per_task"), [(240, 10), (1000, 16)])
def test_chexpert_writer_and_preparer_agree_on_the_holdout_size(tmp_path: Path, images: int, per_task: int) -> None:
    """The writer's rows (no images drawn) as the preparer reads them: the preparer's hold-out size is the one the
    writer filled the short candidate pools to (it adds candidates, so each pool holds at least that many and the
    short ones exactly that many), and at 1,000 images it has grown past the smallest demos' 10."""
    rows = demo_rows(DemoOptions(tmp_path, images, SIZE, 0))["train"]
    write_csv(tmp_path / "train.csv", list(rows.columns), rows.to_numpy().tolist())
    (tmp_path / DEMO_MARKER).write_text("test data\n")
    table = chexpert.read_label_table(tmp_path / "train.csv")
    sizes = chexpert.split_sizes(PrepareOptions(raw=tmp_path, out=tmp_path / "out"), table)
    pools = {task: len(pool) for task, pool in chexpert.holdout_pools(table).items()}
    assert sizes.holdout_per_task == per_task and min(pools.values()) == per_task, pools
    assert len(chexpert.holdout_5x200(table, sizes.holdout_per_task)) == 5 * per_task


def test_rsna_layout(demo: Path) -> None:
    root = demo / "rsna"
    with open(root / "stage_2_train_labels.csv") as handle:
        assert handle.readline().strip() == "patientId,x,y,width,height,Target"
    rows = pd.read_csv(root / "stage_2_train_labels.csv")
    assert set(rows["patientId"]) <= set(sources.rsna_labels()["patientId"])
    positive = rows[rows["Target"] == 1]
    assert len(positive) and positive[["x", "y", "width", "height"]].notna().all().all()
    assert rows.loc[rows["Target"] == 0, ["x", "y", "width", "height"]].isna().all().all()
    assert (positive["x"] >= 0).all() and (positive["y"] >= 0).all()
    assert (positive["x"] + positive["width"] <= SIZE).all() and (positive["y"] + positive["height"] <= SIZE).all()
    photometric = set()
    for patient in rows["patientId"].unique():
        dataset = pydicom.dcmread(root / "stage_2_train_images" / f"{patient}.dcm")
        assert dataset.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
        assert dataset.PatientID == patient and dataset.pixel_array.shape == (SIZE, SIZE)
        photometric.add((dataset.PhotometricInterpretation, int(dataset.BitsAllocated)))
    assert len(photometric) > 1, "DICOM encodings should vary"


def test_rsna_decoded_pixels_do_not_depend_on_the_encoding(demo: Path) -> None:
    """MONOCHROME1 and rescaled 16-bit files decode to a bright-bone image like MONOCHROME2 ones:
    the spine (image centre column) is brighter than the lung fields beside it."""
    root = demo / "rsna" / "stage_2_train_images"
    for path in sorted(root.glob("*.dcm")):
        image = read_dicom(path).astype(float)
        centre, lateral = image[SIZE // 4 : SIZE // 2, SIZE // 2 - 2 : SIZE // 2 + 2].mean(), image[SIZE // 4 : SIZE // 2, SIZE // 4].mean()
        assert centre > lateral, f"{path.name} ({pydicom.dcmread(path).PhotometricInterpretation}) looks inverted"


def test_covidx_layout(demo: Path) -> None:
    root = demo / "covidx"
    suffixes, patients = set(), {}
    for split in ("train", "test"):
        lines = (root / f"{split}_COVIDx9A.txt").read_text().splitlines()
        assert lines
        for line in lines:
            patient, filename, label, source = line.split(" ")
            assert label in {"normal", "pneumonia", "COVID-19"} and source
            read_image(root / split / filename)
            suffixes.add(Path(filename).suffix)
            patients.setdefault(patient, set()).add(split)
    assert suffixes == {".png", ".jpg"}
    assert all(len(splits) == 1 for splits in patients.values()), "a patient in both train and test"


def test_siim_layout_and_masks(demo: Path) -> None:
    root = demo / "siim"
    text = (root / "train-rle.csv").read_text()
    assert text.splitlines()[0] == "ImageId, EncodedPixels"
    rows = pd.read_csv(root / "train-rle.csv", dtype=str)
    rows.columns = [column.strip() for column in rows.columns]
    assert set(rows["ImageId"]) <= set(sources.siim_rle()["ImageId"])
    dicoms = {path.stem: path for path in (root / "dicom-images-train").rglob("*.dcm")}
    assert set(dicoms) == set(rows["ImageId"])
    for image_id, path in dicoms.items():
        assert path.parent.parent.parent == root / "dicom-images-train"  # study/series/ImageId.dcm
        assert pydicom.dcmread(path).SOPInstanceUID == image_id
    positives = rows[rows["EncodedPixels"] != "-1"]
    assert len(positives)
    contrasts = []
    for image_id, rle in positives.itertuples(index=False):
        mask = rle_to_mask(rle, SIZE, SIZE)  # raises if a run leaves the image
        assert mask.any()
        if mask.sum() >= 30:  # the pneumothorax is darker than the ring of tissue around it
            image = read_dicom(dicoms[image_id]).astype(float)
            ring = (cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0) & ~mask
            contrasts.append(image[ring].mean() - image[mask].mean())
    assert contrasts and np.mean(contrasts) > 5 and np.mean(np.array(contrasts) > 0) >= 0.7


def test_rle_encode_inverts_the_preparer_decoder_on_real_masks() -> None:
    table = sources.siim_rle()
    for rle in table.loc[table["EncodedPixels"] != "-1", "EncodedPixels"].head(20):
        assert rle_encode(rle_to_mask(rle, 1024, 1024)) == rle
    mask = np.zeros((4, 4), bool)
    assert rle_encode(mask) == "-1"
    mask[1:3, 0] = mask[0, 1] = mask[3, 3] = True  # column-major: pixels 1, 2, then 4, then 15 (runs at the image end too)
    assert rle_encode(mask) == "1 2 1 1 10 1"


def test_object_cxr_layout(demo: Path) -> None:
    root = demo / "object_cxr"
    shapes = set()
    for split in ("train", "dev"):
        with open(root / f"{split}.csv") as handle:
            assert handle.readline().strip() == "image_name,annotation"
        rows = pd.read_csv(root / f"{split}.csv", dtype=str, keep_default_na=False)
        assert (rows["annotation"] == "").any() and (rows["annotation"] != "").any()
        for name, annotation in rows.itertuples(index=False):
            height, width = read_image(root / split / name).shape
            for item in filter(None, annotation.split(";")):
                kind, *coordinates = map(int, item.split())
                xs, ys = coordinates[0::2], coordinates[1::2]
                shapes.add(kind)
                assert len(xs) == len(ys) >= (3 if kind == 2 else 2)
                assert 0 <= min(xs) <= max(xs) < width and 0 <= min(ys) <= max(ys) < height
    assert shapes == {0, 1, 2}


def test_mimic_layout_and_reports(demo: Path) -> None:
    root = demo / "mimic"
    metadata = pd.read_csv(root / "mimic-cxr-2.0.0-metadata.csv", dtype=str)
    split = pd.read_csv(root / "mimic-cxr-2.0.0-split.csv", dtype=str)
    labels = pd.read_csv(root / "mimic-cxr-2.0.0-chexpert.csv", dtype=str, keep_default_na=False)
    assert list(split.columns) == ["dicom_id", "study_id", "subject_id", "split"]
    assert list(labels.columns) == ["subject_id", "study_id", *MIMIC_LABELS]
    assert {"dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition", "Rows", "Columns"} <= set(metadata.columns)
    assert set(split["split"]) <= {"train", "validate", "test"} and len(split) == len(metadata) == 40
    assert split.groupby("subject_id")["split"].nunique().max() == 1, "a subject in two splits"
    for row in metadata.itertuples():
        folder = root / "files" / f"p{row.subject_id[:2]}" / f"p{row.subject_id}"
        assert read_image(folder / f"s{row.study_id}" / f"{row.dicom_id}.jpg").shape == (int(row.Rows), int(row.Columns))
    for row in labels.to_dict("records"):
        report = (root / "files" / f"p{row['subject_id'][:2]}" / f"p{row['subject_id']}" / f"s{row['study_id']}.txt").read_text()
        assert "IMPRESSION:" in report
        findings = " ".join(report.lower().split())  # sentences are wrapped over lines
        for label, pattern in MENTIONS.items():
            if row[label] == "1.0":
                assert re.search(pattern, findings) or label.lower() in findings, f"report of s{row['study_id']} omits {label}"


def test_generation_is_deterministic_and_seeded(tmp_path: Path) -> None:
    first, second, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((first, 7), (second, 7), (other, 8)):
        generate(folder, images=12, size=48, seed=seed)
    files = sorted(path.relative_to(first) for path in first.rglob("*") if path.is_file())
    assert files == sorted(path.relative_to(second) for path in second.rglob("*") if path.is_file())
    for relative in files:
        if relative.suffix in (".csv", ".txt"):
            assert (first / relative).read_bytes() == (second / relative).read_bytes(), relative
        elif relative.suffix == ".dcm":
            assert np.array_equal(pydicom.dcmread(first / relative).pixel_array, pydicom.dcmread(second / relative).pixel_array)
        elif relative.name != DEMO_MARKER:
            assert np.array_equal(read_image(first / relative), read_image(second / relative)), relative
    assert (first / "rsna/stage_2_train_labels.csv").read_bytes() != (other / "rsna/stage_2_train_labels.csv").read_bytes()


def test_existing_data_is_never_overwritten_silently(tmp_path: Path) -> None:
    real = tmp_path / "rsna"
    real.mkdir()
    (real / "stage_2_train_labels.csv").write_text("real data\n")
    with pytest.raises(DataError, match="--overwrite"):
        generate(tmp_path, ["rsna"], images=8, size=32)
    with pytest.raises(DataError, match="may be real data"):
        generate(tmp_path, ["rsna"], images=8, size=32, overwrite=True)
    assert (real / "stage_2_train_labels.csv").read_text() == "real data\n"


def test_refresh_keeps_demo_data_of_the_same_options_and_replaces_others(tmp_path: Path) -> None:
    generate(tmp_path, ["covidx"], images=8, size=32)
    labels = tmp_path / "covidx" / "train_COVIDx9A.txt"
    written = labels.stat().st_mtime_ns
    assert generate(tmp_path, ["covidx"], images=8, size=32, refresh=True) == {"covidx": {}}
    assert labels.stat().st_mtime_ns == written
    assert generate(tmp_path, ["covidx"], images=12, size=32, refresh=True)["covidx"]
    assert "images=12 size=32" in (tmp_path / "covidx" / DEMO_MARKER).read_text()
    real = tmp_path / "rsna"
    real.mkdir()
    (real / "stage_2_train_labels.csv").write_text("real data\n")
    with pytest.raises(DataError, match="may be real data"):
        generate(tmp_path, ["rsna"], images=20, size=32, refresh=True)


def test_prepare_refresh_keeps_a_current_preparation_and_redoes_a_stale_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw, out = tmp_path / "raw", tmp_path / "prepared"
    generate(raw, ["covidx"], images=8, size=32)
    command = ["prepare", "covidx", "--raw", str(raw / "covidx"), "--out", str(out), "--workers", "1", "--refresh"]
    manifest = out / "covidx" / "manifest.json"
    assert main([*command, "--image-size", "32"]) == 0
    created = PreparedDataset(out / "covidx").manifest.created
    assert main([*command, "--image-size", "32"]) == 0
    assert "is up to date" in capsys.readouterr().out and PreparedDataset(out / "covidx").manifest.created == created
    assert main([*command, "--image-size", "24"]) == 0
    assert "image size 32, asked for 24" in capsys.readouterr().out and PreparedDataset(out / "covidx").manifest.image_size == 24
    generate(raw, ["covidx"], images=12, size=32, overwrite=True)
    assert main([*command, "--image-size", "24"]) == 0
    assert "is not the file it was prepared from" in capsys.readouterr().out
    assert PreparedDataset(out / "covidx").manifest.counts["images"] == 12
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "preparation_version": 0}))
    assert main([*command, "--image-size", "24"]) == 0
    assert "preparation version 0" in capsys.readouterr().out
    assert main(command[:-1]) == 2  # without --refresh an existing preparation stays an error
    assert "already prepared" in capsys.readouterr().err


@pytest.mark.parametrize(("images", "size"), [(4, 64), (100_000, 64), (40, 8)])
def test_out_of_range_sizes_are_refused(tmp_path: Path, images: int, size: int) -> None:
    with pytest.raises(DataError, match="choose"):
        generate(tmp_path, ["rsna"], images=images, size=size)


def test_cli_writes_the_chosen_datasets(tmp_path: Path) -> None:
    assert main(["demo-data", "--out", str(tmp_path), "--datasets", "covidx", "--images", "8", "--size", "32"]) == 0
    assert sorted(path.name for path in tmp_path.iterdir()) == ["covidx"]


def test_cli_reports_bad_options_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo-data", "--out", str(tmp_path), "--datasets", "covidx", "--images", "4"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: --images 4: choose") and "Traceback" not in error


# --------------------------------------------------------------------------------------------
# Learnable signal: logistic regression on 16x16 mean- and max-pooled pixels, 5-fold cross-validated


def pooled(image: np.ndarray, side: int = 16) -> np.ndarray:
    kernel = np.ones((max(1, image.shape[0] // side),) * 2, np.uint8)
    mean = cv2.resize(image, (side, side), interpolation=cv2.INTER_AREA)
    peak = cv2.resize(cv2.dilate(image, kernel), (side, side), interpolation=cv2.INTER_NEAREST)
    return np.concatenate([mean.ravel(), peak.ravel()]) / 255.0


def cross_validated_scores(features: list[np.ndarray], labels: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    return cross_val_predict(model, np.stack(features), labels, cv=folds, method="predict_proba")


@pytest.fixture(scope="module")
def learnable(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("learnable")
    generate(root, ["rsna", "siim", "covidx", "object_cxr"], images=150, size=SIZE, seed=0)
    return root


def test_rsna_opacity_is_learnable(learnable: Path) -> None:
    target = pd.read_csv(learnable / "rsna/stage_2_train_labels.csv").groupby("patientId")["Target"].max()
    features = [pooled(read_dicom(learnable / f"rsna/stage_2_train_images/{patient}.dcm")) for patient in target.index]
    assert roc_auc_score(target, cross_validated_scores(features, target.to_numpy())[:, 1]) > 0.75


def test_siim_pneumothorax_is_learnable(learnable: Path) -> None:
    rows = pd.read_csv(learnable / "siim/train-rle.csv", dtype=str)
    rows.columns = [column.strip() for column in rows.columns]
    positive = rows.groupby("ImageId")["EncodedPixels"].agg(lambda values: (values != "-1").any()).astype(int)
    paths = {path.stem: path for path in (learnable / "siim").rglob("*.dcm")}
    features = [pooled(read_dicom(paths[image_id])) for image_id in positive.index]
    assert roc_auc_score(positive, cross_validated_scores(features, positive.to_numpy())[:, 1]) > 0.65


def test_object_cxr_objects_are_learnable(learnable: Path) -> None:
    features, labels = [], []
    for split in ("train", "dev"):
        for name, annotation in pd.read_csv(learnable / f"object_cxr/{split}.csv", dtype=str, keep_default_na=False).itertuples(index=False):
            features.append(pooled(cv2.resize(read_image(learnable / "object_cxr" / split / name), (SIZE, SIZE))))
            labels.append(int(annotation != ""))
    assert roc_auc_score(labels, cross_validated_scores(features, np.array(labels))[:, 1]) > 0.7


def test_covidx_classes_are_learnable(learnable: Path) -> None:
    classes = ["normal", "pneumonia", "COVID-19"]
    features, labels = [], []
    for split in ("train", "test"):
        for line in (learnable / f"covidx/{split}_COVIDx9A.txt").read_text().splitlines():
            _, filename, label, _ = line.split(" ")
            features.append(pooled(cv2.resize(read_image(learnable / "covidx" / split / filename), (SIZE, SIZE))))
            labels.append(classes.index(label))
    accuracy = (cross_validated_scores(features, np.array(labels)).argmax(1) == np.array(labels)).mean()
    assert accuracy > 0.6  # chance: 0.4 (majority class)


# --------------------------------------------------------------------------------------------
# End to end: every demo dataset goes through its real preparer unchanged


@pytest.mark.parametrize("name", DEMO_WRITERS.names())
def test_prepare_accepts_demo_data(demo: Path, tmp_path: Path, name: str) -> None:
    minimum = DEMO_WRITERS.get(name).minimum_images or 0
    if minimum > 40:  # too few images to score the test split: preparation refuses them (test_hardening_data.py)
        demo = tmp_path / "raw"
        generate(demo, [name], images=minimum, size=32, seed=0)
    assert main(["prepare", name, "--raw", str(demo / name), "--out", str(tmp_path), "--image-size", "32", "--workers", "1"]) == 0
    prepared = PreparedDataset(tmp_path / name)
    assert prepared.manifest.demo
    for partition in prepared.manifest.partitions:
        assert prepared.split_ids("test", partition=partition)
        if partition != chexpert.HOLDOUT_PARTITION:  # CheXpert's 5x200 hold-out is test only: zero-shot trains nothing
            assert prepared.split_ids("train", partition=partition)
