"""``MGCAYOLOHead``: mmdet's YOLOv3 head trained and decoded as the reference's ``YOLOLoss`` does.

The layers are ``YOLOV3Head``'s (per level a 3x3 conv-BN-LeakyReLU and the 1x1 prediction conv,
the reference's sixth block and ``conv_out``), initialised as the reference's: PyTorch's default
draws, no objectness prior. What changes is the computation around them (MGCA
``mgca/utils/yolo_loss.py``, ``detection_utils.py``, ``models/ssl_detector.py``):

- Training loss: :func:`tasks.detection.losses.mgca_yolo_loss` on each level, summed over the
  three levels (ground truth as the reference's normalised ``(class, cx, cy, w, h)`` rows).
  The logged parts are ``loss_xy`` = 2.5 (x + y), ``loss_wh`` = 2.5 (w + h), ``loss_conf``,
  ``loss_cls``, each summed over levels; their sum is the reference's total.
- Prediction: boxes decoded as ``YOLOLoss`` does without targets (centre = (cell + sigmoid) x
  stride, size = exp(raw) x anchor), score = objectness alone, kept from ``test_cfg.conf_thr``,
  then per class a greedy NMS in objectness order that drops boxes whose "+1"-pixel IoU with a
  kept one is >= ``test_cfg.nms.iou_threshold`` (the reference's 0.5). Boxes are not clipped.

The reference keeps objectness >= 0.5 (``conf_thres``); the suite's config keeps >= 0.001 so
that the headline ``map`` sees the whole precision-recall curve. Greedy NMS in score order lets a
box be suppressed only by a higher-scored one, so the detections with objectness >= 0.5 are
exactly the reference's, and ``map_mgca`` (score >= 0.5) is the published rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmdet.models.dense_heads import YOLOV3Head
from mmdet.registry import MODELS
from mmengine.structures import InstanceData
from torch import Tensor, nn
from torchvision.ops import batched_nms

from tasks.detection.losses import LAMBDA_WH, LAMBDA_XY, mgca_yolo_loss


def _just_below(threshold: float) -> float:
    """torchvision's NMS drops IoU > threshold, the reference IoU >= threshold: the float32 just below it."""
    return float(np.nextafter(np.float32(threshold), np.float32(0)))


def reference_targets(batch_gt_instances: Sequence[InstanceData], img_size: int) -> Tensor:
    """``[B, T, 5]`` rows ``(class, cx, cy, w, h)`` normalised by the input side, zero-padded to the
    most boxes of an image: the reference's ``labels`` (xyxy input-pixel boxes in)."""
    count = max((len(item.bboxes) for item in batch_gt_instances), default=0)
    device = batch_gt_instances[0].bboxes.device
    targets = torch.zeros(len(batch_gt_instances), count, 5, device=device)
    for index, item in enumerate(batch_gt_instances):
        boxes = item.bboxes.float()
        n = len(boxes)
        targets[index, :n, 0] = item.labels.float()
        targets[index, :n, 1] = (boxes[:, 0] + boxes[:, 2]) / 2 / img_size
        targets[index, :n, 2] = (boxes[:, 1] + boxes[:, 3]) / 2 / img_size
        targets[index, :n, 3] = (boxes[:, 2] - boxes[:, 0]) / img_size
        targets[index, :n, 4] = (boxes[:, 3] - boxes[:, 1]) / img_size
    return targets


def plus_one_nms(boxes: Tensor, scores: Tensor, labels: Tensor, iou_threshold: float) -> Tensor:
    """Indices kept by the reference's per-class greedy NMS (score order, "+1"-pixel IoU, drop
    IoU >= threshold). The "+1" IoU of two boxes is the plain IoU of the boxes grown by one pixel
    to the right and bottom, which is what torchvision's NMS is given."""
    grown = torch.cat([boxes[:, :2], boxes[:, 2:] + 1], 1)
    return batched_nms(grown.float(), scores.float(), labels, _just_below(iou_threshold))


