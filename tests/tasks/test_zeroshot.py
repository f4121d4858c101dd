"""Zero-shot classification: the task end to end through the grid with a tiny exported MGCA text tower on demo
RSNA, COVIDx and CheXpert 5x200, the skip of a backbone without a text tower, the scorer against hand-computed values
and the ``score zeroshot`` verb on files written outside the grid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import build_backbone, user_backbone_spec
from benchmark.backbones.text import load_text_tower
from benchmark.board.store import Board
from benchmark.cli import main as cli_main
from benchmark.data.demo import generate
from benchmark.data.prepared import PreparedDataset
from benchmark.grid import BackboneChoice, GridRequest, run_grid
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.classification import PredictionFileError
from tasks.registry import get_task
from tasks.zeroshot.prompts import PROMPTS

PROMPTS_COLUMNS = {name: tuple(column.column for column in columns) for name, columns in PROMPTS.items()}

ROOT = Path(__file__).resolve().parents[2]
CAPTIONS = ["no acute cardiopulmonary process", "findings consistent with pneumonia", "bilateral ground-glass opacities",
            "normal chest radiograph", "covid-19 pneumonia", "the lungs are clear"] * 4


@pytest.fixture(scope="module")
def tiny_mgca(tmp_path_factory: pytest.TempPathFactory, write_tiny_mgca) -> Path:
    """A pretraining run's checkpoint (tiny ResNet-18 MGCA, one-layer BERT) exported with its text tower."""
    return write_tiny_mgca(tmp_path_factory.mktemp("mgca_run"), CAPTIONS)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo RSNA (40 images), COVIDx (24) and CheXpert (96, its smallest scorable size, plus the 5x200 candidates its
    writer adds: 50 hold-out images) prepared at 32 px."""
    root = tmp_path_factory.mktemp("zeroshot-data")
    for name, images in (("rsna", 40), ("covidx", 24), ("chexpert", 96)):
        generate(root / "raw", [name], images=images, size=64, seed=0, scorable=True)
        assert cli_main(["prepare", name, "--raw", str(root / "raw" / name), "--out", str(root / "prepared"),
                         "--image-size", "32", "--workers", "1"]) == 0
    return root / "prepared"


def demo_board(folder: Path) -> Board:
    """The demo board's protocol with its zero-shot entry alone (the cells of the other tasks are not ours)."""
    protocol = json.loads((ROOT / "leaderboards" / "demo-mgca-cxr-v1" / "protocol.json").read_text())
    protocol["tasks"] = {"zeroshot": protocol["tasks"]["zeroshot"]}
    (folder / protocol["board"]).mkdir(parents=True)
    (folder / protocol["board"] / "protocol.json").write_text(json.dumps(protocol))
    return Board(folder / protocol["board"])


def expected_scores(loaded, dataset: PreparedDataset, ids: list[str], input_size: int = 28) -> np.ndarray:
    """The class scores written out by hand: the 28-pixel centre crop of the 32-pixel images (224/256), resized to
    the model's input where it takes only its own, its mean and std, cosine similarity to each class's mean prompt
    embedding (minus the negative class's for RSNA's one column)."""
    tower = load_text_tower(loaded)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (loaded.preprocessing.mean, loaded.preprocessing.std))
    pixels = torch.from_numpy(dataset.images(ids)).float()[:, 2:30, 2:30].unsqueeze(1).repeat(1, 3, 1, 1) / 255
    if input_size != 28:
        pixels = F.interpolate(pixels, size=(input_size, input_size), mode="bilinear", align_corners=True)
    with torch.no_grad():
        embedded = F.normalize(tower.project_images((pixels - mean) / std), dim=-1)

        def similarity(prompts: tuple[str, ...]) -> torch.Tensor:
            texts = F.normalize(tower.encode_texts(list(prompts)), dim=-1)
            return embedded @ F.normalize(texts.mean(0), dim=-1)

        columns = [similarity(c.positive) - (similarity(c.negative) if c.negative else 0) for c in PROMPTS[dataset.name]]
    return torch.stack(columns, 1).double().numpy()


