"""Segmentation task: configs, heads, data, a trained cell (files, frozen encoder, checkpoints, resume), cached mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from benchmark.backbones import build_backbone
from benchmark.cli import main as cli_main
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.heads.outcome import read_history
from benchmark.heads.stopping import Selection
from benchmark.scoring import scorer
from benchmark.scoring.bootstrap import BootstrapOptions
from tasks.registry import TaskCell, get_task
from tasks.segmentation.adapter import build_model, run_cell, training_ids
from tasks.segmentation.data import EpochSeededSampler, SegmentationImages
from tasks.segmentation.features import cached_levels
from tasks.segmentation.models import HeadError, encoder_outputs
from tasks.segmentation.training import selection
from tasks.segmentation.protocol import (
    CONFIG_DIR,
    HEAD_CONFIGS,
    HYPERPARAMETERS_FILE,
    ConfigError,
    config_options,
    load_config,
    parse_overrides,
    resolve_geometry,
)

TINY = {"train_cfg.max_epochs": 2, "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 4}
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def resnet():
    return build_backbone("random_resnet18")


@pytest.fixture(scope="module")
def vit():
    return build_backbone("random_vit_tiny")


def make_cell(backbone, data: Path, work: Path, head="unet", mode="paper", dataset="siim", fraction=100, seed=0) -> TaskCell:
    info = get_task("segmentation")
    return TaskCell(backbone=backbone, dataset=PreparedDataset(data / dataset), partition=info.dataset(dataset).partition,
                    head=head, fraction=fraction, draw=0, seed=seed, mode=mode, work_dir=work,
                    cache_dir=work.parent / "cache", device="cpu", progress=False)


def encoder_state(backbone) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in backbone.model.state_dict().items()}


# ------------------------------------------------------------------------------ declaration and configs

def test_registration_declares_both_datasets_heads_and_modes():
    info = get_task("segmentation")
    assert info.datasets["siim"].partition == "segmentation" and info.datasets["rsna"].partition == "detection"
    assert {info.headline(name).name for name in info.datasets} == {"dice"}
    assert info.default_head("resnet") == "unet" and info.default_head("vit") == "setr"
    assert info.default_mode in info.modes and info.large_artifacts and info.scorer == "segmentation"


def test_importing_the_task_package_does_not_import_mmseg():
    code = "import sys, tasks.segmentation; print('mmseg' in sys.modules or 'mmengine' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_every_config_file_parses_and_every_head_resolves_for_every_dataset_and_fraction():
    files = {path.name: Config.fromfile(path) for path in CONFIG_DIR.glob("*.py")}
    assert set(HEAD_CONFIGS.values()) <= set(files)
    table = files[HYPERPARAMETERS_FILE.name].hyperparameters
    for head in HEAD_CONFIGS:
        for dataset, rows in table.items():
            for fraction in rows:
                cfg = load_config(head, dataset, int(fraction))
                assert cfg.optim_wrapper.optimizer.lr == 5e-4 and cfg.optim_wrapper.optimizer.weight_decay == 0.05
                assert cfg.train_dataloader.batch_size == {"siim": 8, "rsna": 16}[dataset]
                assert cfg.train_cfg.max_epochs == 50


def test_overrides_apply_last_and_unknown_keys_fail():
    cfg = load_config("setr", "rsna", 1, parse_overrides(["optim_wrapper.optimizer.lr=1e-3", "train_cfg.max_epochs=3"]))
    assert cfg.optim_wrapper.optimizer.lr == 1e-3 and cfg.train_cfg.max_epochs == 3
    with pytest.raises(ConfigError, match="no setting"):
        load_config("unet", "siim", 100, {"optimiser.lr": 1.0})
    with pytest.raises(ConfigError, match="unknown segmentation head"):
        load_config("fpn", "siim", 100)
    with pytest.raises(ConfigError, match="no hyperparameters for covidx"):
        load_config("unet", "covidx", 100)


def test_a_boards_overrides_become_the_config_keys_they_name():
    options = config_options({"max_epochs": 3, "batch_size": 4, "eval_batch_size": 2})
    assert options == {"train_cfg.max_epochs": 3, "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 2}
    cfg = load_config("unet", "siim", 1, options)
    assert (cfg.train_cfg.max_epochs, cfg.train_dataloader.batch_size, cfg.val_dataloader.batch_size) == (3, 4, 2)
    with pytest.raises(ConfigError, match=r"\['train_cfg.max_epochs'\] unknown to segmentation"):
        config_options({"train_cfg.max_epochs": 3})


def test_geometry_keeps_224_and_shrinks_small_caches_to_the_head_stride():
    assert resolve_geometry(224, 256, "unet").input_size == 224
    assert resolve_geometry(224, 64, "setr").input_size == 64
    shrunk = resolve_geometry(224, 80, "unet")
    assert shrunk.input_size == 64 and len(shrunk.notes) == 2
    with pytest.raises(ConfigError, match="too small"):
        resolve_geometry(224, 16, "unet")


# ------------------------------------------------------------------------------ heads

def test_unet_reads_every_stage_and_outputs_the_input_size(resnet):
    cfg = load_config("unet", "siim", 100)
    model = build_model(cfg, resnet, 64, "paper", CPU).eval()
    assert [block.convs[3].out_channels for block in model.decode_head.blocks] == [256, 128, 64, 32, 16]
    stages = encoder_outputs(resnet, torch.zeros(2, 3, 64, 64), "stages")
    assert [tuple(level.shape[-2:]) for level in stages] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    with torch.no_grad():
        assert model.decode_head([level for level in stages]).shape == (2, 1, 64, 64)
        for index in range(len(stages)):  # a NaN in any stage reaches the output: every stage is a skip
            broken = [level.clone() for level in stages]
            broken[index][:] = float("nan")
            assert torch.isnan(model.decode_head(broken)).any()


def test_setr_head_has_the_reference_layout(vit):
    cfg = load_config("setr", "siim", 100)
    model = build_model(cfg, vit, 64, "paper", CPU).eval()
    head = model.decode_head
    assert isinstance(head.norm, torch.nn.Linear) and head.norm.in_features == 192
    assert [stage[0].out_channels for stage in head.up_convs] == [512, 256, 128, 64]
    assert head.conv_seg.kernel_size == (3, 3) and head.conv_seg.out_channels == 1
    with torch.no_grad():
        assert model._forward(torch.zeros(2, 3, 64, 64)).shape == (2, 1, 64, 64)


def test_unet_on_a_vit_is_refused_with_the_alternative(vit):
    with pytest.raises(HeadError, match="use the setr head"):
        encoder_outputs(vit, torch.zeros(1, 3, 32, 32), "stages")


# ------------------------------------------------------------------------------ data

def test_augmentation_is_a_function_of_seed_epoch_and_index(segmentation_data):
    dataset = PreparedDataset(segmentation_data / "siim")
    ids = dataset.split_ids("train", partition="segmentation")[:4]
    always = {"type": "ShiftScaleRotate", "shift_limit": 0.0, "scale_limit": 0.1, "rotate_limit": 10, "p": 1.0, "border_mode": 0}
    images = SegmentationImages(dataset, ids, 32, always, seed=3)
    first, again, other_epoch = images[(1, 0)], images[(1, 0)], images[(1, 1)]
    assert torch.equal(first["inputs"], again["inputs"])
    assert not torch.equal(first["inputs"], other_epoch["inputs"])
    assert first["inputs"].shape == (3, 32, 32) and first["inputs"].dtype == torch.uint8
    sampler = EpochSeededSampler(images, shuffle=True, seed=0)
    sampler.set_epoch(5)
    keys = list(sampler)
    assert sorted(index for index, _ in keys) == [0, 1, 2, 3] and {epoch for _, epoch in keys} == {5}


def test_a_fraction_without_training_images_fails_clearly(segmentation_data, resnet, tmp_path):
    with pytest.raises(DataError, match="no image at 1%"):
        run_cell(make_cell(resnet, segmentation_data, tmp_path / "cell", fraction=1), TINY)


# ------------------------------------------------------------------------------ a trained cell

@pytest.fixture(scope="module")
def unet_cell(segmentation_data, resnet, tmp_path_factory):
    work = tmp_path_factory.mktemp("unet") / "cell"
    before = encoder_state(resnet)
    result = run_cell(make_cell(resnet, segmentation_data, work, fraction=10), TINY)  # 3 training images
    return work, result, before


def test_files_hold_every_test_image_at_the_input_size(unet_cell, segmentation_data):
    _, result, _ = unet_cell
    test_ids = PreparedDataset(segmentation_data / "siim").split_ids("test", partition="segmentation")
    with np.load(result.predictions_file) as predictions, np.load(result.targets_file) as targets:
        assert predictions["ids"].tolist() == targets["ids"].tolist() == test_ids
        assert predictions["probs"].shape == targets["masks"].shape == (len(test_ids), 32, 32)
        assert predictions["probs"].dtype == np.uint8
    assert result.config["geometry"]["input_size"] == 32
    assert set(result.split_fingerprints) == {"train", "val", "test"}


def test_the_task_declares_the_side_the_cell_fed_the_encoder(unet_cell, resnet):
    """The dry run times the encoder at the task's declared side: the cell's input, 32 px, not the backbone's 224."""
    _, result, _ = unet_cell
    assert resnet.preprocessing.input_size == 224
    assert get_task("segmentation").encoder_input_size(resnet, 32, "unet") == result.config["geometry"]["input_size"] == 32


