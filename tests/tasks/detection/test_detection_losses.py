"""mgca_yolo_loss: hand-derived values, and a plain-loop re-derivation of the reference's YOLOLoss semantics."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.detection.losses import LOSS_TERMS, mgca_yolo_loss

LN2 = math.log(2)
# the reference's anchors (ssl_detector.py ModelMain) for a 224-pixel input, per level (7, 14, 28 cells)
REFERENCE_ANCHORS = [[(116, 90), (156, 198), (373, 326)], [(30, 61), (62, 45), (59, 119)], [(10, 13), (16, 30), (33, 23)]]


def zero_prediction(cells: int, classes: int = 1, batch: int = 1) -> torch.Tensor:
    return torch.zeros(batch, 3 * (5 + classes), cells, cells)


def test_one_box_in_a_known_cell():
    # 64 px input, 2 x 2 grid (stride 32); anchors 32x32, 64x64, 96x32 px = 1x1, 2x2, 3x1 cells.
    # Box centre (48, 16) px, 32 x 32 px: grid (1.5, 0.5), 1 x 1 cells -> cell (i=1, j=0).
    # "+1" shape IoUs: 1x1: 4/4 = 1; 2x2: 4/(4+9-4) = 4/9; 3x1: 4/(4+8-4) = 0.5 (not > 0.5: stays "no object").
    # Best anchor 0; tx = ty = 0.5, tw = th = log(1) = 0.
    prediction = zero_prediction(2)  # every sigmoid is 0.5
    prediction[:, 2] = 0.3  # anchor 0's raw w everywhere: only the positive cell counts
    targets = torch.tensor([[[0.0, 0.75, 0.25, 0.5, 0.5], [0, 0, 0, 0, 0]]])  # the second row is padding
    loss = mgca_yolo_loss(prediction, targets, torch.tensor([[32.0, 32], [64, 64], [96, 32]]), 64)
    cells = 1 * 3 * 2 * 2
    expected = {
        "x": LN2 / cells,  # BCE(0.5, 0.5) at the positive, BCE(0, 0) = 0 elsewhere
        "y": LN2 / cells,
        "w": 0.3**2 / cells,
        "h": 0.0,
        # BCE(0.5, 1) at the positive + 0.5 x BCE(0.5, 0) on the 11 cells left in the no-object mask
        "conf": LN2 / cells + 0.5 * 11 * LN2 / cells,
        "cls": LN2 / cells,
    }
    expected["total"] = 2.5 * (expected["x"] + expected["y"] + expected["w"] + expected["h"]) + expected["conf"] + expected["cls"]
    assert set(loss) == set(LOSS_TERMS)
    for name, value in expected.items():
        assert loss[name].item() == pytest.approx(value, rel=1e-6, abs=1e-9), name


def test_a_positive_with_low_shape_iou_stays_in_the_no_object_mask():
    # anchors 3x3, 4x4, 5x5 cells; box 1x1 cell: IoU 4/(4+16-4) = 0.25 at best, so nothing is ignored
    # and the positive cell is pushed both towards 1 and (x 0.5) towards 0, as the reference does.
    prediction = zero_prediction(2)
    targets = torch.tensor([[[0.0, 0.25, 0.75, 0.5, 0.5]]])
    loss = mgca_yolo_loss(prediction, targets, torch.tensor([[96.0, 96], [128, 128], [160, 160]]), 64)
    assert loss["conf"].item() == pytest.approx((LN2 + 0.5 * 12 * LN2) / 12, rel=1e-6)
    # the best anchor (0) is assigned: tw = log(1 / 3)
    assert loss["w"].item() == pytest.approx(math.log(1 / 3) ** 2 / 12, rel=1e-6)


def test_the_second_of_two_classes_and_a_later_box_overwriting_the_regression_target():
    prediction = zero_prediction(2, classes=2)
    targets = torch.tensor([[[1.0, 0.75, 0.25, 0.5, 0.5], [0.0, 0.625, 0.125, 0.5, 0.5]]])  # same cell and anchor
    loss = mgca_yolo_loss(prediction, targets, torch.tensor([[32.0, 32], [64, 64], [96, 32]]), 64)
    # tx of the second box: 1.25 - 1 = 0.25; BCE(0.5, 0.25) = ln 2 whatever the target
    assert loss["x"].item() == pytest.approx(LN2 / 12, rel=1e-6)
    # both classes are set on the one positive: 2 x BCE(0.5, 1) over 12 x 2 entries
    assert loss["cls"].item() == pytest.approx(2 * LN2 / 24, rel=1e-6)


# --------------------------------------------------- a plain-loop re-derivation of the reference


def _bce(p: float, t: float) -> float:
    """torch's BCELoss element: logs clamped at -100."""
    return -(t * max(math.log(p) if p > 0 else -math.inf, -100.0) + (1 - t) * max(math.log(1 - p) if p < 1 else -math.inf, -100.0))


