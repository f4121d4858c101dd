"""Short names: the architectures of MGCA's released checkpoints, under the MGCA protocol.

A short name builds the same module, with the same keys, as ``timm:<name>`` or
``torchvision:<name>``, but declares MGCA's preprocessing (mean = std = 0.5 at 224 px), and
ResNet-50 is fed at 299 px in the linear probe as the reference's encoder does (defect B20).
A checkpoint submitted with a short name is therefore evaluated exactly as MGCA's own.
"""

from __future__ import annotations

from benchmark.backbones.preprocessing import MGCA_PREPROCESSING
from benchmark.backbones.sources import ARCHITECTURES
from benchmark.backbones.sources.timm import timm_architecture
from benchmark.backbones.sources.torchvision import B20_LINEAR_PROBE_INPUT, torchvision_architecture

for _name in ("vit_tiny_patch16_224", "vit_small_patch16_224", "vit_base_patch16_224"):
    ARCHITECTURES.add(_name, timm_architecture(
        _name, _name, family="vit", dynamic_size=True, preprocessing=MGCA_PREPROCESSING,
        classifiers=("head.", "fc_norm.", "head_drop."), source="mgca",
    ))

for _name in ("resnet18", "resnet34", "resnet50"):
    ARCHITECTURES.add(_name, torchvision_architecture(
        _name, _name, MGCA_PREPROCESSING, source="mgca",
        linear_probe_input_size=B20_LINEAR_PROBE_INPUT.get(_name),
    ))
