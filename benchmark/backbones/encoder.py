"""The frozen-backbone contract every task adapter relies on.

A backbone gives a global feature (ViT [CLS] after the final norm; ResNet global average pool
of the last stage), token features (ViT patch tokens after the final norm; ResNet layer3
positions, as MGCA's local features) and multi-scale feature maps (ResNet stages 2-4; a ViT's
last block reshaped to a grid). It stays in eval mode whatever the caller does, so BatchNorm
statistics never drift (reference defect B6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from benchmark.backbones.architectures import Architecture


@dataclass
class BackboneOutput:
    global_features: torch.Tensor  # (B, D)
    token_features: torch.Tensor  # (B, N, C)
    feature_maps: list[torch.Tensor]  # [(B, C_i, H_i, W_i)], increasing stride


class Backbone(nn.Module):
    """A frozen encoder of one architecture family; see the module docstring for outputs."""

    def __init__(self, arch: Architecture, model: nn.Module) -> None:
        super().__init__()
        self.arch = arch
        self.model = model
        self.model.requires_grad_(False)
        self.model.eval()

    def train(self, mode: bool = True) -> Backbone:  # noqa: ARG002 - frozen: always eval
        return super().train(False)

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        raise NotImplementedError

    def global_features(self, images: torch.Tensor) -> torch.Tensor:
        return self(images).global_features

    def token_features(self, images: torch.Tensor) -> torch.Tensor:
        return self(images).token_features

    def feature_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self(images).feature_maps


def vit_features(model: nn.Module, images: torch.Tensor) -> BackboneOutput:
    """[CLS] and patch tokens after the final norm; the patch tokens as a grid."""
    tokens = model.forward_features(images)  # (B, prefix + N, C), final norm applied
    prefix = getattr(model, "num_prefix_tokens", 1)
    patches = tokens[:, prefix:]
    grid_h, grid_w = model.patch_embed.dynamic_feat_size(images.shape[-2:])
    grid = patches.transpose(1, 2).reshape(len(images), -1, grid_h, grid_w)
    return BackboneOutput(global_features=tokens[:, 0], token_features=patches, feature_maps=[grid])


def resnet_stages(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """The stem (after ReLU, before max-pooling), then layer1 to layer4: strides 2 to 32, as
    segmentation_models_pytorch's ResNet encoder gives them to the reference's U-Net."""
    m = model
    stem = m.relu(m.bn1(m.conv1(images)))
    layer1 = m.layer1(m.maxpool(stem))
    layer2 = m.layer2(layer1)
    layer3 = m.layer3(layer2)
    return [stem, layer1, layer2, layer3, m.layer4(layer3)]


def resnet_features(model: nn.Module, images: torch.Tensor) -> BackboneOutput:
    """Global average pool of layer4, layer3 positions as tokens, stages 2-4 as maps."""
    m = model
    _, _, stage2, stage3, stage4 = resnet_stages(model, images)
    return BackboneOutput(
        global_features=torch.flatten(m.avgpool(stage4), 1),
        token_features=stage3.flatten(2).transpose(1, 2),
        feature_maps=[stage2, stage3, stage4],
    )


# The contract's outputs per architecture family, as functions of a plain (trainable) module:
# the frozen Backbone below and MGCA pretraining (pretrain/model.py) read features the same way.
FEATURES: dict[str, Callable[[nn.Module, torch.Tensor], BackboneOutput]] = {"vit": vit_features, "resnet": resnet_features}


class ViTBackbone(Backbone):
    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return vit_features(self.model, images)


class ResNetBackbone(Backbone):
    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, strides 2 to 32 (:func:`resnet_stages`): a U-Net decoder takes its
        skip connections from all five."""
        return resnet_stages(self.model, images)

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return resnet_features(self.model, images)


BACKBONE_CLASSES: dict[str, type[Backbone]] = {"vit": ViTBackbone, "resnet": ResNetBackbone}


def wrap(arch: Architecture, model: nn.Module) -> Backbone:
    return BACKBONE_CLASSES[arch.family](arch, model)