def _sigmoid(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def loop_reference(prediction: torch.Tensor, targets: torch.Tensor, anchors: list[tuple[float, float]], img_size: int) -> dict[str, float]:
    """One level of YOLOLoss as read from the reference, with dicts and loops in float64."""
    batch, channels, height, width = prediction.shape
    n_anchors = len(anchors)
    attributes = channels // n_anchors
    n_classes = attributes - 5
    p = prediction.double().tolist()
    grid_anchors = [(aw / (img_size / width), ah / (img_size / height)) for aw, ah in anchors]
    positive: dict[tuple, dict] = {}
    classes_on: set[tuple] = set()
    not_noobj: set[tuple] = set()
    for b in range(batch):
        for row in targets[b].tolist():
            if sum(row) == 0:
                continue
            gx, gy, gw, gh = row[1] * width, row[2] * height, row[3] * width, row[4] * height
            gi, gj = int(gx), int(gy)
            ious = []
            for aw, ah in grid_anchors:
                inter = (min(gw, aw) + 1) * (min(gh, ah) + 1)
                ious.append(inter / ((gw + 1) * (gh + 1) + (aw + 1) * (ah + 1) - inter + 1e-16))
            for a, iou in enumerate(ious):
                if iou > 0.5:
                    not_noobj.add((b, a, gj, gi))
            best = max(range(n_anchors), key=lambda a: (ious[a], -a))
            positive[(b, best, gj, gi)] = {"x": gx - gi, "y": gy - gj, "w": math.log(gw / grid_anchors[best][0] + 1e-16),
                                           "h": math.log(gh / grid_anchors[best][1] + 1e-16)}
            classes_on.add((b, best, gj, gi, int(row[0])))
    sums = dict.fromkeys(("x", "y", "w", "h", "obj", "noobj", "cls"), 0.0)
    for b in range(batch):
        for a in range(n_anchors):
            for j in range(height):
                for i in range(width):
                    raw = [p[b][a * attributes + k][j][i] for k in range(attributes)]
                    target = positive.get((b, a, j, i))
                    on = target is not None
                    if on:
                        sums["x"] += _bce(_sigmoid(raw[0]), target["x"])
                        sums["y"] += _bce(_sigmoid(raw[1]), target["y"])
                        sums["w"] += (raw[2] - target["w"]) ** 2
                        sums["h"] += (raw[3] - target["h"]) ** 2
                        sums["obj"] += _bce(_sigmoid(raw[4]), 1.0)
                        for c in range(n_classes):
                            sums["cls"] += _bce(_sigmoid(raw[5 + c]), 1.0 if (b, a, j, i, c) in classes_on else 0.0)
                    if (b, a, j, i) not in not_noobj:
                        sums["noobj"] += _bce(_sigmoid(raw[4]), 0.0)
    cells = batch * n_anchors * height * width
    out = {name: sums[name] / cells for name in ("x", "y", "w", "h")}
    out["conf"] = sums["obj"] / cells + 0.5 * sums["noobj"] / cells
    out["cls"] = sums["cls"] / (cells * n_classes)
    out["total"] = 2.5 * (out["x"] + out["y"] + out["w"] + out["h"]) + out["conf"] + out["cls"]
    return out


@pytest.mark.parametrize("level,cells", [(0, 7), (1, 14), (2, 28)])
@pytest.mark.parametrize("n_classes", [1, 3])
def test_equals_a_plain_loop_re_derivation_on_random_inputs(level, cells, n_classes):
    generator = torch.Generator().manual_seed(100 * level + n_classes)
    batch, slots = 3, 6
    prediction = torch.randn(batch, 3 * (5 + n_classes), cells, cells, generator=generator) * 2
    targets = torch.zeros(batch, slots, 5)
    for b, count in enumerate((0, 2, 5)):  # an image without boxes, padding after the boxes
        w, h = torch.rand(count, generator=generator) * 0.6 + 0.02, torch.rand(count, generator=generator) * 0.6 + 0.02
        cx = torch.rand(count, generator=generator) * 0.98
        cy = torch.rand(count, generator=generator) * 0.98
        targets[b, :count] = torch.stack([torch.randint(0, n_classes, (count,), generator=generator).float(), cx, cy, w, h], 1)
    anchors = [(w * 224 / 416, h * 224 / 416) for w, h in REFERENCE_ANCHORS[level]]
    got = mgca_yolo_loss(prediction, targets, torch.tensor(anchors), 224)
    expected = loop_reference(prediction, targets, anchors, 224)
    for name in LOSS_TERMS:
        assert got[name].item() == pytest.approx(expected[name], rel=1e-5), name


def test_gradients_flow_to_the_prediction_only():
    prediction = zero_prediction(7).requires_grad_()
    targets = torch.tensor([[[0.0, 0.5, 0.5, 0.3, 0.4]]])
    mgca_yolo_loss(prediction, targets, torch.tensor(REFERENCE_ANCHORS[0], dtype=torch.float32) * 224 / 416, 224)["total"].backward()
    assert prediction.grad is not None and prediction.grad.abs().sum() > 0