def test_the_grid_scores_a_text_tower_backbone_zero_shot_and_skips_one_without(tiny_mgca: Path, prepared: Path,
                                                                               tmp_path: Path) -> None:
    board = demo_board(tmp_path / "boards")
    request = GridRequest(backbones=(BackboneChoice("tiny_mgca", tiny_mgca, "resnet18"), BackboneChoice("random_resnet18")),
                          data_dir=prepared, work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", progress=False,
                          keep_work=True)  # each cell in its child process, as a board runs it
    summary = run_grid(board, request)
    assert (summary.ran, summary.failed) == (3, [])
    assert summary.skipped == ["zeroshot for random_resnet18: no text tower (an image-only checkpoint or source, or "
                               "random weights)"]
    assert "skipped: zeroshot for random_resnet18: no text tower" in "\n".join(summary.lines())
    records = {record.identity.dataset: record for record in board.records()}
    assert sorted(records) == ["chexpert", "covidx", "rsna"]
    for name, record in records.items():
        identity = record.identity
        partition = "holdout_5x200" if name == "chexpert" else "classification"
        assert (identity.backbone, identity.head, identity.mode, identity.fraction, identity.partition) == (
            "tiny_mgca", "prompts", "direct", 100, partition)
        assert record.target_set["key"] == f"{name}/{partition}/test" and record.config["partition"] == partition
        dataset = PreparedDataset(prepared / name)
        ids = dataset.split_ids("test", partition=partition)
        predictions = pd.read_csv(board.artifact_file(record.predictions), dtype={"id": str}).set_index("id")
        assert list(predictions.index) == ids
        loaded = build_backbone(user_backbone_spec("tiny_mgca", "resnet18"), checkpoint=tiny_mgca)
        np.testing.assert_allclose(predictions.to_numpy(), expected_scores(loaded, dataset, ids), atol=1e-5)
        assert record.training == {} and record.config["max_epochs"] == 0 and "prompts version 2" in record.notes[0]
        first = PROMPTS[name][0]
        assert record.config["prompts"][first.column] == {"positive": list(first.positive), "negative": list(first.negative)}
        # the number on the board is the scorer's on the stored files, at the board's bootstrap settings
        scored = scorer("zeroshot").score_files(board.artifact_file(record.predictions), board.artifact_file(record.targets),
                                                name, BootstrapOptions(n_resamples=200, seed=0))
        assert {key: value.value for key, value in record.metrics.items()} == {
            key: value.value for key, value in scored.metric_values().items()}
    assert records["rsna"].headline_metric == "auroc" and records["covidx"].headline_metric == "accuracy"
    assert {"accuracy", "macro_f1", "balanced_accuracy", "auroc"} <= set(records["covidx"].metrics)
    # CheXpert 5x200: the demo's 10 hold-out images per finding, scored five-way; targets = the one-hot records' class
    chexpert = records["chexpert"]
    assert chexpert.headline_metric == "accuracy" and {"accuracy", "macro_f1"} <= set(chexpert.metrics)
    assert chexpert.config["n_images"] == {"test": 50}
    targets = pd.read_csv(board.artifact_file(chexpert.targets), dtype={"id": str}).set_index("id")
    one_hot = PreparedDataset(prepared / "chexpert").records.loc[targets.index, list(PROMPTS_COLUMNS["chexpert"])]
    assert (one_hot.sum(axis=1) == 1).all() and (targets["label"].to_numpy() == one_hot.to_numpy().argmax(1)).all()
    assert np.bincount(targets["label"], minlength=5).tolist() == [10] * 5
    # the targets are the classification task's: the board's pin of the test split is the same digest
    classification = scorer("classification").target_set(board.artifact_file(records["rsna"].targets), "rsna")
    assert records["rsna"].target_set["digest"] == classification.digest
    assert run_grid(board, request).done_before == 3  # resumable like every task


def test_a_damaged_text_tower_is_a_skip_with_its_error_not_a_failed_grid(tiny_mgca: Path, tmp_path: Path) -> None:
    content = torch.load(tiny_mgca, weights_only=True)
    content["text_tower"]["bert_config"]["num_hidden_layers"] = 2  # the checkpoint holds one layer
    torch.save(content, tmp_path / "bad.ckpt")
    loaded = build_backbone(user_backbone_spec("bad", "resnet18"), checkpoint=tmp_path / "bad.ckpt")
    reason = get_task("zeroshot").unmet_requirement(loaded)
    assert reason.startswith("its text tower cannot be loaded:") and "incomplete text tower" in reason


