"""Image-text retrieval: the task end to end through the grid with a tiny exported MGCA text tower on demo MIMIC-CXR
and a synthetic CheXpert 5x200 hold-out, the skip of a backbone without a text tower, the per-dataset selection rules
(one image per study, equal reports, one-hot 5x200 labels), the overlap rule and its notes, and the text pool."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

import benchmark
from benchmark.backbones import build_backbone, user_backbone_spec
from benchmark.backbones.text import load_text_tower
from benchmark.backbones.zoo import BACKBONES
from benchmark.board.protocol import BoardProtocol
from benchmark.board.store import Board
from benchmark.cli import main as cli_main
from benchmark.data.datasets.chexpert import COMPETITION_TASKS, HOLDOUT_PARTITION
from benchmark.data.demo import generate
from benchmark.data.prepared import PREPARATION_VERSION, SPLITS, DataError, Manifest, PreparedDataset, ids_fingerprint, write_ids
from benchmark.grid import BackboneChoice, GridRequest, run_grid
from benchmark.provenance import utc_now
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from benchmark.scoring.retrieval import read_predictions, read_targets
from tasks.registry import get_task
from tasks.retrieval.texts import TEXTS, TEXTS_PER_CLASS, text_pool

ROOT = Path(__file__).resolve().parents[2]
DEMO_BOARD = ROOT / "leaderboards" / "demo-mgca-cxr-v1" / "protocol.json"
CAPTIONS = ["no acute cardiopulmonary process", "there is mild pulmonary edema", "small left pleural effusion",
            "the heart is enlarged", "right lower lobe consolidation", "bibasilar atelectasis"] * 4


def write_holdout(root: Path, per_class: int = 2, size: int = 32) -> Path:
    """A prepared CheXpert with the 5x200 hold-out partition alone: ``per_class`` test images per finding, one-hot."""
    folder = root / "chexpert"
    folder.mkdir(parents=True)
    n = per_class * len(COMPETITION_TASKS)
    ids = [f"patient{k:05d}_study1_view1_frontal" for k in range(n)]
    labels = np.eye(len(COMPETITION_TASKS), dtype=np.int64)[np.arange(n) % len(COMPETITION_TASKS)]
    records = pd.DataFrame(labels, columns=list(COMPETITION_TASKS))
    records.insert(0, "split", "test")
    records.insert(0, "id", ids)
    records.to_csv(folder / "records.csv", index=False)
    for split in SPLITS:
        write_ids(folder / "splits" / HOLDOUT_PARTITION / f"{split}.txt", ids if split == "test" else [])
    np.save(folder / "images.npy", np.random.default_rng(0).integers(0, 256, size=(n, size, size), dtype=np.uint8))
    write_ids(folder / "images.ids.txt", ids)
    Manifest(dataset="chexpert", preparation_version=PREPARATION_VERSION, package_version=benchmark.__version__,
             created=utc_now(), source_files=[], counts={"train": 0, "val": 0, "test": n}, image_size=size,
             image_mode="letterbox", partitions=[HOLDOUT_PARTITION], demo=True).write(folder)
    return folder


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Demo MIMIC-CXR (80 images, seed 1: 13 test studies) prepared at 32 px, and a synthetic 5x200 hold-out."""
    root = tmp_path_factory.mktemp("retrieval-data")
    generate(root / "raw", ["mimic"], images=80, size=64, seed=1, scorable=False)
    assert cli_main(["prepare", "mimic", "--raw", str(root / "raw" / "mimic"), "--out", str(root / "prepared"),
                     "--image-size", "32", "--workers", "1"]) == 0
    write_holdout(root / "prepared")
    return root / "prepared"


@pytest.fixture(scope="module")
def tiny_mgca(tmp_path_factory: pytest.TempPathFactory, prepared: Path, write_tiny_mgca) -> Path:
    """A pretraining run's checkpoint (tiny ResNet-18 MGCA, one-layer BERT) exported with its text tower, recording
    the demo MIMIC-CXR train and val pairs as the pairs it was trained and validated on."""
    from pretrain.data import read_pairs

    mimic = PreparedDataset(prepared / "mimic")
    pairs = {f"{split}_fingerprint": ids_fingerprint(read_pairs(mimic, split).image_ids) for split in ("train", "val")}
    return write_tiny_mgca(tmp_path_factory.mktemp("mgca_run"), CAPTIONS, pairs)


def demo_board(folder: Path) -> Board:
    """The demo board's protocol with its retrieval entry alone (the cells of the other tasks are not ours)."""
    protocol = json.loads(DEMO_BOARD.read_text())
    protocol["tasks"] = {"retrieval": protocol["tasks"]["retrieval"]}
    (folder / protocol["board"]).mkdir(parents=True)
    (folder / protocol["board"] / "protocol.json").write_text(json.dumps(protocol))
    return Board(folder / protocol["board"])


