"""Detection training end to end on demo data: cached = paper, a frozen encoder, resume, files that re-score."""

from __future__ import annotations

import json

import pytest
import torch
from mmengine.hooks import Hook

from benchmark.cli import main
from benchmark.scoring.detection import read_predictions, read_targets
from tasks.detection.adapter import run_detection
from tasks.detection.protocol import with_overrides

# rsna 10 %: 7 images, 3 iterations. A few iterations leave every score below the protocol's 0.001 (YOLOv3:
# objectness x class probability, both near their 0.01 prior), so the tests keep lower ones.
TINY = with_overrides(batch_size=2, max_epochs=1, eval_batch_size=16, encode_batch_size=16, min_score=1e-6)
# Narrower YOLOv3 widths and a lighter Faster R-CNN (fewer sampled RoIs and proposals) for CPU tests.
SMALL_YOLO = {"model.neck.out_channels": [64, 32, 16], "model.bbox_head.in_channels": [64, 32, 16],
              "model.bbox_head.out_channels": [128, 64, 32]}
LIGHT_RCNN = {"model.train_cfg.rcnn.sampler.num": 32, "model.train_cfg.rpn_proposal.max_per_img": 100,
              "model.test_cfg.rpn.max_per_img": 100, "model.neck.out_channels": 32, "model.rpn_head.in_channels": 32,
              "model.rpn_head.feat_channels": 32, "model.roi_head.bbox_roi_extractor.out_channels": 32,
              "model.roi_head.bbox_head.in_channels": 32, "model.roi_head.bbox_head.fc_out_channels": 64}


class LossWatcher(Hook):
    """Every training iteration's total loss."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses.append(outputs["loss"].item())


@pytest.fixture(scope="module")
def runs(make_cell, resnet, tmp_path_factory):
    """The same YOLOv3 cell in paper mode and in cached mode with float16 and float32 maps;
    with the paper run's encoder state before training."""
    out = {}
    for name, mode, dtype in [("paper", "paper", "float16"), ("cached", "cached", "float16"), ("cached32", "cached", "float32")]:
        watcher = LossWatcher()
        before = {key: value.clone() for key, value in resnet.model.state_dict().items()}
        cell = make_cell(resnet, tmp_path_factory.mktemp(name), mode=mode)
        result = run_detection(cell, with_overrides(**{**TINY.__dict__, "cache_dtype": dtype}), options=SMALL_YOLO, hooks=[watcher])
        out[name] = (cell, result, watcher.losses, before)
    return out