def test_the_zeroshot_adapter_refuses_a_label_fraction_and_an_epoch_budget(tiny_mgca: Path, prepared: Path, tmp_path: Path) -> None:
    from tasks.zeroshot.adapter import zero_shot
    from tasks.zeroshot.protocol import PROTOCOL, with_overrides

    loaded = build_backbone(user_backbone_spec("tiny_mgca", "resnet18"), checkpoint=tiny_mgca)
    with pytest.raises(ValueError, match="its only label fraction is 100, not 10"):
        zero_shot(loaded, PreparedDataset(prepared / "rsna"), 10, "direct", tmp_path, PROTOCOL)
    with pytest.raises(ValueError, match="max_epochs must be 0, not 3"):
        with_overrides(max_epochs=3)


# open_clip's ViT takes only its own 32 px: the 28-pixel crop is resized to 32; transformers' CLIP interpolates its
# position embeddings: the crop at the model's 224/224 scale, rounded down to its 8-pixel patch, 24
@pytest.mark.parametrize("source, fixed_size, input_size", [("open_clip", True, 32), ("hf", False, 24)])
def test_open_clip_and_transformers_clip_backbones_are_scored_zero_shot(source: str, fixed_size: bool, input_size: int,
                                                                        clip_folders, clip_grid, prepared: Path, tmp_path: Path) -> None:
    """Through the grid onto the board, as ``run --checkpoint FOLDER --arch open_clip:FOLDER`` does, on all three
    datasets (cells in this process: the isolation is the MGCA test's)."""
    folder = clip_folders[source]
    loaded = build_backbone(user_backbone_spec("clip", f"{source}:{folder}"), checkpoint=folder)
    assert get_task("zeroshot").unmet_requirement(loaded) is None
    assert loaded.preprocessing.input_size == {"open_clip": 32, "hf": 224}[source]
    assert loaded.preprocessing.fixed_size == fixed_size
    board = demo_board(tmp_path / "boards")
    summary, records = clip_grid(board, source, folder, prepared, tmp_path)
    assert (summary.ran, summary.failed, summary.skipped) == (3, [], [])
    assert sorted(records) == ["chexpert", "covidx", "rsna"]
    for name, record in records.items():
        dataset = PreparedDataset(prepared / name)
        ids = dataset.split_ids("test", partition=record.identity.partition)
        predictions = pd.read_csv(board.artifact_file(record.predictions), dtype={"id": str}).set_index("id")
        assert list(predictions.index) == ids
        np.testing.assert_allclose(predictions.to_numpy(), expected_scores(loaded, dataset, ids, input_size), atol=1e-5)
        assert record.config["geometry"] == {"cache_size": 32, "crop_size": 28, "encoder_input_size": input_size}
        # the side the dry run times the encoder at: transformers' CLIP's 24, not its own 224
        assert get_task("zeroshot").encoder_input_size(loaded, dataset.manifest.image_size, "prompts") == input_size
        scored = scorer("zeroshot").score_files(board.artifact_file(record.predictions), board.artifact_file(record.targets),
                                                name, BootstrapOptions(n_resamples=200, seed=0))
        assert {key: value.value for key, value in record.metrics.items()} == {
            key: value.value for key, value in scored.metric_values().items()}


def write_files(folder: Path, dataset: str, scores: list[list[float]], labels: list) -> tuple[Path, Path]:
    classes = list(PROMPTS_COLUMNS[dataset])
    ids = [f"img{k}" for k in range(len(scores))]
    predictions, targets = folder / f"{dataset}-predictions.csv", folder / f"{dataset}-targets.csv"
    pd.DataFrame(scores, columns=classes).assign(id=ids)[["id", *classes]].to_csv(predictions, index=False)
    pd.DataFrame({"id": ids, "Target" if dataset == "rsna" else "label": labels}).to_csv(targets, index=False)
    return predictions, targets