def test_frozen_encoder_weights_and_batchnorm_statistics_are_unchanged(unet_cell, resnet):
    _, _, before = unet_cell
    after = encoder_state(resnet)
    assert any("running_mean" in key for key in after)
    assert all(torch.equal(before[key], after[key]) for key in before)
    assert not resnet.model.training


def test_selection_by_validation_loss_with_dice_recorded(unet_cell):
    work, result, _ = unet_cell
    history = result.training.history
    assert [record.epoch for record in history] == [1, 2] and result.training.monitor == "loss"
    assert result.training.best_epoch == history[int(np.argmin([record.validation["loss"] for record in history]))].epoch
    assert all(0 <= record.validation["dice"] <= 1 and record.iterations == 1 for record in history)
    assert read_history(work / "history.json") == history
    assert result.timings["seconds_per_iteration"] > 0


def test_the_config_selects_and_stops_as_the_reference():
    # Lightning's EarlyStopping(val_loss, patience=10, min_delta=0, check_finite=True): the rule is benchmark/heads/stopping.py's
    cfg = load_config("unet", "siim", 100)
    assert selection(cfg) == Selection(monitor="loss", rule="less", patience=10, min_delta=0.0, stop_on_non_finite=True)
    cfg.merge_from_dict({"selection.patience": 3})
    assert selection(cfg).patience == 3


