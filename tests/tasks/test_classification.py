"""Linear-probe task: geometry, feature cache, frozen encoder, determinism, files that re-score."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from benchmark.backbones import BACKBONES, MGCA_PREPROCESSING, BackboneSpec, Preprocessing, build_backbone, user_backbone_spec
from benchmark.cli import main
from benchmark.data.datasets.chexpert import COMPETITION_TASKS
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.scoring.classification import SCHEMES, compute_metrics, read_predictions, read_targets
from tasks.classification.adapter import linear_probe
from benchmark.heads.features import ENTRY_FILE, EncodeStats, FeatureCacheError, entry_folder, feature_key
from tasks.classification.features import cached_features, encode_batch
from tasks.classification.protocol import PROTOCOL, dataset_probe, resolve_geometry, with_overrides
from tasks.classification.synthetic import write_synthetic_prepared
from tasks.classification.training import build_head, shuffled_batches, train_head
from tasks.classification.transforms import eval_transform, eval_transform_descriptor, to_encoder_input
from tasks.registry import get_task

COUNTS = {"train": 20, "val": 8, "test": 10}
TINY = with_overrides(batch_size=8, max_epochs=3, encode_batch_size=8)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def backbone():
    return build_backbone("random_vit_tiny")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepared")
    for dataset in SCHEMES.names():
        write_synthetic_prepared(root, dataset, COUNTS, image_size=64)
    return root


def run(backbone, data_root, tmp_path, dataset="chexpert", mode="cached", seed=0, protocol=TINY, name="run"):
    return linear_probe(backbone, PreparedDataset(data_root / dataset), 100, 0, seed, mode,
                        tmp_path / name, tmp_path / "cache", protocol=protocol, device="cpu")


# --------------------------------------------------------------------------- protocol, registry

def test_each_dataset_probe_is_read_from_its_one_declaration():
    # the values the separate DATASET_PROBES registry held before the scheme became the one declaration
    assert [tuple(dataclasses.asdict(dataset_probe(name)).values()) for name in ("chexpert", "rsna", "covidx")] == [
        ("chexpert", COMPETITION_TASKS, "bce", "moco2"), ("rsna", ("target",), "bce", "random_crop"),
        ("covidx", ("label",), "cross_entropy", "random_crop")]


def test_registry_entry_covers_every_dataset_probe_and_scheme():
    info = get_task("classification")
    assert info.adapter == "tasks.classification.adapter:run_classification"
    assert set(info.datasets) == set(SCHEMES.names())
    assert {name: info.headline(name).name for name in info.datasets} == {name: SCHEMES.get(name).primary for name in SCHEMES}
    assert info.modes[0] == "cached" and "paper" in info.modes


def test_reference_protocol_values():
    assert (PROTOCOL.lr, PROTOCOL.betas, PROTOCOL.weight_decay) == (5e-4, (0.9, 0.999), 1e-6)
    assert (PROTOCOL.batch_size, PROTOCOL.max_epochs, PROTOCOL.early_stopping_patience) == (48, 50, 10)
    assert PROTOCOL.val_drop_last is False


@pytest.mark.parametrize(("cache", "patch", "input_size", "fixed", "crop", "encoder_input"), [
    (256, 16, 224, False, 224, 224),  # the reference
    (256, None, 299, False, 224, 299),  # ResNet-50 linear probe (defect B20)
    (128, 16, 224, False, 112, 112),  # demo images: crop scaled
    (64, 16, 224, False, 48, 48),  # 56 is no multiple of 16: rounded down, and noted
    (64, None, 224, False, 56, 56),
    (64, None, 512, False, 56, 128),  # torchxrayvision's ResNet-50: its 512 px at the reference crop, same ratio
    (64, 14, 518, False, 56, 126),  # RAD-DINO-like: 56 * 518 / 224 = 129.5, rounded down to 9 patches of 14
    (64, 8, 32, True, 56, 32),  # a fixed-size model (open_clip) gets exactly its size
])
def test_geometry(cache, patch, input_size, fixed, crop, encoder_input):
    geometry = resolve_geometry(cache, patch, input_size, fixed)
    assert (geometry.crop_size, geometry.encoder_input_size) == (crop, encoder_input)
    assert bool(geometry.notes) == (cache != 256 or input_size != 224)


def test_resnet_probe_input_is_upsampled_with_aligned_corners():
    geometry = resolve_geometry(256, None, 299)
    batch = torch.rand(1, 3, 224, 224)
    upsampled = to_encoder_input(batch, geometry)
    assert upsampled.shape[-2:] == (299, 299)
    assert torch.equal(upsampled[..., 0, 0], batch[..., 0, 0]) and torch.equal(upsampled[..., -1, -1], batch[..., -1, -1])


def test_train_batches_drop_the_last_partial_batch_unless_smaller_than_one_batch():
    generator = torch.Generator().manual_seed(0)
    assert [len(rows) for rows in shuffled_batches(20, 8, True, generator)] == [8, 8]
    assert [len(rows) for rows in shuffled_batches(20, 8, False, generator)] == [8, 8, 4]
    assert [len(rows) for rows in shuffled_batches(5, 8, True, generator)] == [5]


def test_early_stopping_keeps_the_best_epoch():
    features, targets = torch.randn(12, 4), torch.randint(0, 2, (12, 1))

    def batches(generator):
        yield features, targets

    frozen = dataclasses.replace(TINY, lr=0.0, max_epochs=50, early_stopping_patience=3)
    result = train_head(build_head(4, 1, 0), batches, features, targets, "bce", frozen, torch.Generator().manual_seed(0))
    # no epoch improves on the first: stop after 1 + patience epochs, keep epoch 1
    outcome = result.outcome
    assert (outcome.best_epoch, outcome.epochs_run, outcome.stopped_early, outcome.monitor) == (1, 4, True, "loss")
    assert [record.epoch for record in outcome.history] == [1, 2, 3, 4]
    assert all(record.iterations == 1 and set(record.validation) == {"loss"} for record in outcome.history)
    assert len({record.validation["loss"] for record in outcome.history}) == 1  # lr 0: every epoch ties the first


# ------------------------------------------------------------------------------ feature cache

def eval_setup(backbone, dataset):
    geometry = resolve_geometry(dataset.manifest.image_size, 16)
    transform = eval_transform(backbone.preprocessing, geometry)
    return eval_transform_descriptor(backbone.preprocessing, geometry), lambda images: to_encoder_input(transform(images), geometry)


def test_cached_and_recomputed_features_are_identical(backbone, data_root, tmp_path):
    dataset = PreparedDataset(data_root / "rsna")
    ids = dataset.split_ids("val", partition="classification")
    descriptor, prepare = eval_setup(backbone, dataset)
    stats = EncodeStats()
    first, hit = cached_features(tmp_path, backbone, dataset, ids, descriptor, prepare, 4, CPU, stats, "val")
    assert not hit and stats.images == len(ids)
    again, hit = cached_features(tmp_path, backbone, dataset, ids, descriptor, prepare, 4, CPU, stats, "val")
    assert hit and stats.images == len(ids)  # nothing re-encoded
    direct = torch.cat([encode_batch(backbone, dataset.images(ids[start:start + 4]), prepare, CPU) for start in range(0, len(ids), 4)])
    assert torch.equal(first, again) and torch.equal(first, direct)
    key = feature_key(backbone, dataset, ids, inputs=descriptor, features="global", dtype="float32")
    entry = json.loads((entry_folder(tmp_path, key) / ENTRY_FILE).read_text())
    assert entry["description"]["weights_sha256"] == backbone.weights_sha256 and entry["shapes"] == [list(first.shape)]
    assert [path.name for path in tmp_path.iterdir()] == [entry_folder(tmp_path, key).name]  # no temporary left


def test_a_cache_from_another_checkpoint_is_never_reused(backbone, data_root, tmp_path):
    other = build_backbone(dataclasses.replace(BACKBONES.get("random_vit_tiny"), seed=1))
    assert other.weights_sha256 != backbone.weights_sha256
    dataset = PreparedDataset(data_root / "rsna")
    ids = dataset.split_ids("test", partition="classification")
    descriptor, prepare = eval_setup(backbone, dataset)
    mine, _ = cached_features(tmp_path, backbone, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")
    theirs, hit = cached_features(tmp_path, other, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")
    assert not hit and not torch.equal(mine, theirs)
    assert len(list(tmp_path.glob("global-*/level0.npy"))) == 2


def test_two_encoders_of_one_checkpoint_file_never_share_a_cache_entry(backbone, data_root, tmp_path):
    # A MoCo-style file holds a query and a key encoder: same file hash, different weights.
    other = build_backbone(dataclasses.replace(BACKBONES.get("random_vit_tiny"), seed=1))
    state = {f"encoder_q.{k}": v for k, v in backbone.model.model.state_dict().items()}
    state |= {f"encoder_k.{k}": v for k, v in other.model.model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "moco.ckpt")
    query, key = (build_backbone(user_backbone_spec("moco", "vit_tiny_patch16_224", prefix), tmp_path / "moco.ckpt")
                  for prefix in ("encoder_q.", "encoder_k."))
    assert query.load_report.sha256 == key.load_report.sha256  # one file
    assert query.weights_sha256 != key.weights_sha256  # two encoders
    dataset = PreparedDataset(data_root / "rsna")
    ids = dataset.split_ids("test", partition="classification")
    descriptor, prepare = eval_setup(backbone, dataset)
    cache = tmp_path / "cache"
    from_query, _ = cached_features(cache, query, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")
    from_key, hit = cached_features(cache, key, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")
    assert not hit and not torch.equal(from_query, from_key)


def test_a_sidecar_that_does_not_match_its_key_is_an_error(backbone, data_root, tmp_path):
    dataset = PreparedDataset(data_root / "rsna")
    ids = dataset.split_ids("test", partition="classification")
    descriptor, prepare = eval_setup(backbone, dataset)
    cached_features(tmp_path, backbone, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")
    (sidecar,) = tmp_path.glob(f"*/{ENTRY_FILE}")
    content = json.loads(sidecar.read_text())
    content["description"]["weights_sha256"] = "0" * 64
    sidecar.write_text(json.dumps(content))
    with pytest.raises(FeatureCacheError, match="delete"):
        cached_features(tmp_path, backbone, dataset, ids, descriptor, prepare, 4, CPU, EncodeStats(), "test")


# ------------------------------------------------------------------------------------ the run

@pytest.mark.parametrize("mode", ["cached", "paper"])
def test_encoder_weights_are_unchanged_by_training(backbone, data_root, tmp_path, mode):
    before = {key: value.clone() for key, value in backbone.model.state_dict().items()}
    run(backbone, data_root, tmp_path, mode=mode)
    after = backbone.model.state_dict()
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not backbone.model.training


@pytest.mark.parametrize("mode", ["cached", "paper"])
def test_same_seed_same_metrics(backbone, data_root, tmp_path, mode):
    first = run(backbone, data_root, tmp_path, mode=mode, name="first")
    second = run(backbone, data_root, tmp_path, mode=mode, name="second")
    assert (tmp_path / "first/predictions.csv").read_text() == (tmp_path / "second/predictions.csv").read_text()
    without_seconds = [[(record.epoch, record.iterations, record.train_loss, record.validation) for record in run.training.history]
                       for run in (first, second)]
    assert without_seconds[0] == without_seconds[1] and first.training.best_epoch == second.training.best_epoch
    assert ("cached features" in first.config["train_augmentation"]) == (mode == "cached")
    assert any("no train-time augmentation" in note for note in first.notes) == (mode == "cached")
    # the cell's identity and the deviations are the runner's and the notes' to record, not the config's
    assert not {"backbone", "weights_sha256", "fraction", "draw", "seed", "mode", "deviations"} & set(first.config)


def test_a_second_cached_run_reads_every_split_from_the_cache(backbone, data_root, tmp_path):
    first = run(backbone, data_root, tmp_path, name="first")
    second = run(backbone, data_root, tmp_path, name="second")
    assert not any(first.config["feature_cache_hits"].values()) and all(second.config["feature_cache_hits"].values())
    assert second.timings["images_encoded"] == 0


def test_a_label_fraction_reads_its_training_features_from_the_whole_split(backbone, data_root, tmp_path):
    whole = run(backbone, data_root, tmp_path, name="whole")
    dataset = PreparedDataset(data_root / "chexpert")
    part = linear_probe(backbone, dataset, 10, 0, 0, "cached", tmp_path / "part", tmp_path / "cache", protocol=TINY, device="cpu")
    assert not whole.config["feature_cache_hits"]["train"] and part.config["feature_cache_hits"]["train"]
    assert part.timings["images_encoded"] == 0


@pytest.mark.parametrize("dataset", SCHEMES.names())
def test_every_dataset_writes_files_that_score_to_the_official_metrics(backbone, data_root, tmp_path, capsys, dataset):
    result = run(backbone, data_root, tmp_path, dataset=dataset)
    scheme = SCHEMES.get(dataset)
    predictions = read_predictions(result.predictions_file, scheme)
    targets = read_targets(result.targets_file, scheme)
    assert len(predictions) == len(targets) == COUNTS["test"]
    assert list(predictions.index) == PreparedDataset(data_root / dataset).split_ids("test", partition="classification")
    assert main(["score", "classification", "--predictions", str(result.predictions_file), "--targets",
                 str(result.targets_file), "--dataset", dataset, "--n-resamples", "20"]) == 0
    scored = json.loads(capsys.readouterr().out)
    direct = compute_metrics(targets.to_numpy(), predictions.loc[targets.index].to_numpy(), scheme)
    assert set(scored["metrics"]) == set(direct)
    for name, entry in scored["metrics"].items():
        assert entry["value"] == pytest.approx(direct[name].value, abs=1e-12, nan_ok=True)
    assert result.config["primary_metric"] == scheme.primary
    assert set(result.split_fingerprints) == {"train", "val", "test"}
    assert result.config["geometry"]["crop_size"] == 48


def test_resnet50_probe_input_follows_the_architecture_not_the_registry_entry(data_root, tmp_path):
    """The same ResNet-50 is probed at B20's size whether it is MGCA's entry or a user checkpoint named resnet50."""
    state = {f"img_encoder_q.model.{k}": v for k, v in build_backbone("random_resnet50").model.model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "resnet_50.ckpt")
    submitted = build_backbone(user_backbone_spec("mine", "resnet50"), tmp_path / "resnet_50.ckpt")
    result = run(submitted, data_root, tmp_path, dataset="rsna")
    geometry = result.config["geometry"]
    assert (geometry["crop_size"], geometry["encoder_input_size"]) == (56, 75)  # 56 * 299 / 224
    assert any("B20" in note for note in geometry["notes"])
    assert tuple(result.config["preprocessing"]["mean"]) == (0.5, 0.5, 0.5)


def test_the_protocols_resnet50_rule_follows_the_architecture_whatever_source_names_it():
    """``--arch resnet50`` and ``--arch torchvision:resnet50 --preprocess protocol`` are one architecture under one
    protocol: the same B20 input and the same encoder input pixels (so the same features); with its own
    preprocessing (``--preprocess model``) torchvision's ResNet-50 takes its own 224 px, i.e. the 56 px crop as it is."""
    from tasks.classification.adapter import _geometry

    short = build_backbone(BackboneSpec(name="short", arch="resnet50", weights="random", description="test"))
    tv = BackboneSpec(name="tv", arch="torchvision:resnet50", weights="random", description="test")
    protocol, own = build_backbone(tv, preprocess="protocol"), build_backbone(tv)
    geometry = {name: _geometry(backbone, 64) for name, backbone in [("short", short), ("protocol", protocol), ("own", own)]}
    assert {name: (g.crop_size, g.encoder_input_size) for name, g in geometry.items()} == \
        {"short": (56, 75), "protocol": (56, 75), "own": (56, 56)}
    assert eval_transform_descriptor(short.preprocessing, geometry["short"]) == \
        eval_transform_descriptor(protocol.preprocessing, geometry["protocol"])
    assert protocol.preprocessing.mode == "protocol" and any("B20" in note for note in geometry["protocol"].notes)