# COVIDx, 6 images: truth 0 0 1 1 2 2, top-1 predictions 0 1 1 1 2 0 -> accuracy 4/6.
# F1: normal 2·1/(2·1+1+1) = 1/2 (TP 1, FP 1, FN 1); pneumonia 2·2/(4+1+0) = 4/5; COVID-19 2·1/(2+0+1) = 2/3.
COVIDX_SCORES = [[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.3, 0.6, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]]
COVIDX_LABELS = [0, 0, 1, 1, 2, 2]
MACRO_F1 = (1 / 2 + 4 / 5 + 2 / 3) / 3
# CheXpert 5x200 (Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion), 7 images: truth 0 0 1 2 3 4 4,
# top-1 predictions 0 1 1 2 4 4 0 -> accuracy 4/7. F1: Atelectasis 2·1/(2+1+1) = 1/2 (TP image 0, FP image 6, FN image 1);
# Cardiomegaly 2·1/(2+1+0) = 2/3; Consolidation 1; Edema 0 (its one image predicted Pleural Effusion); Pleural Effusion
# 2·1/(2+1+1) = 1/2 -> macro-F1 (1/2 + 2/3 + 1 + 0 + 1/2) / 5 = 8/15.
CHEXPERT_TOP1 = [0, 1, 1, 2, 4, 4, 0]
CHEXPERT_SCORES = [[0.9 if k == top else 0.1 * k for k in range(5)] for top in CHEXPERT_TOP1]
CHEXPERT_LABELS = [0, 0, 1, 2, 3, 4, 4]
# RSNA, 5 images: positives score 0.8, 0.3; negatives 0.1, 0.5, 0.2 -> pairs won 3 + 2 of 6 -> AUROC 5/6.
RSNA_SCORES, RSNA_LABELS = [[0.8], [0.3], [0.1], [0.5], [0.2]], [1, 1, 0, 0, 0]


def test_the_zeroshot_scorer_gives_the_hand_computed_metrics(tmp_path: Path) -> None:
    zeroshot = scorer("zeroshot")
    report = zeroshot.score_files(*write_files(tmp_path, "covidx", COVIDX_SCORES, COVIDX_LABELS), "covidx",
                                  BootstrapOptions(n_resamples=50))
    assert report.task == "zeroshot" and report.primary_metric == "accuracy" and report.n_images == 6
    assert report.metrics["accuracy"].value == pytest.approx(4 / 6, abs=1e-12)
    assert report.metrics["macro_f1"].value == pytest.approx(MACRO_F1, abs=1e-12)
    assert dict(report.metrics["macro_f1"].per_class) == pytest.approx({"normal": 1 / 2, "pneumonia": 4 / 5, "COVID-19": 2 / 3})
    low, high = report.metrics["macro_f1"].interval.low, report.metrics["macro_f1"].interval.high
    assert 0 <= low <= high <= 1
    rsna = zeroshot.score_files(*write_files(tmp_path, "rsna", RSNA_SCORES, RSNA_LABELS), "rsna", BootstrapOptions(n_resamples=50))
    assert rsna.primary_metric == "auroc" and rsna.metrics["auroc"].value == pytest.approx(5 / 6, abs=1e-12)
    assert zeroshot.headline("rsna") == "auroc" and zeroshot.headline("covidx") == "accuracy"
    with pytest.raises(KeyError, match="unknown zero-shot dataset 'siim'"):
        zeroshot.headline("siim")


def test_the_zeroshot_scorer_gives_the_hand_computed_metrics_on_chexpert_5x200(tmp_path: Path) -> None:
    files = write_files(tmp_path, "chexpert", CHEXPERT_SCORES, CHEXPERT_LABELS)
    report = scorer("zeroshot").score_files(*files, "chexpert", BootstrapOptions(n_resamples=50))
    assert report.primary_metric == "accuracy" and sorted(report.metrics) == ["accuracy", "macro_f1"]
    assert report.metrics["accuracy"].value == pytest.approx(4 / 7, abs=1e-12)
    assert report.metrics["macro_f1"].value == pytest.approx(8 / 15, abs=1e-12)
    assert dict(report.metrics["macro_f1"].per_class) == pytest.approx(
        {"Atelectasis": 1 / 2, "Cardiomegaly": 2 / 3, "Consolidation": 1.0, "Edema": 0.0, "Pleural Effusion": 1 / 2})
    run = scorer("zeroshot").per_image(*files, "chexpert", "macro_f1")
    assert run.metric(np.ones((1, 7)))[0] == pytest.approx(8 / 15, abs=1e-12)
    # the classification scheme scores CheXpert multi-label: the 5x200 targets (one class index) are not its format
    with pytest.raises(PredictionFileError, match="wrong columns for a targets file"):
        scorer("classification").score_files(*files, "chexpert")


