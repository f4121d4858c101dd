"""The warm-up + cosine schedule and validation retrieval accuracy, against hand values."""

from __future__ import annotations

import pytest
import torch

from pretrain.retrieval import retrieval_accuracy
from pretrain.schedule import learning_rate, warmup_steps


def test_learning_rate_hand_values() -> None:
    lr = lambda step: learning_rate(step, total_steps=10, warmup_steps=4, max_lr=1.0, min_lr=0.0)  # noqa: E731
    assert [lr(s) for s in range(5)] == [0.0, 0.25, 0.5, 0.75, 1.0]  # the first step runs at min_lr
    assert lr(7) == pytest.approx(0.5)  # halfway down the cosine: (1 + cos(pi/2)) / 2
    assert lr(10) == pytest.approx(0.0) and lr(12) == pytest.approx(0.0)
    assert learning_rate(0, 10, 0, 2e-5, 1e-8) == pytest.approx(2e-5)  # no warm-up: starts at max
    assert warmup_steps(1000, 0.4) == 400 and warmup_steps(7, 0.4) == 2


def test_retrieval_by_study_hand_values() -> None:
    e = torch.eye(3)
    # Images 0 and 1 belong to study "a" (one report), image 2 to "b". Image 1 looks more like report b.
    img = torch.stack([e[0], torch.nn.functional.normalize(e[1] + 0.5 * e[0], dim=0), e[1]])
    txt = torch.stack([e[0], e[0], e[1]])
    result = retrieval_accuracy(img, txt, ["a", "a", "b"], ks=(1, 2))
    assert result["i2t@1"] == pytest.approx(2 / 3)  # images 0 and 2 find their study's report
    assert result["t2i@1"] == pytest.approx(1.0)  # report a -> image 0, report b -> image 2
    assert result["i2t@2"] == 1.0 and result["t2i@2"] == 1.0