def test_eval_transform_applies_the_backbones_range_channels_and_normalisation():
    """torchxrayvision's: one channel, 0 -> -1024 and 255 -> 1024; MGCA's: three channels, 0 -> -1 and 255 -> 1."""
    images = torch.tensor([[0, 255], [51, 204]], dtype=torch.uint8).repeat(1, 3, 1, 1)
    geometry = resolve_geometry(2, None)
    xrv = Preprocessing(224, 1, (0.0,), (1.0,), value_range=(-1024.0, 1024.0))
    out = eval_transform(xrv, geometry)(images)
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([[-1024.0, 1024.0], [-614.4, 614.4]]), atol=1e-3)
    mgca = eval_transform(MGCA_PREPROCESSING, geometry)(images)
    assert mgca.shape == (1, 3, 2, 2) and torch.allclose(mgca[0, 2], torch.tensor([[-1.0, 1.0], [-0.6, 0.6]]), atol=1e-6)
    assert eval_transform_descriptor(xrv, geometry) != eval_transform_descriptor(MGCA_PREPROCESSING, geometry)


def test_scores_are_probabilities(backbone, data_root, tmp_path):
    result = run(backbone, data_root, tmp_path, dataset="covidx")
    scores = read_predictions(result.predictions_file, SCHEMES.get("covidx")).to_numpy()
    assert np.allclose(scores.sum(1), 1.0) and (scores >= 0).all()


