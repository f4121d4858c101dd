"""The yolov3_mgca head: the reference's loss summed over levels, its decoding, objectness score and "+1"-pixel NMS."""

from __future__ import annotations

import math

import pytest
import torch
from mmengine.structures import InstanceData

from tasks.detection.heads import MGCAYOLOHead, plus_one_nms, reference_targets
from tasks.detection.losses import mgca_yolo_loss
from tasks.detection.model import build_detector, detector_config
from tasks.detection.protocol import HEADS, PROTOCOL, resolve_geometry

SIZE = 64  # levels of 2 x 2, 4 x 4, 8 x 8 cells
METAS = [{"batch_input_shape": (SIZE, SIZE), "img_shape": (SIZE, SIZE)}] * 2


@pytest.fixture(scope="module")
def head(resnet) -> MGCAYOLOHead:
    cfg = detector_config(HEADS.get("yolov3_mgca"), resnet, resolve_geometry(SIZE, PROTOCOL), PROTOCOL)
    detector = build_detector(cfg, seed=0)
    detector.init_weights()
    return detector.bbox_head


def test_config_is_yolov3_with_the_reference_head(head, resnet):
    mgca = detector_config(HEADS.get("yolov3_mgca"), resnet, resolve_geometry(256, PROTOCOL), PROTOCOL)
    plain = detector_config(HEADS.get("yolov3"), resnet, resolve_geometry(256, PROTOCOL), PROTOCOL)
    assert mgca.model.bbox_head.type == "MGCAYOLOHead" and plain.model.bbox_head.type == "YOLOV3Head"
    assert mgca.model.neck == plain.model.neck
    for key in ("in_channels", "out_channels", "anchor_generator", "num_classes"):
        assert mgca.model.bbox_head[key] == plain.model.bbox_head[key], key
    assert mgca.model.test_cfg.nms.iou_threshold == 0.5 and mgca.model.test_cfg.conf_thr == 0.001
    assert isinstance(head, MGCAYOLOHead)
    assert not HEADS.get("yolov3_mgca").clip_to_image and HEADS.get("yolov3").clip_to_image
    # PyTorch's default initialisation, as the reference's conv_out: no objectness prior (mmdet sets bias -4.6 to -9.4)
    bias = head.convs_pred[0].bias.view(3, -1)[:, 4]
    assert bias.abs().max() < 1 / math.sqrt(head.convs_pred[0].in_channels) + 1e-6


def test_targets_are_the_references_normalised_rows():
    gt = [InstanceData(bboxes=torch.tensor([[8.0, 16.0, 24.0, 48.0]]), labels=torch.tensor([0])),
          InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    targets = reference_targets(gt, SIZE)
    # centre (16, 32) px, 16 x 32 px on a 64 px side
    assert targets.tolist() == [[[0.0, 0.25, 0.5, 0.25, 0.5]], [[0.0, 0.0, 0.0, 0.0, 0.0]]]


def test_training_loss_is_the_reference_loss_summed_over_levels(head):
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 18, SIZE // s, SIZE // s, generator=generator) for s in (32, 16, 8)]
    gt = [InstanceData(bboxes=torch.tensor([[8.0, 16.0, 24.0, 48.0], [30.0, 2.0, 60.0, 20.0]]), labels=torch.tensor([0, 0])),
          InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))]
    losses = head.loss_by_feat(maps, gt, METAS)
    targets = torch.tensor([[[0, 0.25, 0.5, 0.25, 0.5], [0, 45 / 64, 11 / 64, 30 / 64, 18 / 64]], [[0] * 5] * 2])
    anchors = head.prior_generator.base_sizes
    levels = [mgca_yolo_loss(m, targets, torch.tensor(a), SIZE) for m, a in zip(maps, anchors)]
    assert anchors[0][0] == pytest.approx((116 * SIZE / 416, 90 * SIZE / 416))
    assert sum(losses.values()).item() == pytest.approx(sum(item["total"] for item in levels).item(), rel=1e-6)
    assert losses["loss_conf"].item() == pytest.approx(sum(item["conf"] for item in levels).item(), rel=1e-6)
    assert losses["loss_xy"].item() == pytest.approx(2.5 * sum(item["x"] + item["y"] for item in levels).item(), rel=1e-6)


def test_prediction_decodes_as_the_reference_and_scores_by_objectness(head):
    maps = [torch.zeros(1, 18, SIZE // s, SIZE // s) for s in (32, 16, 8)]
    for level in maps:
        level[:, 4::6] = -10.0  # objectness ~4.5e-5: below the 0.001 the suite keeps
    # level 0 (stride 32), anchor 1 (156 x 198 px at 416), cell column 0, row 1: centre ((0 + 0.5) * 32, (1 + 0.5) * 32),
    # size exp(log 2) x anchor; objectness sigmoid(3); class probability sigmoid(-2) (not part of the score)
    maps[0][0, 6 + 2, 1, 0] = math.log(2)
    maps[0][0, 6 + 4, 1, 0] = 3.0
    maps[0][0, 6 + 5, 1, 0] = -2.0
    (found,) = head.predict_by_feat(maps, METAS[:1])
    w, h = 2 * 156 * SIZE / 416, 198 * SIZE / 416
    assert found.bboxes.tolist() == [pytest.approx([16 - w / 2, 48 - h / 2, 16 + w / 2, 48 + h / 2], rel=1e-6)]
    assert found.scores.tolist() == [pytest.approx(1 / (1 + math.exp(-3)), rel=1e-6)]
    assert found.labels.tolist() == [0]
    assert found.bboxes[0, 0] < 0  # reaches outside the image: not clipped, as the reference


def test_nms_uses_the_plus_one_iou_and_drops_iou_of_exactly_the_threshold():
    # grown by one pixel: [0, 0, 2, 2] and [0, 0, 2, 4]: IoU 4 / 8 = 0.5 (plain IoU 1/3): the reference drops it
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 3.0], [10.0, 10.0, 20.0, 20.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    labels = torch.zeros(3, dtype=torch.long)
    assert plus_one_nms(boxes, scores, labels, 0.5).tolist() == [0, 2]
    # [0, 0, 2, 2] and [0, 0, 2, 5]: 4 / 10 = 0.4 < 0.5: both stay
    assert plus_one_nms(torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 4.0]]), scores[:2], labels[:2], 0.5).tolist() == [0, 1]
    # another class never suppresses
    assert plus_one_nms(boxes[:2], scores[:2], torch.tensor([0, 1]), 0.5).tolist() == [0, 1]
