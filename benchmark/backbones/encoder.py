"""The frozen-backbone contract every task adapter relies on.

A backbone gives a global feature ``(B, D)``, token features ``(B, N, C)`` and multi-scale
feature maps ``[(B, C_i, H_i, W_i)]`` in increasing stride. Each architecture source reads them
the way its library defines them (``sources/``); the wrappers shared by several sources live
here, with the feature functions MGCA pretraining applies to its trainable encoders
(:data:`FEATURES`). A backbone stays in eval mode whatever the caller does, so BatchNorm
statistics never drift (reference defect B6).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from benchmark.backbones.architectures import Architecture

STAGE_STRIDES = (8, 16, 32)  # the feature maps a pyramid backbone gives (ResNet stages 2-4)


@dataclass
class BackboneOutput:
    global_features: torch.Tensor  # (B, D)
    token_features: torch.Tensor  # (B, N, C)
    feature_maps: list[torch.Tensor]  # [(B, C_i, H_i, W_i)], increasing stride


class Backbone(nn.Module):
    """A frozen encoder; subclasses read the contract's outputs from ``self.model``."""

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


def tokens_of(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H*W, C), row-major positions."""
    return feature_map.flatten(2).transpose(1, 2)


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
    """A torchvision-layout ResNet: global average pool of layer4; tokens are layer3 positions, as
    MGCA's local features (``mgca/models/backbones/encoder.py`` L114-133); maps are layers 2-4."""
    _, _, stage2, stage3, stage4 = resnet_stages(model, images)
    return BackboneOutput(
        global_features=torch.flatten(model.avgpool(stage4), 1),
        token_features=tokens_of(stage3),
        feature_maps=[stage2, stage3, stage4],
    )


def timm_features(model: nn.Module, images: torch.Tensor, n_maps: int) -> BackboneOutput:
    """timm's own feature API: ``forward_intermediates`` gives the last ``n_maps`` maps (a ViT's
    last block after the final norm, i.e. its [CLS]-free tokens as a grid; a pyramid's last
    stages) and the final features, ``forward_head(pre_logits=True)`` the global feature with the
    model's own pooling (a ViT's [CLS] after the final norm); the tokens are the last map's positions."""
    final, maps = model.forward_intermediates(images, indices=n_maps, norm=True, output_fmt="NCHW")
    return BackboneOutput(global_features=model.forward_head(final, pre_logits=True), token_features=tokens_of(maps[-1]),
                          feature_maps=list(maps))


# The contract's outputs per family of MGCA's architectures, as functions of a plain (trainable)
# module: the frozen backbones below and MGCA pretraining (pretrain/model.py) read features alike.
FEATURES: dict[str, Callable[[nn.Module, torch.Tensor], BackboneOutput]] = {
    "vit": partial(timm_features, n_maps=1), "resnet": resnet_features,
}


class ResNetBackbone(Backbone):
    """A torchvision-layout ResNet (:func:`resnet_features`)."""

    def stages(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every stage's output, strides 2 to 32 (:func:`resnet_stages`): a U-Net decoder takes its
        skip connections from all five."""
        return resnet_stages(self.model, images)

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return resnet_features(self.model, images)


class TimmBackbone(Backbone):
    """Any timm model, read through timm's feature API (:func:`timm_features`); ``n_maps`` maps are kept."""

    def __init__(self, arch: Architecture, model: nn.Module, n_maps: int) -> None:
        super().__init__(arch, model)
        self.n_maps = n_maps

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        return timm_features(self.model, images, self.n_maps)


class HookedBackbone(Backbone):
    """A convolutional classifier read through its own forward pass.

    The model's forward, with its final classifier replaced by ``Identity`` when it was built,
    gives the global feature (its own pooling); forward hooks on ``stages`` (module names, one
    per stride of :data:`STAGE_STRIDES`, see :func:`stage_modules`) give the feature maps; the
    tokens are the positions of the last map.
    """

    def __init__(self, arch: Architecture, model: nn.Module, stages: tuple[str, ...]) -> None:
        super().__init__(arch, model)
        self.stages = stages
        self._captured: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())
        for name in stages:
            modules[name].register_forward_hook(self._capture_hook(name))

    def _capture_hook(self, name: str):
        def capture(module: nn.Module, inputs: object, output: torch.Tensor) -> None:
            self._captured[name] = output

        return capture

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        self._captured = {}
        pooled = self.model(images)
        maps = [self._captured.pop(name) for name in self.stages]
        return BackboneOutput(global_features=pooled.flatten(1), token_features=tokens_of(maps[-1]), feature_maps=maps)


def stage_modules(model: nn.Module, channels: int, size: int = 224) -> dict[int, str]:
    """For each stride of :data:`STAGE_STRIDES`, the module whose output is the last map at that stride.

    ``model`` must live on the meta device (it is run once there, at no cost).

    Candidates are the model's children and the children of its ``nn.Sequential`` children (the
    stages of torchvision's ResNet, DenseNet, EfficientNet, ConvNeXt, RegNet, MobileNet, VGG);
    the order is the order of execution in one forward pass on the meta device. Strides with no
    such module are absent from the result.
    """
    candidates = [(name, module) for name, module in model.named_children()]
    candidates += [(f"{name}.{child_name}", child) for name, module in model.named_children()
                   if isinstance(module, nn.Sequential) for child_name, child in module.named_children()]
    calls: list[tuple[str, torch.Size]] = []
    handles = [module.register_forward_hook(
        lambda _m, _i, output, name=name: calls.append((name, output.shape)) if isinstance(output, torch.Tensor) else None)
        for name, module in candidates]
    try:
        with torch.device("meta"), torch.no_grad():
            model.eval()(torch.empty(1, channels, size, size))
    finally:
        for handle in handles:
            handle.remove()
    found: dict[int, str] = {}
    for name, shape in calls:  # later calls overwrite earlier ones: the last map at each stride wins
        if len(shape) == 4 and shape[-1] == shape[-2] and shape[-1] and size % shape[-1] == 0 and size // shape[-1] in STAGE_STRIDES:
            found[size // shape[-1]] = name
    return found
