"""``torchvision:<name>``: a torchvision classification model, built without weights.

ResNets (``resnet*``, ``resnext*``, ``wide_resnet*``) are read as MGCA reads its ResNet-50
(:class:`~benchmark.backbones.encoder.ResNetBackbone`). Other convolutional classifiers
(DenseNet, EfficientNet, ConvNeXt, RegNet, MobileNet, VGG, ...) are read through their own
forward pass, final classifier removed, with hooks on their stages
(:class:`~benchmark.backbones.encoder.HookedBackbone`). Transformers (``vit_*``, ``swin_*``,
``maxvit_t``) have no stage maps there: name them through ``timm:``. Preprocessing is the one
torchvision's ImageNet weights declare (their ``transforms()``: crop size, mean, std).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

import torchvision
from torch import nn

from benchmark.backbones.architectures import Architecture, ArchitectureError
from benchmark.backbones.encoder import STAGE_STRIDES, HookedBackbone, ResNetBackbone, stage_modules
from benchmark.backbones.preprocessing import Preprocessing
from benchmark.backbones.sources import SOURCES, Source

RESNET_PREFIXES = ("resnet", "resnext", "wide_resnet")
# The reference's linear probe upsamples the 224 crop to 299 for its (torchvision-layout) ResNet-50
# (defect B20): the MGCA protocol's input rule for this architecture, applied where the protocol's
# rules are in force (classification adapter), whatever the architecture is called.
B20_LINEAR_PROBE_INPUT = {"resnet50": 299}


def classifier_name(model: nn.Module) -> str:
    """The final classifier of a torchvision model: its last ``nn.Linear`` (``fc``, ``classifier.1``, ...)."""
    linears = [name for name, module in model.named_modules() if isinstance(module, nn.Linear)]
    if not linears:
        raise ArchitectureError(f"{type(model).__name__}: no final nn.Linear classifier to remove")
    return linears[-1]


def without_classifier(model: nn.Module) -> nn.Module:
    """``model`` with its final classifier replaced by ``Identity``: its forward gives pre-logit features."""
    parent, _, child = classifier_name(model).rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, nn.Identity())
    return model


def builder(model_name: str) -> Callable[[], nn.Module]:
    return lambda: without_classifier(torchvision.models.get_model(model_name, weights=None))


def torchvision_architecture(
    name: str, model_name: str, preprocessing: Preprocessing, source: str = "torchvision",
    build: Callable[[], nn.Module] | None = None, linear_probe_input_size: int | None = None,
) -> Architecture:
    """A torchvision(-layout) classifier as an encoder; ``build`` overrides the plain constructor (xrv)."""
    build = build or builder(model_name)
    common = dict(name=name, source=source, build_module=build, preprocessing=preprocessing,
                  linear_probe_input_size=linear_probe_input_size)
    if model_name.startswith(RESNET_PREFIXES):
        return Architecture(family="resnet", backbone=ResNetBackbone, classifier_prefixes=("fc.",), **common)
    import torch

    with torch.device("meta"):
        model = torchvision.models.get_model(model_name, weights=None)
        classifier = classifier_name(model)
        stages = stage_modules(without_classifier(model), preprocessing.channels, preprocessing.input_size)
    if set(stages) != set(STAGE_STRIDES):
        raise ArchitectureError(
            f"{name}: no feature maps at strides {STAGE_STRIDES} (found {sorted(stages)}); torchvision transformers "
            "have none. Use the timm equivalent (timm:<name>), which gives multi-scale maps for every family"
        )
    return Architecture(
        family="pyramid", backbone=partial(HookedBackbone, stages=tuple(stages[s] for s in STAGE_STRIDES)),
        classifier_prefixes=(f"{classifier}.",), **common,
    )


def imagenet_preprocessing(model_name: str) -> Preprocessing:
    transforms = torchvision.models.get_model_weights(model_name).DEFAULT.transforms()
    return Preprocessing(
        input_size=transforms.crop_size[0], channels=3, mean=tuple(transforms.mean), std=tuple(transforms.std),
        source=f"torchvision {torchvision.models.get_model_weights(model_name).DEFAULT} transforms",
    )


def resolve(model_name: str) -> Architecture:
    names = torchvision.models.list_models(module=torchvision.models)
    if model_name not in names:
        close = difflib.get_close_matches(model_name, names, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(f'torchvision:{c}') for c in close)}?" if close else ""
        raise ArchitectureError(f"unknown torchvision classification model {model_name!r}.{hint} Known: "
                                "torchvision.models.list_models(module=torchvision.models)")
    return torchvision_architecture(f"torchvision:{model_name}", model_name, imagenet_preprocessing(model_name),
                                    linear_probe_input_size=B20_LINEAR_PROBE_INPUT.get(model_name))


SOURCES.add("torchvision", Source(
    name="torchvision", syntax="torchvision:<model name>", resolve=resolve,
    covers="torchvision's convolutional classifiers: ResNet/ResNeXt, DenseNet, EfficientNet, ConvNeXt, RegNet, "
           "MobileNet, VGG (torchvision.models.list_models(module=torchvision.models)); transformers: use timm:",
    weights="--checkpoint FILE: a state dict, Lightning or other training checkpoint (the encoder's prefix is found)",
    preprocessing="the transforms of torchvision's ImageNet weights for the model (crop size, mean, std)",
    example="torchvision:densenet121",
))
