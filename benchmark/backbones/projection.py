"""MGCA's projection heads (``mgca/models/backbones/encoder.py`` L17-54): what maps an encoder's
features into the space where images and reports are compared.

Pretraining trains them (``pretrain/model.py``); a frozen MGCA text tower reads a checkpoint's
global heads to embed images and texts in that space (``text/mgca.py``). The module names
(``head.0`` ... ``head.4``) are the released checkpoints' keys.
"""

from __future__ import annotations

import torch
from torch import nn


class GlobalEmbedding(nn.Module):
    """Linear - BatchNorm - ReLU - Linear - BatchNorm(affine=False) (encoder.py L17-33)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Linear(input_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, output_dim), nn.BatchNorm1d(output_dim, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class LocalEmbedding(nn.Module):
    """The same head as 1x1 convolutions over the token axis (encoder.py L36-54): (B, N, C) → (B, N, D)."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(
            nn.Conv1d(input_dim, hidden_dim, 1), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Conv1d(hidden_dim, output_dim, 1), nn.BatchNorm1d(output_dim, affine=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.transpose(1, 2)).transpose(1, 2)
