"""The reference's YOLO loss of one pyramid level as a pure function (MGCA ``mgca/utils/yolo_loss.py``).

What the reference computes, and this module reproduces (``YOLOLoss.forward(prediction, targets)``):

- Layout: the raw map ``[B, A·(5+C), H, W]`` holds, per anchor ``a``, the channels
  ``a·(5+C) + (tx, ty, tw, th, objectness, classes...)``; x, y, objectness and classes go through
  a sigmoid, w and h stay raw.
- Assignment, per level: every non-padding target (a row that is not all zero) goes to the cell
  ``(floor(cx·W), floor(cy·H))`` and to the level's anchor of highest *shape* IoU, computed in grid
  units on boxes anchored at the origin with the "+1"-pixel convention (``(min(w)+1)·(min(h)+1)``
  over ``(w+1)·(h+1)`` areas). Every box gets one positive on every level. Anchors of that cell
  whose shape IoU exceeds 0.5 are taken out of the no-object mask; the positive itself stays in
  it when its IoU is at most 0.5 (the reference does not clear it). A later box that lands on the
  same cell and anchor overwrites the earlier one's regression targets.
- Targets: ``x - floor(x)``, ``y - floor(y)`` (grid units) and ``log(w / anchor_w + 1e-16)``,
  ``log(h / anchor_h + 1e-16)`` with anchors in grid units.
- Terms, each a **mean over every cell, anchor and image of the level** (``nn.BCELoss`` /
  ``nn.MSELoss`` on masked tensors, where unmasked cells contribute 0):
  x, y: BCE; w, h: MSE; conf: BCE(conf·mask, mask) + 0.5·BCE(conf·noobj, 0); cls: BCE over
  every cell and class. ``total = 2.5·(x + y + w + h) + conf + cls``.

One departure: a box whose centre lies exactly on the right or bottom edge (``cx = 1`` or
``cy = 1``) indexes past the grid in the reference (an ``IndexError``); here it goes to the last cell.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE_THRESHOLD = 0.5  # anchors above this shape IoU are not pushed towards "no object"
LAMBDA_XY = 2.5
LAMBDA_WH = 2.5
NOOBJ_WEIGHT = 0.5
LOSS_TERMS = ("total", "x", "y", "w", "h", "conf", "cls")


def shape_iou(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """IoU [N, A] of box shapes [N, 2] and anchor shapes [A, 2] placed at the origin, with the
    reference's "+1" on every side length (the units are the grid's, so the +1 is one cell)."""
    inter = (torch.minimum(boxes[:, None, 0], anchors[None, :, 0]) + 1) * (torch.minimum(boxes[:, None, 1], anchors[None, :, 1]) + 1)
    areas = (boxes[:, 0] + 1) * (boxes[:, 1] + 1)
    anchor_areas = (anchors[:, 0] + 1) * (anchors[:, 1] + 1)
    return inter / (areas[:, None] + anchor_areas[None, :] - inter + 1e-16)


def mgca_yolo_loss(prediction: torch.Tensor, targets: torch.Tensor, anchors: torch.Tensor, img_size: int) -> dict[str, torch.Tensor]:
    """The reference's loss of one level (module docstring): scalar tensors ``total, x, y, w, h, conf, cls``.

    ``prediction``: raw head output ``[B, A·(5+C), H, W]``; ``targets``: ``[B, T, 5]`` rows
    ``(class, cx, cy, w, h)`` normalised to [0, 1], all-zero rows are padding; ``anchors``:
    ``[A, 2]`` (w, h) in input pixels; ``img_size``: the square input side in pixels."""
    batch, channels, height, width = prediction.shape
    n_anchors = anchors.shape[0]
    attributes = channels // n_anchors
    if attributes * n_anchors != channels or attributes < 6:
        raise ValueError(f"prediction has {channels} channels, not {n_anchors} anchors x (5 + classes)")
    n_classes = attributes - 5
    maps = prediction.view(batch, n_anchors, attributes, height, width).permute(0, 1, 3, 4, 2)
    x, y = torch.sigmoid(maps[..., 0]), torch.sigmoid(maps[..., 1])
    w, h = maps[..., 2], maps[..., 3]
    conf, classes = torch.sigmoid(maps[..., 4]), torch.sigmoid(maps[..., 5:])

    grid_anchors = anchors.to(torch.float64) / torch.tensor([img_size / width, img_size / height], dtype=torch.float64)
    cells = (batch, n_anchors, height, width)
    mask = torch.zeros(cells, dtype=torch.float64)
    noobj = torch.ones(cells, dtype=torch.float64)
    tx, ty, tw, th = (torch.zeros(cells, dtype=torch.float64) for _ in range(4))
    tcls = torch.zeros((*cells, n_classes), dtype=torch.float64)

    rows = targets.detach().to("cpu", torch.float64)
    image, slot = torch.nonzero(rows.abs().sum(-1) != 0, as_tuple=True)  # row-major: the reference's loop order
    if len(image):
        boxes = rows[image, slot]
        gx, gy = boxes[:, 1] * width, boxes[:, 2] * height
        gw, gh = boxes[:, 3] * width, boxes[:, 4] * height
        gi = gx.floor().long().clamp(max=width - 1)
        gj = gy.floor().long().clamp(max=height - 1)
        ious = shape_iou(torch.stack([gw, gh], 1).float(), grid_anchors.float())  # float32, as the reference
        best = ious.argmax(1)
        ignored = (ious > IGNORE_THRESHOLD).nonzero()
        noobj[image[ignored[:, 0]], ignored[:, 1], gj[ignored[:, 0]], gi[ignored[:, 0]]] = 0
        mask[image, best, gj, gi] = 1
        tcls[image, best, gj, gi, boxes[:, 0].long()] = 1
        # regression targets: the last box written to a (image, anchor, cell) wins
        key = ((image * n_anchors + best) * height + gj) * width + gi
        order = torch.arange(len(key))
        unique, inverse = torch.unique(key, return_inverse=True)
        last = torch.full((len(unique),), -1, dtype=torch.long).scatter_reduce(0, inverse, order, reduce="amax")
        where = (image[last], best[last], gj[last], gi[last])
        tx[where], ty[where] = (gx - gi)[last], (gy - gj)[last]
        tw[where] = torch.log(gw[last] / grid_anchors[best[last], 0] + 1e-16)
        th[where] = torch.log(gh[last] / grid_anchors[best[last], 1] + 1e-16)

    mask, noobj, tx, ty, tw, th, tcls = (item.to(prediction.device, prediction.dtype) for item in (mask, noobj, tx, ty, tw, th, tcls))
    terms = {
        "x": F.binary_cross_entropy(x * mask, tx * mask),
        "y": F.binary_cross_entropy(y * mask, ty * mask),
        "w": F.mse_loss(w * mask, tw * mask),
        "h": F.mse_loss(h * mask, th * mask),
        "conf": F.binary_cross_entropy(conf * mask, mask) + NOOBJ_WEIGHT * F.binary_cross_entropy(conf * noobj, noobj * 0.0),
        "cls": F.binary_cross_entropy(classes * mask[..., None], tcls * mask[..., None]),
    }
    total = LAMBDA_XY * (terms["x"] + terms["y"]) + LAMBDA_WH * (terms["w"] + terms["h"]) + terms["conf"] + terms["cls"]
    return {"total": total, **terms}