def test_cached_and_paper_modes_give_the_same_losses(runs):
    paper, cached, cached32 = (runs[name][2] for name in ("paper", "cached", "cached32"))
    assert len(paper) == len(cached) == len(cached32) == 3
    assert len(set(paper)) == 3  # the head learns: not one loss repeated
    assert cached[0] == pytest.approx(paper[0], rel=1e-4)  # float16 maps: the first loss
    # float32 maps: every loss (float16 rounding flips the sign of tiny gradients, which AdamW's
    # first steps turn into full-size updates, so later float16 losses drift by ~1 %)
    assert cached32 == pytest.approx(paper, rel=1e-6)


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
    assert detections and all(d["score"] >= 1e-6 for d in detections)
    assert all(d["bbox"][0] + d["bbox"][2] <= sizes[d["image_id"]][0] + 1e-6 for d in detections)
    per_image = {}
    for d in detections:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    assert max(per_image.values()) <= 100
    assert len(truth.data["images"]) == len(cell.dataset.split_ids("test", partition="detection"))
    assert set(result.split_fingerprints) == {"train", "val", "test"}
    assert result.config["cache"]["dtype"] == "float16"
    assert not {"head", "mode", "backbone", "weights_sha256", "seed", "deviations"} & set(result.config)  # the runner records them
    assert result.training.best_epoch == 1 and len(result.training.history) == 1
    assert (cell.work_dir / "history.json").is_file() and (cell.work_dir / "epoch_1.pth").is_file()
    for checkpoint in cell.work_dir.glob("*.pth"):  # the resume point and the best epoch's: torch reads them safely
        assert torch.serialization.get_unsafe_globals_in_checkpoint(checkpoint) == [], checkpoint.name
    assert main(["score", "detection", "--predictions", str(result.predictions_file), "--targets", str(result.targets_file),
                 "--dataset", "rsna", "--n-resamples", "20"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["metrics"]) == {"map", "map_mgca", "map_coco", "ap50"}


def test_an_interrupted_cell_resumes_after_its_last_epoch_as_if_never_stopped(make_cell, resnet, tmp_path):
    two_epochs = with_overrides(**{**TINY.__dict__, "max_epochs": 2})
    straight = LossWatcher()
    uninterrupted = run_detection(make_cell(resnet, tmp_path / "straight", dataset="object_cxr"), two_epochs,
                                  options=SMALL_YOLO, hooks=[straight])
    cell = make_cell(resnet, tmp_path / "work", dataset="object_cxr")  # 10 %: 8 images, 4 iterations
    watched = LossWatcher()
    first = run_detection(cell, TINY, options=SMALL_YOLO, hooks=[watched])
    resumed = run_detection(cell, two_epochs, options=SMALL_YOLO, hooks=[watched])
    assert (first.training.epochs_run, resumed.training.resumed_from_epoch, resumed.training.epochs_run) == (1, 1, 2)
    assert watched.losses == pytest.approx(straight.losses, rel=1e-6) and len(straight.losses) == 8
    assert [item.validation for item in resumed.training.history] == [item.validation for item in uninterrupted.training.history]
    assert resumed.training.best_epoch == uninterrupted.training.best_epoch
    assert resumed.predictions_file.read_text() == uninterrupted.predictions_file.read_text()
    again = run_detection(cell, two_epochs, options=SMALL_YOLO)
    assert (again.training.resumed_from_epoch, again.training.epochs_run) == (2, 2)  # finished: no training
    assert again.training.history == resumed.training.history


def test_faster_rcnn_on_a_vit_runs_end_to_end(make_cell, vit, tmp_path):
    cell = make_cell(vit, tmp_path / "work", head="faster_rcnn", dataset="object_cxr")
    lighter = dict(LIGHT_RCNN)
    sampled = lighter.pop("model.train_cfg.rcnn.sampler.num")
    protocol = with_overrides(**{**TINY.__dict__, "config_options": {"model.train_cfg.rcnn.sampler.num": 99}})
    result = run_detection(cell, protocol, options={**lighter, "model.train_cfg.rcnn.sampler.num": sampled})
    truth = read_targets(result.targets_file)
    assert read_predictions(result.predictions_file, truth) is not None
    assert result.config["head_config"]["roi_head"]["bbox_head"]["num_classes"] == 1
    assert result.config["config_options"] == LIGHT_RCNN  # the protocol's options, overridden by the adapter's
    assert result.config["head_config"]["train_cfg"]["rcnn"]["sampler"]["num"] == sampled


def test_the_reference_yolo_head_runs_in_both_modes_with_the_same_losses(make_cell, resnet, tmp_path, capsys):
    protocol = with_overrides(**{**TINY.__dict__, "cache_dtype": "float32"})
    out = {}
    for mode in ("paper", "cached"):
        watcher = LossWatcher()
        cell = make_cell(resnet, tmp_path / mode, head="yolov3_mgca", mode=mode)
        out[mode] = (run_detection(cell, protocol, options=SMALL_YOLO, hooks=[watcher]), watcher.losses)
    (paper, paper_losses), (cached, cached_losses) = out["paper"], out["cached"]
    assert len(paper_losses) == 3 and len(set(paper_losses)) == 3
    assert cached_losses == pytest.approx(paper_losses, rel=1e-6)
    assert paper.config["head_config"]["bbox_head"]["type"] == "MGCAYOLOHead"
    assert any("objectness as the score" in note for note in paper.notes)
    truth = read_targets(cached.targets_file)
    detections = read_predictions(cached.predictions_file, truth)
    assert detections and all(d["score"] >= 1e-3 for d in detections)  # the head keeps objectness >= 0.001
    assert paper.predictions_file.read_text() == cached.predictions_file.read_text()
    capsys.readouterr()  # the training's log lines
    assert main(["score", "detection", "--predictions", str(cached.predictions_file), "--targets", str(cached.targets_file),
                 "--dataset", "rsna", "--n-resamples", "20"]) == 0
    assert set(json.loads(capsys.readouterr().out)["metrics"]) == {"map", "map_mgca", "map_coco", "ap50"}