def test_checkpoints_hold_tensors_and_plain_python_only(unet_cell):
    work, _, _ = unet_cell
    checkpoints = sorted(work.glob("*.pth"))
    assert {path.name.split("_")[0] for path in checkpoints} == {"best", "epoch"}
    for path in checkpoints:
        assert torch.serialization.get_unsafe_globals_in_checkpoint(path) == []
        state = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
        assert state and not any(key.startswith("backbone.") for key in state)  # the decoder only


def test_score_verb_reproduces_the_scorer_on_the_saved_files(unet_cell, capsys):
    _, result, _ = unet_cell
    argv = ["score", "segmentation", "--predictions", str(result.predictions_file), "--targets", str(result.targets_file),
            "--dataset", "siim", "--n-resamples", "100"]
    assert cli_main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    expected = scorer("segmentation").score_files(result.predictions_file, result.targets_file, "siim", BootstrapOptions(n_resamples=100))
    assert printed["metrics"] == json.loads(json.dumps(expected.to_dict()["metrics"]))
    assert printed["n_images"] == len(np.load(result.targets_file)["ids"])


def test_a_resumed_cell_continues_where_it_stopped_and_matches_an_uninterrupted_one(segmentation_data, resnet, tmp_path):
    # 10 %: three training images, one step per epoch
    first = run_cell(make_cell(resnet, segmentation_data, tmp_path / "resumed", fraction=10), {**TINY, "train_cfg.max_epochs": 1})
    resumed = run_cell(make_cell(resnet, segmentation_data, tmp_path / "resumed", fraction=10), TINY)
    assert [record.epoch for record in resumed.training.history] == [1, 2] and resumed.training.resumed_from_epoch == 1
    assert resumed.training.history[:1] == first.training.history  # not re-run: same entry, same timings
    straight = run_cell(make_cell(resnet, segmentation_data, tmp_path / "straight", fraction=10), TINY)
    for resumed_epoch, straight_epoch in zip(resumed.training.history, straight.training.history, strict=True):
        assert resumed_epoch.train_loss == pytest.approx(straight_epoch.train_loss, abs=1e-5)
        assert resumed_epoch.validation["loss"] == pytest.approx(straight_epoch.validation["loss"], abs=1e-5)


def test_cached_mode_stores_tokens_once_and_trains_setr(segmentation_data, vit, tmp_path):
    cell = make_cell(vit, segmentation_data, tmp_path / "cell", head="setr", mode="cached", dataset="rsna", fraction=10)
    result = run_cell(cell, {**TINY, "train_cfg.max_epochs": 1})
    store = result.config["feature_store"]
    assert set(store) == {"train", "val", "test"} and not any(entry["cache_hit"] for entry in store.values())
    assert store["train"]["bytes_per_image"] == 192 * 2 * 2 * 2  # ViT-Tiny tokens on a 2x2 grid, float16
    with np.load(result.predictions_file) as predictions:
        assert predictions["probs"].shape[1:] == (32, 32)
    images = SegmentationImages(cell.dataset, cell.dataset.split_ids("val", partition="detection"), 32)
    levels, again = cached_levels(cell.cache_dir, vit, images, "tokens", 8, CPU)
    assert again["cache_hit"] and again["folder"] == store["val"]["folder"]
    expected = encoder_outputs(vit, (images[0]["inputs"][None].float() - 127.5) / 127.5, "tokens")[0][0]
    assert torch.allclose(torch.from_numpy(np.array(levels[0][0])).float(), expected, atol=1e-2)  # float16 store


def test_the_siim_sampler_balances_the_full_training_split(segmentation_data):
    dataset = PreparedDataset(segmentation_data / "siim")
    ids, notes = training_ids(dataset, "segmentation", 100, 0, seed=0)
    positive = set(dataset.records.index[dataset.records["positive"].astype(str) == "1"])
    assert sum(item in positive for item in ids) == sum(item not in positive for item in ids) > 0
    assert set(ids) <= set(dataset.split_ids("train", partition="segmentation")) and notes
    assert training_ids(dataset, "segmentation", 100, 0, seed=0)[0] == ids != training_ids(dataset, "segmentation", 100, 0, seed=1)[0]
    assert training_ids(PreparedDataset(segmentation_data / "rsna"), "detection", 100, 0, seed=0)[1] == []  # no sampler