def expected_similarity(loaded, dataset: PreparedDataset, image_ids: list[str], texts: list[str],
                        input_size: int = 28) -> np.ndarray:
    """The similarities written out by hand: the 28-pixel centre crop of the 32-pixel images (224/256), resized to
    the model's input where it takes only its own, the model's mean and std, image and text embeddings normalised,
    their dot products."""
    tower = load_text_tower(loaded)
    mean, std = (torch.tensor(v).view(1, -1, 1, 1) for v in (loaded.preprocessing.mean, loaded.preprocessing.std))
    pixels = torch.from_numpy(dataset.images(image_ids)).float()[:, 2:30, 2:30].unsqueeze(1).repeat(1, 3, 1, 1) / 255
    if input_size != 28:
        pixels = F.interpolate(pixels, size=(input_size, input_size), mode="bilinear", align_corners=True)
    with torch.no_grad():
        images = F.normalize(tower.project_images((pixels - mean) / std), dim=-1)
        embedded = F.normalize(tower.encode_texts(texts), dim=-1)
    return (images @ embedded.T).numpy()


def test_the_grid_scores_retrieval_for_a_text_tower_backbone_and_skips_one_without(
        tiny_mgca: Path, prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MGCA_BENCH_ARTIFACTS", str(tmp_path / "artifacts"))  # the similarity matrices are large artifacts
    board = demo_board(tmp_path / "boards")
    request = GridRequest(backbones=(BackboneChoice("tiny_mgca", tiny_mgca, "resnet18", pretraining_data=("mimic-cxr",)),
                                     BackboneChoice("random_resnet18")),
                          data_dir=prepared, work_dir=tmp_path / "work", cache_dir=tmp_path / "cache", progress=False)
    summary = run_grid(board, request)  # each cell in its child process, as a board runs it
    assert (summary.ran, summary.failed) == (2, [])
    assert summary.skipped == ["retrieval for random_resnet18: no text tower (an image-only checkpoint or source, or "
                               "random weights)"]
    records = {record.identity.dataset: record for record in board.records()}
    assert sorted(records) == ["chexpert", "mimic"]
    loaded = build_backbone(user_backbone_spec("tiny_mgca", "resnet18"), checkpoint=tiny_mgca)
    for name, record in records.items():
        identity = record.identity
        assert (identity.backbone, identity.head, identity.mode, identity.fraction, identity.partition) == (
            "tiny_mgca", "similarity", "direct", 100, {"mimic": "pretraining", "chexpert": HOLDOUT_PARTITION}[name])
        assert record.predictions.store == "artifacts" and record.training == {} and record.config["max_epochs"] == 0
        dataset = PreparedDataset(prepared / name)
        image_ids, text_ids, similarity = read_predictions(board.artifact_file(record.predictions))
        targets = read_targets(board.artifact_file(record.targets))
        ids = dataset.split_ids("test", partition=identity.partition)
        assert image_ids == ids and list(targets.image_ids) == ids  # one frontal image per demo study: all of them
        if name == "mimic":
            studies = [str(study) for study in dataset.records.loc[ids, "study"]]
            texts = list(dataset.records.loc[ids, "text"])
            assert text_ids == studies and len(ids) == 13
            assert targets.image_groups == targets.text_groups and len(set(targets.image_groups)) <= len(ids)
        else:
            texts = text_pool()[1]
            assert text_ids == text_pool()[0] and list(targets.image_groups) == list(COMPETITION_TASKS) * 2
            assert record.config["chexpert"]["texts"]["Edema/01"] == "Pulmonary edema."
        np.testing.assert_allclose(similarity, expected_similarity(loaded, dataset, ids, texts), atol=1e-5)
        # the number on the board is the scorer's on the stored files, at the board's bootstrap settings
        scored = scorer("retrieval").score_files(board.artifact_file(record.predictions), board.artifact_file(record.targets),
                                                 name, BootstrapOptions(n_resamples=200, seed=0))
        assert {key: value.value for key, value in record.metrics.items()} == {
            key: value.value for key, value in scored.metric_values().items()}
        assert "texts version 1" in record.notes[0]
    assert records["mimic"].headline_metric == "i2t_recall_at_5" and records["chexpert"].headline_metric == "precision_at_5"
    assert {"t2i_recall_at_1", "i2t_median_rank", "t2i_median_rank"} <= set(records["mimic"].metrics)
    notes = "\n".join(records["mimic"].notes)
    assert "13 test studies, one frontal image each" in notes
    assert ("pretraining data declared ['mimic-cxr']. Overlap rule of MIMIC-CXR retrieval: 'mimic-cxr' means the official "
            "train/validate splits" in notes and "never read the test split" in notes)
    assert records["mimic"].target_set["key"] == "mimic/pretraining/test"
    # the board does not mark MIMIC-CXR train-split pretraining on the MIMIC test reports
    entry = next(e for e in board.entries().values() if e.name == "tiny_mgca")
    assert board.protocol.overlaps(entry.pretraining_data, "mimic") == []
    assert run_grid(board, request).done_before == 2  # resumable like every task
    # both columns against a random ranking of their stored files, each with its p (an untrained tower need not win)
    capsys.readouterr()
    assert cli_main(["chance", "tiny_mgca", "--board", str(board.root), "--tasks", "retrieval"]) == 0
    output = capsys.readouterr().out
    rows = re.findall(r"^(retrieval/\S+) 100%\s+(\S+)\s+[\d.]+\s+[\d.]+\s+exact [\w-]+(?: \w+)?\s+([\d.e-]+)\s+([\d.e-]+)  ",
                      output, re.M)
    assert {column: metric for column, metric, *_ in rows} == {"retrieval/mimic": "i2t_recall_at_5",
                                                                "retrieval/chexpert": "precision_at_5"}, output
    assert all(0 < float(p) <= 1 for *_, p, _ in rows), output
    assert "K=5, 13 candidates, 1 relevant" in output and "K=5, 60 candidates, 12 relevant" in output, output


# open_clip's ViT takes only its own 32 px: the 28-pixel crop is resized to 32; transformers' CLIP interpolates its
# position embeddings: the crop at the model's 224/224 scale, rounded down to its 8-pixel patch, 24
@pytest.mark.parametrize("source, input_size", [("open_clip", 32), ("hf", 24)])
def test_open_clip_and_transformers_clip_backbones_are_scored_on_both_retrieval_datasets(
        source: str, input_size: int, clip_folders, clip_grid, prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the grid onto the board, as ``run --checkpoint FOLDER --arch open_clip:FOLDER`` does (cells in this
    process: the isolation is the MGCA test's)."""
    monkeypatch.setenv("MGCA_BENCH_ARTIFACTS", str(tmp_path / "artifacts"))
    folder = clip_folders[source]
    loaded = build_backbone(user_backbone_spec("clip", f"{source}:{folder}"), checkpoint=folder)
    assert get_task("retrieval").unmet_requirement(loaded) is None
    assert loaded.preprocessing.input_size == {"open_clip": 32, "hf": 224}[source]
    board = demo_board(tmp_path / "boards")
    summary, records = clip_grid(board, source, folder, prepared, tmp_path)
    assert (summary.ran, summary.failed, summary.skipped) == (2, [], [])
    assert sorted(records) == ["chexpert", "mimic"]
    for name, record in records.items():
        dataset = PreparedDataset(prepared / name)
        image_ids, text_ids, similarity = read_predictions(board.artifact_file(record.predictions))
        assert image_ids == dataset.split_ids("test", partition=record.identity.partition)
        texts = list(dataset.records.loc[image_ids, "text"]) if name == "mimic" else text_pool()[1]
        assert similarity.shape == (len(image_ids), len(text_ids)) == (len(image_ids), len(texts))
        np.testing.assert_allclose(similarity, expected_similarity(loaded, dataset, image_ids, texts, input_size), atol=1e-5)
        assert record.config["geometry"]["encoder_input_size"] == input_size
        # the side the dry run times the encoder at: transformers' CLIP's 24, not its own 224
        assert get_task("retrieval").encoder_input_size(loaded, dataset.manifest.image_size, "similarity") == input_size
        scored = scorer("retrieval").score_files(board.artifact_file(record.predictions), board.artifact_file(record.targets),
                                                 name, BootstrapOptions(n_resamples=200, seed=0))
        assert {key: value.value for key, value in record.metrics.items()} == {
            key: value.value for key, value in scored.metric_values().items()}


def test_the_overlap_rule_marks_a_model_that_read_the_mimic_test_split_and_the_notes_say_why(tiny_mgca: Path,
                                                                                                prepared: Path) -> None:
    from tasks.retrieval.adapter import pretraining_notes

    protocol = BoardProtocol.read(DEMO_BOARD)
    assert protocol.overlaps(["mimic-cxr"], "mimic") == [] and protocol.overlaps(["mimic-cxr-demo"], "mimic") == []
    assert protocol.overlaps(["MIMIC-CXR", "mimic-cxr:test"], "mimic") == ["mimic-cxr-test"]
    assert protocol.overlaps(["mimic-cxr-test"], "chexpert") == []  # other test sets are not MIMIC-CXR's
    # MGCA's released checkpoints were validated and selected on validate + test merged (PROTOCOL.md 11.1)
    assert protocol.overlaps(BACKBONES.get("mgca_vit").pretraining_data, "mimic") == ["mimic-cxr-test"]
    dataset = PreparedDataset(prepared / "mimic")
    marked = build_backbone(user_backbone_spec("t", "resnet18", pretraining_data=("mimic-cxr", "mimic-cxr-test")),
                            checkpoint=tiny_mgca)
    (note,) = pretraining_notes(marked, dataset)
    assert note.startswith("pretraining data declared ['mimic-cxr', 'mimic-cxr-test']. Overlap rule")
    assert "declares 'mimic-cxr-test' and the board marks its cells" in note and "never read the test split" in note
    # the same weights trained on other pairs: the record says it cannot be checked, and the mark rests on the words
    other = prepared.parent / "other"
    generate(other / "raw", ["mimic"], images=40, size=64, seed=2, scorable=False)
    assert cli_main(["prepare", "mimic", "--raw", str(other / "raw" / "mimic"), "--out", str(other / "prepared"),
                     "--image-size", "32", "--workers", "1"]) == 0
    (note,) = pretraining_notes(marked, PreparedDataset(other / "prepared" / "mimic"))
    assert "was pretrained on other pairs than this prepared dataset's train and val splits" in note
    (note,) = pretraining_notes(build_backbone("random_resnet18"), dataset)
    assert note.startswith("pretraining data declared none.") and note.endswith("the mark rests on the declaration")


def test_one_frontal_image_per_study_pa_first_and_reports_of_the_same_words_share_a_group() -> None:
    from tasks.retrieval.adapter import one_image_per_study, report_groups

    ids = ["d1", "d2", "d3", "d4", "d5", "d6"]
    studies = ["s2", "s1", "s2", "s3", "s1", "s3"]
    views = ["AP", "AP", "PA", "AP", "AP", "AP"]
    # s2: its PA image d3 over the earlier AP d1; s1: first AP d2; s3: first AP d4; in split order
    assert one_image_per_study(ids, studies, views, "records.csv") == [1, 2, 3]
    with pytest.raises(DataError, match="test image 'd1' has view 'LATERAL'"):
        one_image_per_study(ids, studies, ["LATERAL", *views[1:]], "records.csv")
    texts = ["No acute process.", "Small effusion.", "no acute  process", "NO ACUTE PROCESS!"]
    assert report_groups(["s9", "s3", "s5", "s1"], texts) == ["s1", "s3", "s1", "s1"]


def test_retrieval_refuses_bad_5x200_labels_a_label_fraction_and_an_epoch_budget(tiny_mgca: Path, prepared: Path,
                                                                                  tmp_path: Path) -> None:
    from tasks.retrieval.adapter import retrieval
    from tasks.retrieval.protocol import PROTOCOL, with_overrides

    loaded = build_backbone(user_backbone_spec("tiny_mgca", "resnet18"), checkpoint=tiny_mgca)
    with pytest.raises(ValueError, match="its only label fraction is 100, not 10"):
        retrieval(loaded, PreparedDataset(prepared / "mimic"), 10, "direct", tmp_path, PROTOCOL)
    with pytest.raises(ValueError, match="max_epochs must be 0, not 3"):
        with_overrides(max_epochs=3)
    broken = write_holdout(tmp_path / "broken")
    records = pd.read_csv(broken / "records.csv")
    records.loc[3, "Atelectasis"] = 1  # image 3 is an Edema image: now it has two findings
    records.to_csv(broken / "records.csv", index=False)
    with pytest.raises(DataError, match=r"5x200 image 'patient00003_study1_view1_frontal' has labels \[1.0, 0.0, 0.0, 1.0, 0.0\]"):
        retrieval(loaded, PreparedDataset(broken), 100, "direct", tmp_path / "work", PROTOCOL)


FINDING_WORDS = {"Atelectasis": r"atelecta|collapse", "Cardiomegaly": r"cardiomegaly|heart|cardiac", "Consolidation": r"consolidat",
                 "Edema": r"edema|congestion|kerley", "Pleural Effusion": r"effusion|costophrenic"}


def test_the_text_pool_has_its_findings_sentences_and_no_other_finding_s_words() -> None:
    assert tuple(TEXTS) == COMPETITION_TASKS
    ids, texts, groups = text_pool()
    assert len(set(ids)) == len(ids) == len(set(texts)) == TEXTS_PER_CLASS * len(COMPETITION_TASKS)
    for name, sentences in TEXTS.items():
        assert len(sentences) == TEXTS_PER_CLASS >= 10, name
        for sentence in sentences:
            assert re.search(FINDING_WORDS[name], sentence.lower()), (name, sentence)
            others = [other for other, words in FINDING_WORDS.items() if other != name and re.search(words, sentence.lower())]
            assert not others and not re.search(r"opacit|pneumon", sentence.lower()), (name, sentence, others)