@MODELS.register_module()
class MGCAYOLOHead(YOLOV3Head):
    """See the module docstring."""

    def init_weights(self) -> None:
        """PyTorch's default initialisation, as the reference's layers (no objectness prior)."""
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.BatchNorm2d)):
                module.reset_parameters()

    def _level_anchors(self, level: int, device: torch.device) -> Tensor:
        return torch.tensor(self.prior_generator.base_sizes[level], dtype=torch.float32, device=device)

    def loss_by_feat(self, pred_maps: Sequence[Tensor], batch_gt_instances: list[InstanceData], batch_img_metas: list[dict],
                     batch_gt_instances_ignore: list | None = None) -> dict[str, Tensor]:
        img_size = _square_side(batch_img_metas)
        targets = reference_targets(batch_gt_instances, img_size)
        levels = [mgca_yolo_loss(pred, targets, self._level_anchors(level, pred.device), img_size)
                  for level, pred in enumerate(pred_maps)]
        return {
            "loss_xy": sum(LAMBDA_XY * (item["x"] + item["y"]) for item in levels),
            "loss_wh": sum(LAMBDA_WH * (item["w"] + item["h"]) for item in levels),
            "loss_conf": sum(item["conf"] for item in levels),
            "loss_cls": sum(item["cls"] for item in levels),
        }

    def decode(self, pred_maps: Sequence[Tensor], img_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """Per image: xyxy boxes [B, N, 4] in input pixels, objectness [B, N], class probabilities [B, N, C]."""
        boxes, objectness, classes = [], [], []
        for level, pred in enumerate(pred_maps):
            batch, _, height, width = pred.shape
            anchors = self._level_anchors(level, pred.device)
            maps = pred.view(batch, self.num_base_priors, self.num_attrib, height, width).permute(0, 1, 3, 4, 2)
            rows, columns = torch.meshgrid(torch.arange(height, device=pred.device), torch.arange(width, device=pred.device), indexing="ij")
            stride_x, stride_y = img_size / width, img_size / height
            cx = (maps[..., 0].sigmoid() + columns) * stride_x
            cy = (maps[..., 1].sigmoid() + rows) * stride_y
            w = maps[..., 2].exp() * anchors[:, 0].view(1, -1, 1, 1)
            h = maps[..., 3].exp() * anchors[:, 1].view(1, -1, 1, 1)
            boxes.append(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(batch, -1, 4))
            objectness.append(maps[..., 4].sigmoid().reshape(batch, -1))
            classes.append(maps[..., 5:].sigmoid().reshape(batch, -1, self.num_classes))
        return torch.cat(boxes, 1), torch.cat(objectness, 1), torch.cat(classes, 1)

    def predict_by_feat(self, pred_maps: Sequence[Tensor], batch_img_metas: list[dict], cfg=None, rescale: bool = False,
                        with_nms: bool = True) -> list[InstanceData]:
        cfg = self.test_cfg if cfg is None else cfg
        boxes, objectness, classes = self.decode(pred_maps, _square_side(batch_img_metas))
        results = []
        for image_boxes, image_objectness, image_classes in zip(boxes, objectness, classes):
            keep = image_objectness >= cfg.get("conf_thr", 0.5)
            image_boxes, scores, labels = image_boxes[keep], image_objectness[keep], image_classes[keep].argmax(1)
            if with_nms:
                kept = plus_one_nms(image_boxes, scores, labels, cfg.nms.iou_threshold)
                image_boxes, scores, labels = image_boxes[kept], scores[kept], labels[kept]
            results.append(InstanceData(bboxes=image_boxes, scores=scores, labels=labels))
        return results


def _square_side(batch_img_metas: list[dict]) -> int:
    """The network input side (the suite's inputs are squares; mmdet's rescale is the identity)."""
    height, width = batch_img_metas[0]["batch_input_shape"]
    if height != width:
        raise ValueError(f"MGCAYOLOHead expects square inputs, got {height} x {width}")
    return int(height)
