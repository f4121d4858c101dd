"""Encoder architectures, named as timm and torchvision name them.

An architecture knows how to build a randomly initialised encoder without its classifier and
what it outputs; weights come separately (``checkpoint.py``). Key names are the native ones
(timm ViT, torchvision ResNet), which are also the names inside MGCA's released checkpoints
under ``img_encoder_q.model.``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import timm
import torch
import torchvision
from torch import nn

from benchmark.registry import Registry

Family = Literal["vit", "resnet"]


@dataclass(frozen=True)
class Architecture:
    name: str
    family: Family
    build_module: Callable[[], nn.Module]
    global_dim: int
    token_dim: int
    feature_map_dims: tuple[int, ...]
    feature_map_strides: tuple[int, ...]
    # Keys of a classifier that foreign checkpoints may carry; dropped on load and reported.
    classifier_prefixes: tuple[str, ...]

    def build(self) -> nn.Module:
        return self.build_module()


ARCHITECTURES: Registry[Architecture] = Registry("architecture")


def _timm_vit(name: str) -> Callable[[], nn.Module]:
    # dynamic_img_size interpolates the position embedding for inputs other than 224 px
    # (small demo images); parameter names and shapes are unchanged.
    return lambda: timm.create_model(name, pretrained=False, num_classes=0, dynamic_img_size=True)


def _torchvision_resnet(name: str) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        model = torchvision.models.get_model(name, weights=None)
        model.fc = nn.Identity()  # MGCA's encoder has no fc parameters either
        return model

    return build


for _name, _dim in [("vit_tiny_patch16_224", 192), ("vit_small_patch16_224", 384), ("vit_base_patch16_224", 768)]:
    ARCHITECTURES.add(
        _name,
        Architecture(
            name=_name,
            family="vit",
            build_module=_timm_vit(_name),
            global_dim=_dim,
            token_dim=_dim,
            feature_map_dims=(_dim,),
            feature_map_strides=(16,),
            classifier_prefixes=("head.", "fc_norm.", "head_drop."),
        ),
    )

for _name, _widths in [("resnet18", (128, 256, 512)), ("resnet34", (128, 256, 512)), ("resnet50", (512, 1024, 2048))]:
    ARCHITECTURES.add(
        _name,
        Architecture(
            name=_name,
            family="resnet",
            build_module=_torchvision_resnet(_name),
            global_dim=_widths[-1],
            token_dim=_widths[1],  # MGCA's local features are layer3 (encoder.py L114-133)
            feature_map_dims=_widths,
            feature_map_strides=(8, 16, 32),
            classifier_prefixes=("fc.",),
        ),
    )


def expected_state_shapes(arch: Architecture) -> dict[str, torch.Size]:
    """Every key (parameters and buffers) of ``arch``, with its shape; built on the meta device."""
    with torch.device("meta"):
        model = arch.build()
    return {key: value.shape for key, value in model.state_dict().items()}


def is_optional_key(key: str) -> bool:
    """BatchNorm step counters: loaded when present, never required (they do not affect outputs)."""
    return key.endswith("num_batches_tracked")
