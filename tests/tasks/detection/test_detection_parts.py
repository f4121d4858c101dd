"""Detection task parts: registration, protocol, configs, the frozen backbone, box mapping, map cache, safe checkpoints."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmark.backbones import MGCA_PREPROCESSING, normalise
from benchmark.data.prepared import DataError, PreparedDataset
from benchmark.heads.features import ENTRY_FILE, EncodeStats, FeatureCacheError, bytes_per_image, entry_folder
from benchmark.scoring import scorer
from tasks.detection.data import ImageSource, MapSource, SplitDataset, load_split, resize_images
from tasks.detection.distributed import GlobalBatchNorm, global_batchnorm
from tasks.detection.features import cached_maps, maps_key
from tasks.detection.model import EncoderPyramid, build_detector, detector_config, encoder_maps
from tasks.detection.protocol import HEAD_NAMES, HEADS, PROTOCOL, SCHEDULES, resolve_geometry, with_overrides
from tasks.detection.training import load_head_weights, selection
from tasks.registry import get_task

CPU = torch.device("cpu")
DEMO = with_overrides(encode_batch_size=16)


# ------------------------------------------------------------------------ registry, protocol

def test_registration_declares_both_datasets_heads_and_modes():
    info = get_task("detection")
    assert {name: (item.partition, info.headline(name).name) for name, item in info.datasets.items()} == {
        "rsna": ("detection", "map"), "object_cxr": ("detection", "map")}
    assert info.heads == HEAD_NAMES == ("yolov3_mgca", "yolov3", "faster_rcnn") and set(HEAD_NAMES) == set(HEADS.names())
    assert (info.default_head("resnet"), info.default_head("vit")) == ("yolov3_mgca", "faster_rcnn")
    assert info.modes == ("cached", "paper") and info.default_mode == "paper"
    assert info.adapter == "tasks.detection.adapter:run_detection" and scorer(info.scorer) is not None


def test_importing_the_task_package_does_not_import_mmdet():
    code = "import sys, tasks.detection; print(any(m.startswith(('mmdet', 'mmengine')) for m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_reference_schedules():
    assert PROTOCOL.schedule("rsna", 1) == SCHEDULES[("rsna", 1)] and (SCHEDULES[("rsna", 1)].lr, SCHEDULES[("rsna", 1)].batch_size) == (2e-4, 8)
    assert (SCHEDULES[("object_cxr", 1)].lr, SCHEDULES[("object_cxr", 100)].batch_size) == (2.5e-4, 16)
    assert (PROTOCOL.weight_decay, PROTOCOL.max_epochs, PROTOCOL.early_stopping_patience) == (1e-6, 50, 10)
    assert with_overrides(batch_size=2).schedule("rsna", 10).batch_size == 2
    with pytest.raises(ValueError, match="no detection schedule for rsna at 5 %"):
        PROTOCOL.schedule("rsna", 5)


@pytest.mark.parametrize(("cache", "size", "noted"), [(256, 224, False), (224, 224, False), (64, 64, True), (100, 96, True)])
def test_input_geometry(cache, size, noted):
    geometry = resolve_geometry(cache, PROTOCOL)
    assert geometry.input_size == size and bool(geometry.notes) == noted


# ------------------------------------------------------------------------------ configs, model

def test_yolov3_config_takes_the_encoder_channels_and_reference_anchors(resnet):
    cfg = detector_config(HEADS.get("yolov3"), resnet, resolve_geometry(256, PROTOCOL), PROTOCOL)
    assert cfg.model.neck.in_channels == [512, 256, 128]  # ResNet-18 stages 4, 3, 2: deepest first
    assert cfg.model.neck.out_channels == [512, 256, 128] and cfg.model.bbox_head.out_channels == [1024, 512, 256]
    assert cfg.model.bbox_head.num_classes == 1
    assert cfg.model.bbox_head.anchor_generator.base_sizes[0][0] == pytest.approx((116 * 224 / 416, 90 * 224 / 416))
    assert cfg.model.backbone.family == "resnet" and "init_cfg" not in cfg.model.backbone


def test_faster_rcnn_config_on_a_vit_and_overrides(vit):
    options = {"model.roi_head.bbox_head.loss_bbox.loss_weight": 2.0}
    cfg = detector_config(HEADS.get("faster_rcnn"), vit, resolve_geometry(64, PROTOCOL), PROTOCOL, options)
    assert cfg.model.neck.in_channels == [96, 192, 192]  # simple feature pyramid of the 192-d ViT-Tiny
    assert cfg.model.rpn_head.anchor_generator.scales == [pytest.approx(2 * 64 / 224)]
    assert cfg.model.roi_head.bbox_roi_extractor.finest_scale == pytest.approx(28 * 64 / 224)
    assert cfg.model.roi_head.bbox_head.loss_bbox.loss_weight == 2.0
    assert cfg.model.test_cfg.rcnn.score_thr == 0.001


def test_pretrained_init_is_refused(resnet):
    with pytest.raises(ValueError, match="suite's backbone loader only"):
        EncoderPyramid("resnet", [128, 256, 512], [8, 16, 32], init_cfg=dict(type="Pretrained", checkpoint="x.pth"))


@pytest.mark.parametrize(("family", "channels"), [("resnet", [128, 256, 512]), ("vit", [96, 192, 192])])
def test_frozen_encoder_gives_three_strides_from_images_or_cached_maps(family, channels, resnet, vit):
    encoder = resnet if family == "resnet" else vit
    detector = build_detector(detector_config(HEADS.get("yolov3"), encoder, resolve_geometry(64, PROTOCOL), PROTOCOL), seed=0)
    backbone = detector.backbone
    images = normalise(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8), MGCA_PREPROCESSING)
    backbone.attach(encoder)
    from_images = backbone(images)
    from_maps = backbone(tuple(encoder_maps(encoder, images)))
    assert [tuple(level.shape) for level in from_images] == [(2, c, 64 // s, 64 // s) for c, s in zip(channels, (8, 16, 32))]
    assert all(torch.equal(a, b) for a, b in zip(from_images, from_maps))
    detector.train()
    assert not encoder.model.training  # frozen, eval mode whatever the detector does (B6)
    assert {key.split(".")[1] for key in detector.state_dict() if key.startswith("backbone.")} <= {"pyramid"}  # head only
    assert not {id(p) for p in encoder.model.parameters()} & {id(p) for p in detector.parameters()}  # never optimised
    detector.double()  # .to() and friends move the encoder with the detector
    assert next(encoder.model.parameters()).dtype == torch.float64
    detector.float()


# --------------------------------------------------------------------------------- data, boxes

def test_boxes_reach_the_network_scaled_and_come_back_in_original_pixels(prepared):
    dataset = PreparedDataset(prepared / "object_cxr")  # non-square originals: x and y scale differently
    ids = dataset.split_ids("test", partition="detection")
    split = load_split(dataset, "test", ids, 64)
    index = next(i for i, image in enumerate(split.images) if split._boxes[image["id"]] and image["width"] != image["height"])
    image = split.images[index]
    sample = split.sample(index)
    (x, y, w, h), _ = split._boxes[image["id"]][0]
    assert sample.gt_instances.bboxes[0].tolist() == pytest.approx(
        [x * 64 / image["width"], y * 64 / image["height"], (x + w) * 64 / image["width"], (y + h) * 64 / image["height"]], rel=1e-6)
    assert sample.gt_instances.labels.tolist() == [0] * len(split._boxes[image["id"]])
    boxes = np.vstack([sample.gt_instances.bboxes.numpy(), [[-5, -5, 70, 70]]])
    found = split.detections(index, boxes, np.array([0.9] * len(sample.gt_instances) + [0.5]),
                             np.zeros(len(boxes), int), 0.001, 100)
    assert found[0]["bbox"] == pytest.approx([x, y, w, h], rel=1e-5) and found[0]["image_id"] == image["id"]
    assert found[-1]["bbox"] == pytest.approx([0, 0, image["width"], image["height"]])  # clipped to the image


def test_detections_keep_the_best_hundred_above_the_minimum_score(prepared):
    dataset = PreparedDataset(prepared / "rsna")
    split = load_split(dataset, "test", dataset.split_ids("test", partition="detection"), 64)
    scores = np.linspace(0.0, 1.0, 150)
    found = split.detections(0, np.tile([1.0, 1.0, 5.0, 5.0], (150, 1)), scores, np.zeros(150, int), 0.001, 100)
    assert len(found) == 100 and min(item["score"] for item in found) == pytest.approx(scores[50])


def test_detections_are_clipped_to_the_image_unless_the_head_says_not(prepared):
    dataset = PreparedDataset(prepared / "rsna")
    split = load_split(dataset, "test", dataset.split_ids("test", partition="detection"), 64)
    image = split.images[0]
    box = np.array([[-8.0, -4.0, 70.0, 32.0]])  # input pixels: past the left, top and right edges
    clipped, = split.detections(0, box, np.array([0.9]), np.zeros(1, int), 0.001, 100)
    kept, = split.detections(0, box, np.array([0.9]), np.zeros(1, int), 0.001, 100, clip=False)
    sx, sy = image["width"] / 64, image["height"] / 64
    assert clipped["bbox"] == pytest.approx([0.0, 0.0, image["width"], 32 * sy])
    assert kept["bbox"] == pytest.approx([-8 * sx, -4 * sy, 78 * sx, 36 * sy])


def test_negatives_stay_and_unknown_ids_are_an_error(prepared):
    dataset = PreparedDataset(prepared / "rsna")
    ids = dataset.split_ids("val", partition="detection")
    split = load_split(dataset, "val", ids, 64)
    assert len(split.coco["images"]) == len(ids) > len({a["image_id"] for a in split.coco["annotations"]})  # negatives (B1)
    with pytest.raises(DataError, match="not annotated"):
        load_split(dataset, "val", [*ids, "no-such-image"], 64)


def test_resize_images_repeats_gray_and_keeps_uint8():
    images = np.arange(2 * 8 * 8, dtype=np.uint8).reshape(2, 8, 8)
    same = resize_images(images, 8)
    assert same.dtype == torch.uint8 and same.shape == (2, 3, 8, 8) and torch.equal(same[:, 1], torch.from_numpy(images))
    assert resize_images(images, 4).shape == (2, 3, 4, 4)


# -------------------------------------------------------------------------------- map cache

def test_map_cache_is_written_once_and_matches_the_image_path(prepared, resnet, tmp_path):
    dataset = PreparedDataset(prepared / "rsna")
    ids = dataset.split_ids("val", partition="detection")[:5]
    geometry = resolve_geometry(64, DEMO)
    stats = EncodeStats()
    levels, hit = cached_maps(tmp_path, resnet, dataset, ids, geometry, DEMO, CPU, stats, False, "val")
    again, hit_again = cached_maps(tmp_path, resnet, dataset, ids, geometry, DEMO, CPU, stats, False, "val")
    assert (hit, hit_again, stats.images) == (False, True, 5)
    assert [level.dtype for level in again] == [np.float16] * 3 and bytes_per_image(again) == 2 * (128 * 64 + 256 * 16 + 512 * 4)
    source, images = MapSource(again), ImageSource(dataset, ids, 64)
    direct = encoder_maps(resnet, normalise(images[3][None], MGCA_PREPROCESSING))
    for cached, computed in zip(source[3], direct):
        assert torch.allclose(cached.float(), computed[0], rtol=2e-3, atol=2e-3)  # float16 rounding
    description = maps_key(resnet, dataset, ids, geometry, DEMO).description()
    sidecar = entry_folder(tmp_path, maps_key(resnet, dataset, ids, geometry, DEMO)) / ENTRY_FILE
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "description": {**description, "n_images": 6}}))
    with pytest.raises(FeatureCacheError, match="describes other features"):
        cached_maps(tmp_path, resnet, dataset, ids, geometry, DEMO, CPU, stats, False, "val")


def test_split_dataset_items_carry_inputs_and_samples(prepared):
    dataset = PreparedDataset(prepared / "rsna")
    ids = dataset.split_ids("test", partition="detection")
    item = SplitDataset(load_split(dataset, "test", ids, 64), ImageSource(dataset, ids, 64))[2]
    assert item["inputs"].shape == (3, 64, 64) and item["data_samples"].metainfo["image_key"] == ids[2]


# ------------------------------------------------------------------------ checkpoints, hooks

def test_head_weights_load_from_plain_checkpoints_and_never_run_code(tmp_path, resnet):
    detector = build_detector(detector_config(HEADS.get("yolov3"), resnet, resolve_geometry(64, PROTOCOL), PROTOCOL), seed=0)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": detector.state_dict(), "meta": {"epoch": 1}}, good)
    load_head_weights(detector, good)

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": detector.state_dict(), "meta": Payload()}, bad)
    with pytest.raises(pickle.UnpicklingError, match="print"):
        load_head_weights(detector, bad)


def test_detection_selects_and_stops_on_a_strictly_higher_validation_map():
    chosen = selection(with_overrides(early_stopping_patience=7))
    assert (chosen.monitor, chosen.rule, chosen.patience, chosen.min_delta, chosen.stop_on_non_finite) == ("map", "greater", 7, 0.0, False)
    assert selection(PROTOCOL).patience == PROTOCOL.early_stopping_patience == 10


def test_global_batchnorm_is_batchnorm_in_one_process():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    converted = global_batchnorm(torch.nn.Sequential(*[layer for layer in model]))
    assert isinstance(converted[1], GlobalBatchNorm) and converted[1].weight is model[1].weight
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(converted(x), model(x))
