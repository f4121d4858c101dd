"""The reference's segmentation loss, 10 · focal(γ=2) − log(soft Dice), against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from tasks.segmentation.losses import FocalLogDiceLoss, focal_loss, mixed_loss, soft_dice, soft_dice_sums

# Two pixels: logit 0 (p = 0.5) on a foreground target, logit ln 3 (p = 0.75) on background.
LOGITS = torch.tensor([0.0, math.log(3)])
TARGET = torch.tensor([1.0, 0.0])
# focal: pixel 1: BCE ln 2, (1 - p_t)^2 = 0.25; pixel 2: BCE -ln(0.25) = ln 4, (1 - p_t)^2 = 0.75^2
FOCAL = (0.25 * math.log(2) + 0.5625 * math.log(4)) / 2
# soft Dice, smooth 1: intersection 0.5, probabilities 1.25, targets 1 -> (2 * 0.5 + 1) / (1.25 + 1 + 1)
DICE = 2.0 / 3.25


def test_focal_loss_is_the_modulated_bce_averaged_over_pixels():
    assert focal_loss(LOGITS, TARGET, gamma=2.0).item() == pytest.approx(FOCAL, rel=1e-6)
    # gamma 0: plain BCE
    assert focal_loss(LOGITS, TARGET, gamma=0.0).item() == pytest.approx((math.log(2) + math.log(4)) / 2, rel=1e-6)


def test_soft_dice_is_one_dice_over_the_whole_batch():
    sums = soft_dice_sums(LOGITS, TARGET)
    assert sums.tolist() == pytest.approx([0.5, 1.25, 1.0])
    assert soft_dice(sums, smooth=1.0).item() == pytest.approx(DICE, rel=1e-6)


def test_mixed_loss_and_the_registered_module_agree_with_the_hand_values():
    expected = 10 * FOCAL - math.log(DICE)
    assert mixed_loss(LOGITS, TARGET, alpha=10.0, gamma=2.0, smooth=1.0).item() == pytest.approx(expected, rel=1e-6)
    module = FocalLogDiceLoss(alpha=10.0, gamma=2.0, smooth=1.0)
    # as mmseg's decode head calls it: logits [N, 1, H, W], stacked labels [N, H, W]
    value = module(LOGITS.view(1, 1, 1, 2), TARGET.view(1, 1, 2), weight=None, ignore_index=255)
    assert value.item() == pytest.approx(expected, rel=1e-6)
    assert module.loss_name.startswith("loss_")


def test_fractional_targets_are_accepted_as_the_reference_area_resized_masks():
    # target 0.5 at logit 0: BCE ln 2, modulating factor exp(2 * logsigmoid(0)) = 0.25
    value = focal_loss(torch.tensor([0.0]), torch.tensor([0.5]), gamma=2.0).item()
    assert value == pytest.approx(0.25 * math.log(2), rel=1e-6)


def test_gradients_flow_through_both_terms():
    logits = LOGITS.clone().requires_grad_(True)
    mixed_loss(logits, TARGET, 10.0, 2.0, 1.0).backward()
    assert logits.grad is not None and logits.grad[0] < 0 < logits.grad[1]  # raise the foreground, lower the background


def test_more_than_one_channel_is_refused():
    with pytest.raises(ValueError, match="one sigmoid channel"):
        FocalLogDiceLoss()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2))