def test_chexpert_zero_shot_labels_must_be_one_hot(tmp_path: Path) -> None:
    from benchmark.data.prepared import DataError
    from benchmark.scoring.zeroshot import ZERO_SHOT_SCHEMES
    from tasks.zeroshot.adapter import label_matrix

    records = pd.DataFrame({"id": ["a", "b", "c"], "Atelectasis": [1, 0, 0], "Cardiomegaly": [0, 0, 0],
                            "Consolidation": [0, 0, 1], "Edema": [0, 1, 0], "Pleural Effusion": [0, 0, 1]}).set_index("id")
    dataset = SimpleNamespace(root=tmp_path, name="chexpert", records=records)  # what label_matrix reads and names
    scheme = ZERO_SHOT_SCHEMES.get("chexpert")
    np.testing.assert_array_equal(label_matrix(dataset, ["b", "a"], scheme), [[0, 0, 0, 1, 0], [1, 0, 0, 0, 0]])
    with pytest.raises(DataError, match=r"id 'c' has labels \[0.0, 0.0, 1.0, 0.0, 1.0\].*positive for exactly one"):
        label_matrix(dataset, ["a", "c"], scheme)


def test_macro_f1_on_weighted_resamples_is_macro_f1_on_the_resampled_rows(tmp_path: Path) -> None:
    predictions, targets = write_files(tmp_path, "covidx", COVIDX_SCORES, COVIDX_LABELS)
    run = scorer("zeroshot").per_image(predictions, targets, "covidx", "macro_f1")
    assert run.metric(np.ones((1, 6)))[0] == pytest.approx(MACRO_F1, abs=1e-12)
    # images 0, 0, 2, 4, 5, 5: truth 0 0 1 2 2 2, predicted 0 0 1 2 0 0 -> F1 normal 2·2/(4+2+0) = 2/3,
    # pneumonia 1, COVID-19 2·1/(2+0+2) = 1/2
    weights = np.array([[2, 0, 1, 0, 1, 2]], dtype=float)
    assert run.metric(weights)[0] == pytest.approx((2 / 3 + 1 + 1 / 2) / 3, abs=1e-12)
    # a class neither present nor predicted counts 0, as scikit-learn's zero_division=0: only images 0 and 1
    assert run.metric(np.array([[1, 1, 0, 0, 0, 0]], dtype=float))[0] == pytest.approx((2 / 3 + 0 + 0) / 3, abs=1e-12)


def test_score_zeroshot_prints_the_metrics_of_files_written_outside_the_grid(tmp_path: Path, capsys) -> None:
    predictions, targets = write_files(tmp_path, "covidx", COVIDX_SCORES, COVIDX_LABELS)
    shutil.move(predictions, tmp_path / "mine.csv")
    assert cli_main(["score", "zeroshot", "--predictions", str(tmp_path / "mine.csv"), "--targets", str(targets),
                     "--dataset", "covidx", "--n-resamples", "100"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["task"] == "zeroshot" and printed["primary_metric"] == "accuracy"
    assert printed["metrics"]["macro_f1"]["value"] == pytest.approx(MACRO_F1, abs=1e-12)
    assert printed["metrics"]["accuracy"]["n_resamples"] == 100
    assert cli_main(["score", "zeroshot", "--predictions", str(tmp_path / "mine.csv"), "--targets", str(targets),
                     "--dataset", "siim"]) != 0


def test_every_zero_shot_dataset_has_prompts_for_exactly_its_scheme_columns() -> None:
    from benchmark.scoring.zeroshot import ZERO_SHOT_SCHEMES

    assert sorted(PROMPTS) == sorted(ZERO_SHOT_SCHEMES.names()) == sorted(get_task("zeroshot").datasets)
    for name, columns in PROMPTS.items():
        assert tuple(column.column for column in columns) == ZERO_SHOT_SCHEMES.get(name).classes, name
        assert all(column.positive and len(set(column.positive)) == len(column.positive) for column in columns), name
    assert PROMPTS["rsna"][0].negative  # RSNA's one column: pneumonia against normal
