"""Detection training end to end on demo data: cached = paper, a frozen encoder, resume, files that re-score."""

from __future__ import annotations

import json

import pytest
import torch
from mmengine.hooks import Hook

from benchmark.backbones import build_backbone
from benchmark.cli import main
from benchmark.scoring.detection import read_predictions, read_targets
from tasks.detection.adapter import run_detection
from tasks.detection.protocol import with_overrides

TINY = with_overrides(batch_size=2, max_epochs=1, eval_batch_size=16, encode_batch_size=16)  # rsna 10 %: 7 images, 3 iterations
# A lighter Faster R-CNN for CPU tests: fewer sampled RoIs and proposals.
LIGHT_RCNN = {"model.train_cfg.rcnn.sampler.num": 32, "model.train_cfg.rpn_proposal.max_per_img": 100,
              "model.test_cfg.rpn.max_per_img": 100}


class LossWatcher(Hook):
    """Every training iteration's total loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(outputs["loss"].item())


@pytest.fixture(scope="module")
def runs(make_cell, resnet, tmp_path_factory):
    """The same YOLOv3 cell in both modes; the paper run's encoder state before training."""
    out = {}
    for mode in ("paper", "cached"):
        watcher = LossWatcher()
        before = {key: value.clone() for key, value in resnet.model.state_dict().items()}
        cell = make_cell(resnet, tmp_path_factory.mktemp(mode), mode=mode)
        out[mode] = (cell, run_detection(cell, TINY, hooks=[watcher]), watcher.losses, before)
    return out


def test_cached_and_paper_modes_give_the_same_first_losses(runs):
    paper, cached = runs["paper"][2], runs["cached"][2]
    assert len(paper) == len(cached) == 3
    assert cached == pytest.approx(paper, rel=1e-4)  # float16 maps against float32 maps
    assert len(set(paper)) == 3  # the head learns: not one loss repeated


def test_training_leaves_the_frozen_encoder_untouched(runs):
    cell, _, _, before = runs["paper"]  # the encoder ran in every step
    after = cell.backbone.model.state_dict()
    assert any("running_mean" in key for key in after)
    for key, value in before.items():
        assert torch.equal(after[key], value), key  # weights and BatchNorm statistics (B6)
    assert not cell.backbone.model.training


def test_result_files_are_coco_in_original_pixels_and_re_score(runs, capsys):
    cell, result, _, _ = runs["cached"]
    truth = read_targets(result.targets_file)
    detections = read_predictions(result.predictions_file, truth)
    sizes = {image["id"]: (image["width"], image["height"]) for image in truth.data["images"]}
    assert detections and all(d["score"] >= 0.001 for d in detections)
    assert all(d["bbox"][0] + d["bbox"][2] <= sizes[d["image_id"]][0] + 1e-6 for d in detections)
    per_image = {}
    for d in detections:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    assert max(per_image.values()) <= 100
    assert len(truth.data["images"]) == len(cell.dataset.split_ids("test", partition="detection"))
    assert set(result.split_fingerprints) == {"train", "val", "test"}
    assert result.config["head"] == "yolov3" and result.config["mode"] == "cached" and result.config["cache"]["dtype"] == "float16"
    assert result.training["best_epoch"] == 1 and len(result.training["history"]) == 1
    assert (cell.work_dir / "history.json").is_file() and (cell.work_dir / "epoch_1.pth").is_file()
    assert main(["score", "detection", "--predictions", str(result.predictions_file), "--targets", str(result.targets_file),
                 "--dataset", "rsna", "--n-resamples", "20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["metrics"]) == {"map", "map_mgca", "map_coco", "ap50"}


def test_an_interrupted_cell_resumes_after_its_last_epoch(make_cell, resnet, tmp_path):
    cell = make_cell(resnet, tmp_path / "work", dataset="object_cxr")  # 10 %: 8 images, 4 iterations
    first = run_detection(cell, TINY)
    resumed = run_detection(cell, with_overrides(**{**TINY.__dict__, "max_epochs": 2}))
    assert (first.training["epochs_run"], resumed.training["resumed_from_epoch"], resumed.training["epochs_run"]) == (1, 1, 2)
    assert [item["epoch"] for item in resumed.training["history"]] == [1, 2]
    again = run_detection(cell, with_overrides(**{**TINY.__dict__, "max_epochs": 2}))
    assert (again.training["resumed_from_epoch"], again.training["epochs_run"]) == (2, 2)  # finished: no training
    assert len(again.training["history"]) == 2


def test_faster_rcnn_on_a_vit_runs_end_to_end(make_cell, vit, tmp_path):
    cell = make_cell(vit, tmp_path / "work", head="faster_rcnn", dataset="object_cxr")
    result = run_detection(cell, TINY, options=LIGHT_RCNN)
    truth = read_targets(result.targets_file)
    assert read_predictions(result.predictions_file, truth) is not None
    assert result.config["head_config"]["roi_head"]["bbox_head"]["num_classes"] == 1
    assert result.config["config_options"] == LIGHT_RCNN
