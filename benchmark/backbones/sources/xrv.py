"""``xrv:<weights name>``: torchxrayvision's chest X-ray classifiers, weights from a local file.

``xrv:densenet121-res224-<all|nih|pc|chex|rsna|mimic_nb|mimic_ch>`` builds torchxrayvision's own
``DenseNet`` class (1 input channel); its released weight files are pickled ``nn.Module``
objects, read by the safe loader without running their code. ``xrv:resnet50-res512-all`` is the
torchvision ResNet-50 with a 1-channel stem that torchxrayvision builds; its weight file is a
state dict. Preprocessing is torchxrayvision's: one channel, pixels mapped onto [-1024, 1024]
(``xrv.utils.normalize``), at the resolution the weights were trained at.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from benchmark.backbones.architectures import Architecture, ArchitectureError
from benchmark.backbones.encoder import STAGE_STRIDES, HookedBackbone, stage_modules
from benchmark.backbones.preprocessing import Preprocessing
from benchmark.backbones.sources import SOURCES, Source
from benchmark.backbones.sources.torchvision import torchvision_architecture

FAMILIES = ("densenet121-res224-", "resnet50-res512-")
CLASSIFIERS = ("classifier.", "op_threshs")  # DenseNet head and its operating-point buffer


def _xrv_models():
    import torchxrayvision

    return torchxrayvision.models


def build_densenet() -> nn.Module:
    model = _xrv_models().DenseNet(weights=None)
    model.classifier = nn.Identity()  # forward then returns torchxrayvision's own features2: relu, average pool
    return model


def build_resnet50() -> nn.Module:
    """torchxrayvision's ResNet-50 (``xrv.models.ResNet``, which cannot be built without downloading)."""
    import torchvision

    model = torchvision.models.resnet50(weights=None)
    model.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)  # as torchxrayvision patches it
    model.fc = nn.Identity()
    return model


def resolve(weights_name: str) -> Architecture:
    urls = _xrv_models().model_urls
    known = sorted(name for name in urls if name.startswith(FAMILIES))
    if weights_name not in known:
        raise ArchitectureError(f"unknown torchxrayvision weights name {weights_name!r}; one of: {', '.join(known)}")
    preprocessing = Preprocessing(
        input_size=urls[weights_name]["input_resolution"], channels=1, mean=(0.0,), std=(1.0,),
        value_range=(-1024.0, 1024.0), source="torchxrayvision: 1 channel, [0, 255] mapped onto [-1024, 1024] "
        "(xrv.utils.normalize), the weights' input_resolution",
    )
    name = f"xrv:{weights_name}"
    if weights_name.startswith("resnet50"):
        return torchvision_architecture(name, "resnet50", preprocessing, source="xrv", build=build_resnet50)
    with torch.device("meta"):
        stages = stage_modules(build_densenet(), channels=1, size=preprocessing.input_size)
    return Architecture(
        name=name, source="xrv", family="pyramid", build_module=build_densenet, preprocessing=preprocessing,
        backbone=partial(HookedBackbone, stages=tuple(stages[s] for s in STAGE_STRIDES)), classifier_prefixes=CLASSIFIERS,
    )


SOURCES.add("xrv", Source(
    name="xrv", syntax="xrv:<weights name>", resolve=resolve,
    covers="torchxrayvision's DenseNet-121 (densenet121-res224-all, -nih, -pc, -chex, -rsna, -mimic_nb, -mimic_ch) "
           "and ResNet-50 (resnet50-res512-all)",
    weights="--checkpoint FILE: the released .pt file of those weights (downloaded by you; nothing is fetched)",
    preprocessing="torchxrayvision's: 1 channel, [-1024, 1024], the weights' input resolution (224 or 512)",
    example="xrv:densenet121-res224-all",
))
