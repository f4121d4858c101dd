"""The frozen encoder inside an mm model (benchmark/backbones/frozen.py): frozen, eval, never saved, moved along."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from benchmark.backbones import build_backbone
from benchmark.backbones.frozen import FrozenEncoder


class WithHead(FrozenEncoder):
    def __init__(self, encoder=None, init_cfg=None) -> None:
        super().__init__(encoder, init_cfg)
        self.head = nn.Linear(4, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.encoder.model.global_features(images)


def test_the_encoder_is_frozen_in_eval_mode_outside_the_state_dict_and_follows_the_dtype() -> None:
    encoder = build_backbone("random_resnet18")
    module = WithHead(encoder)
    module.train()
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    assert set(module.state_dict()) == {"head.weight", "head.bias"}
    assert not {id(p) for p in encoder.model.parameters()} & {id(p) for p in module.parameters()}
    module.double()
    assert next(encoder.model.parameters()).dtype == torch.float64


def test_pretrained_init_and_images_without_an_encoder_are_refused() -> None:
    with pytest.raises(ValueError, match="WithHead takes its weights from the suite's backbone loader only"):
        WithHead(init_cfg=[dict(type="Pretrained", checkpoint="x.pth")])
    with pytest.raises(RuntimeError, match="no encoder attached"):
        WithHead()(torch.zeros(1, 3, 32, 32))


def test_importing_the_backbone_registry_does_not_import_mmengine() -> None:
    code = "import sys, benchmark.backbones; print(any(name.startswith(('mmengine', 'mmcv', 'mmdet', 'mmseg')) for name in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
