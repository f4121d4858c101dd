"""``timm:<name>``: any timm model (``timm.list_models()``, with or without a ``.tag``), built without weights.

Features come from timm's own API (:func:`~benchmark.backbones.encoder.timm_features`): the
last block of a token model, the last three stages of a pyramid, the global feature with the
model's own pooling, the tokens as the last map's positions. Token models are built with
``dynamic_img_size`` where timm supports it, so they take the protocol's crop at any size.
Preprocessing is timm's pretrained config for the name (the tag's when one is given).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from functools import partial

import timm
import torch
from timm.data import resolve_model_data_config
from torch import nn

from benchmark.backbones.architectures import Architecture, ArchitectureError, Family
from benchmark.backbones.encoder import TimmBackbone
from benchmark.backbones.preprocessing import Preprocessing
from benchmark.backbones.sources import SOURCES, Source

HUB_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def builder(model_name: str, dynamic_size: bool) -> Callable[[], nn.Module]:
    kwargs = {"dynamic_img_size": True} if dynamic_size else {}
    return lambda: timm.create_model(model_name, pretrained=False, num_classes=0, **kwargs)


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The classifier module(s) timm names in the pretrained config (``head``, ``fc``, ``head.fc``, ...)."""
    names = model.pretrained_cfg.get("classifier") or ()
    return tuple(f"{name}." for name in ((names,) if isinstance(names, str) else names))


def timm_architecture(
    name: str, model_name: str, family: Family, dynamic_size: bool, preprocessing: Preprocessing,
    classifiers: tuple[str, ...], source: str = "timm",
) -> Architecture:
    return Architecture(
        name=name, source=source, family=family, build_module=builder(model_name, dynamic_size),
        backbone=partial(TimmBackbone, n_maps=1 if family == "vit" else 3), preprocessing=preprocessing,
        classifier_prefixes=classifiers,
    )


def _check_name(model_name: str) -> None:
    if model_name.startswith(HUB_PREFIXES):
        raise ArchitectureError(
            f"timm:{model_name}: nothing is downloaded. Name the timm architecture (timm:<name>) and pass the weights "
            "with --checkpoint FILE, or download the Hugging Face folder yourself and use hf:<folder>"
        )
    architecture, tag = timm.models.split_model_name_tag(model_name)
    if not timm.is_model(architecture):
        close = difflib.get_close_matches(architecture, timm.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(f'timm:{c}') for c in close)}?" if close else ""
        raise ArchitectureError(f"unknown timm model {architecture!r}.{hint} List them with python -c \"import timm; print(timm.list_models())\"")
    if tag and timm.models.get_pretrained_cfg(model_name, allow_unregistered=False) is None:
        tags = sorted(n.partition(".")[2] for n in timm.list_pretrained(f"{architecture}.*"))
        raise ArchitectureError(f"timm model {architecture!r} has no pretrained tag {tag!r}; its tags: {tags or 'none'}")


def _features_at(model: nn.Module, channels: int, size: int) -> object:
    """``forward_features`` of a model built on the meta device at ``size`` px, or None where it fails."""
    with torch.device("meta"), torch.no_grad():
        try:
            return model.forward_features(torch.empty(1, channels, size, size))
        except (TypeError, AssertionError, RuntimeError, ValueError, IndexError):
            return None


def resolve(model_name: str) -> Architecture:
    _check_name(model_name)
    dynamic_size = True
    with torch.device("meta"):
        try:
            model = builder(model_name, dynamic_size=True)()
        except TypeError:  # the model has no dynamic_img_size option (CNNs and a few transformers)
            dynamic_size = False
            model = builder(model_name, dynamic_size=False)()
    if not hasattr(model, "forward_intermediates"):
        raise ArchitectureError(f"timm:{model_name}: {type(model).__name__} has no forward_intermediates, timm's feature "
                                "API that gives the feature maps; this model cannot be evaluated here")
    config = resolve_model_data_config(model)
    channels, size = config["input_size"][0], config["input_size"][-1]
    # A pass on the meta device at twice the size: a model that fails there has position embeddings
    # it cannot resize (no dynamic sizing), and takes its own size only.
    features = _features_at(model, channels, 2 * size)
    fixed_size = features is None
    if fixed_size:
        features = _features_at(model, channels, size)
    if not isinstance(features, torch.Tensor) or features.dim() not in (3, 4):
        raise ArchitectureError(f"timm:{model_name}: forward_features gives {type(features).__name__}, not a token "
                                "sequence or a feature map; this model cannot be evaluated here")
    family: Family = "vit" if features.dim() == 3 else ("resnet" if type(model).__name__ == "ResNet" else "pyramid")
    tag = model.pretrained_cfg.get("tag") or "default"
    preprocessing = Preprocessing(
        input_size=size, channels=channels, mean=tuple(config["mean"]), std=tuple(config["std"]), fixed_size=fixed_size,
        source=f"timm pretrained config of {model.pretrained_cfg.get('architecture', model_name)}.{tag}",
    )
    return timm_architecture(f"timm:{model_name}", model_name, family, dynamic_size, preprocessing, classifier_prefixes(model))


SOURCES.add("timm", Source(
    name="timm", syntax="timm:<model name>[.<pretrained tag>]", resolve=resolve,
    covers="any timm model: ViT, DeiT, EVA, Swin, ConvNeXt, ResNet, DenseNet, EfficientNet, ... "
           "(python -c \"import timm; print(timm.list_models())\")",
    weights="--checkpoint FILE: timm save_checkpoint/train.py output, a state dict, .safetensors",
    preprocessing="timm's pretrained config of the name (the tag's when given)",
    example="timm:convnext_tiny",
))
