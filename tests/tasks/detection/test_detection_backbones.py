"""Detection on backbones beyond MGCA's: their own preprocessing (1-channel torchxrayvision, ImageNet
mean/std) and pyramid-family maps (timm ConvNeXt, torchxrayvision's DenseNet), end to end on demo data."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.scoring.detection import read_predictions, read_targets
from tasks.detection.adapter import run_detection
from tasks.detection.features import maps_key
from tasks.detection.model import DetectionInputs, build_detector, detector_config
from tasks.detection.protocol import HEADS, PROTOCOL, resolve_geometry, with_overrides
from tasks.registry import get_task

# As test_detection_training.py: rsna 10 % (7 images, 3 iterations), scores kept down to 1e-6, narrow YOLOv3.
TINY = with_overrides(batch_size=2, max_epochs=1, eval_batch_size=16, encode_batch_size=16, min_score=1e-6)
SMALL_YOLO = {"model.neck.out_channels": [64, 32, 16], "model.bbox_head.in_channels": [64, 32, 16],
              "model.bbox_head.out_channels": [128, 64, 32]}


def test_pyramid_backbones_get_the_reference_yolov3_head_by_default():
    assert get_task("detection").default_head("pyramid") == "yolov3_mgca"


def test_the_detector_feeds_the_encoder_its_own_preprocessing(xrv_densenet):
    cfg = detector_config(HEADS.get("yolov3"), xrv_densenet, resolve_geometry(64, PROTOCOL), PROTOCOL, SMALL_YOLO)
    assert cfg.model.data_preprocessor.preprocessing == xrv_densenet.preprocessing.to_dict()
    inputs = DetectionInputs(**{k: v for k, v in cfg.model.data_preprocessor.items() if k != "type"})
    images = torch.tensor([[0, 255], [51, 204]], dtype=torch.uint8).expand(3, 2, 2)
    batch = inputs({"inputs": [images, images], "data_samples": []})["inputs"]
    assert batch.shape == (2, 1, 2, 2)  # one channel, as torchxrayvision's models take
    assert torch.allclose(batch[0, 0], torch.tensor([[-1024.0, 1024.0], [-614.4, 614.4]]), atol=1e-3)


def test_cached_maps_are_keyed_by_the_preprocessing(prepared, xrv_densenet):
    from benchmark.backbones import protocol_preprocessing
    from benchmark.data.prepared import PreparedDataset

    dataset, geometry = PreparedDataset(prepared / "rsna"), resolve_geometry(64, PROTOCOL)
    own = maps_key(xrv_densenet, dataset, ["a"], geometry, PROTOCOL)
    protocol = LoadedBackbone(xrv_densenet.spec, xrv_densenet.model, xrv_densenet.weights_sha256, None,
                              protocol_preprocessing(xrv_densenet.preprocessing))
    other = maps_key(protocol, dataset, ["a"], geometry, PROTOCOL)
    assert own.preprocessing["value_range"] == [-1024.0, 1024.0] and other.preprocessing["value_range"] == [0.0, 1.0]
    assert own.digest != other.digest


def test_a_pyramid_backbone_runs_a_detection_cell_end_to_end(make_cell, tmp_path, convnext):
    """One YOLOv3 epoch (3 iterations, cached maps) on a timm ConvNeXt's own strides-8/16/32 maps; files that re-score.
    (torchxrayvision's 1-channel DenseNet, also a pyramid, is checked up to the detector's input above and below.)"""
    backbone = convnext
    assert backbone.model.arch.family == "pyramid"
    cell = make_cell(backbone, tmp_path / "work", mode="cached")
    result = run_detection(cell, TINY, options=SMALL_YOLO)
    truth = read_targets(result.targets_file)
    assert read_predictions(result.predictions_file, truth) is not None
    assert result.config["head_config"]["backbone"]["family"] == "pyramid"
    assert result.config["head_config"]["data_preprocessor"]["preprocessing"] == backbone.preprocessing.to_dict()
    assert result.training.epochs_run == 1


def test_normalise_on_the_encoder_gives_the_models_channels(xrv_densenet, convnext):
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    assert [m.shape[1] for m in xrv_densenet.model.feature_maps(normalise(images, xrv_densenet.preprocessing))] == \
        list(xrv_densenet.model.arch.feature_map_dims)
    maps = convnext.model.feature_maps(normalise(images, convnext.preprocessing))
    assert [64 // m.shape[-1] for m in maps] == [8, 16, 32]
    detector = build_detector(detector_config(HEADS.get("yolov3"), convnext, resolve_geometry(64, PROTOCOL), PROTOCOL,
                                              SMALL_YOLO), seed=0)
    assert len(detector.backbone(tuple(maps))) == 3


@pytest.mark.parametrize("fixture, note", [
    ("open_clip_fixed_vit", "the encoder sees the 64 px input resized to 48 px"),  # grid 6 -> 4
    ("dinov2_patch14", None),  # 64 // 14 = 4 cells: the stride-16 grid of 64 px already
])
def test_vits_of_other_patch_sizes_and_fixed_size_models_run_a_detection_cell(make_cell, tmp_path, request, fixture, note,
                                                                              stem_sides):
    """A single-map encoder whose grid is not stride 16 of the input (open_clip's fixed-size patch-8 ViT,
    a RAD-DINO-like patch-14 DINOv2) gets the simple feature pyramid on the input's stride-16 grid. The task declares
    the side the cell feeds the encoder (the dry run times it there): open_clip's own 48, the DINOv2's 64, not its 28."""
    backbone = request.getfixturevalue(fixture)
    assert backbone.model.arch.family == "vit" and backbone.model.arch.feature_map_strides != (16,)
    cell, fed = make_cell(backbone, tmp_path / "work", mode="paper"), stem_sides(backbone)
    result = run_detection(cell, TINY, options=SMALL_YOLO)
    assert set(fed) == {get_task("detection").encoder_input_size(backbone, 64, cell.head, cell.overrides)}
    assert set(fed) == {48 if backbone.preprocessing.fixed_size else 64}
    assert read_predictions(result.predictions_file, read_targets(result.targets_file)) is not None
    assert result.config["head_config"]["backbone"]["in_strides"] == [16]
    resampled = [line for line in result.notes if "resampled" in line or "resized" in line]
    assert (note in resampled[0]) if note else resampled == []