def test_uncertain_labels_left_in_the_records_are_an_error(backbone, data_root, tmp_path):
    copy = tmp_path / "data"
    write_synthetic_prepared(copy, "chexpert", COUNTS, image_size=64)
    records = pd.read_csv(copy / "chexpert/records.csv", dtype={"id": str})
    records.loc[records["split"] == "train", "Edema"] = -1
    records.to_csv(copy / "chexpert/records.csv", index=False)
    with pytest.raises(DataError, match="'Edema' holds"):
        run(backbone, copy, tmp_path)


# --------------------------------------------------------------------------- the task contract

def test_runner_reproduces_the_numbers_of_the_code_before_the_task_contract(tmp_path_factory):
    """Metrics and intervals of three demo cells equal those that commit 71aad95 (record schema 1,
    adapter-computed metrics) stored, to 1e-9: the contract moved code, not numbers. CheXpert's were
    re-measured when demo generator version 2 changed its data (the 5x200 hold-out; the file's source)."""
    from pathlib import Path

    from benchmark.board.store import Board, copy_board_protocol, default_board
    from benchmark.grid import BackboneChoice, GridRequest, run_grid

    expected = json.loads((Path(__file__).parent / "classification_metrics_before_contract.json").read_text())["metrics"]
    root = tmp_path_factory.mktemp("before-after")
    assert main(["demo-data", "--out", str(root / "raw"), "--datasets", "chexpert", "rsna", "covidx",
                 "--images", "240", "--size", "64"]) == 0
    for dataset in expected:
        assert main(["prepare", dataset, "--raw", str(root / "raw" / dataset), "--out", str(root / "data"),
                     "--image-size", "64"]) == 0
    board = copy_board_protocol(Board(default_board(demo=True)), root / "boards" / "b", "b")
    request = GridRequest(backbones=(BackboneChoice("random_resnet18"),), data_dir=root / "data",
                          tasks=("classification",), fractions=(100,), seeds=(0,), work_dir=root / "work",
                          cache_dir=root / "cache", progress=False)
    assert run_grid(board, request).failed == []
    records = {record.identity.dataset: record for record in board.records()}
    assert set(records) == set(expected)
    for dataset, metrics in expected.items():
        assert set(records[dataset].metrics) == set(metrics)
        for name, (value, low, high) in metrics.items():
            got = records[dataset].metrics[name]
            assert got.value == pytest.approx(value, abs=1e-9)
            assert (got.ci_low is None) == (low is None) and (got.ci_high is None) == (high is None)
            if low is not None:
                assert (got.ci_low, got.ci_high) == pytest.approx((low, high), abs=1e-9)
