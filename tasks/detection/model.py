"""The frozen suite encoder inside an mmdet detector, and the detector built from a config file.

``EncoderPyramid`` (registered in mmdet's ``MODELS`` as ``FrozenEncoder``) is the detector's
backbone: the suite's frozen encoder (:class:`benchmark.backbones.frozen.FrozenEncoder`: safe
weights only, eval mode, not a submodule, so checkpoints hold the head only) and a feature
pyramid trained with the head. Its input is either images (``paper`` mode: the encoder runs
every step) or the encoder's maps read from the feature store (``cached`` mode, no encoder needed).

Both go through the same pyramid, keyed by backbone family: a ResNet's stages 2-4 are the
multi-scale maps (strides 8/16/32); a ViT's single stride-16 map becomes a simple feature
pyramid, ViTDet style (a stride-2 deconvolution to 8, the map itself at 16, max pooling to 32),
trained with the head. A ViT of another patch size, or a fixed-size model, has its map
resampled onto that grid first (``benchmark/backbones/dense.py``).

A pyramid backbone (ConvNeXt, Swin, DenseNet, EfficientNet, ... through timm's
``forward_intermediates`` or a torchvision model's stages) gives its own maps at strides 8/16/32,
used as they are, like a ResNet's.

``DetectionInputs`` is the detector's data preprocessor: it batches either kind of input.
Image normalisation (the backbone's own preprocessing, :func:`benchmark.backbones.normalise`:
channels, intensity range, mean/std) and the encoder call (:func:`encoder_maps`) are shared with
the feature cache, so both modes feed the head the same maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmdet.registry import MODELS
from mmengine.config import Config, ConfigDict
from mmengine.model import BaseDataPreprocessor, BaseModel
from torch import nn

from benchmark.backbones import LoadedBackbone, Preprocessing, normalise
from benchmark.backbones.dense import fit_input, on_task_grid, task_strides
from benchmark.backbones.frozen import FrozenEncoder
from benchmark.registry import Registry
from tasks.detection.protocol import CONFIG_DIR, DetectionProtocol, DetectorHead, InputGeometry

PYRAMID_STRIDES = (8, 16, 32)


@torch.no_grad()
def encoder_maps(encoder: LoadedBackbone, images: torch.Tensor) -> list[torch.Tensor]:
    """The frozen encoder's maps (``feature_maps()``) of normalised images, on the input's grid at
    :func:`~benchmark.backbones.dense.task_strides` (a fixed-size model sees its own size)."""
    encoder.model.eval()
    maps = encoder.model.feature_maps(fit_input(images, encoder.preprocessing))
    return on_task_grid(maps, task_strides(encoder.model.arch), images.shape[-1])


class IdentityPyramid(nn.Module):
    """A ResNet's stages 2-4, or any pyramid backbone's last three stages, are already maps at strides 8, 16, 32."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if tuple(strides) != PYRAMID_STRIDES:
            raise ValueError(f"expected maps at strides {PYRAMID_STRIDES}, the encoder gives {tuple(strides)}")

    @staticmethod
    def output_channels(channels: Sequence[int]) -> tuple[int, ...]:
        return tuple(channels)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return list(maps)


class SimpleFeaturePyramid(nn.Module):
    """ViTDet's simple feature pyramid from one stride-16 map: a 2x2 stride-2 deconvolution (to
    half the channels) for stride 8, the map for 16, 2x2 max pooling for 32. The lateral and
    output convolutions of ViTDet are the neck's (YOLOv3 neck or FPN)."""

    def __init__(self, channels: Sequence[int], strides: Sequence[int]) -> None:
        super().__init__()
        if tuple(strides) != (16,):
            raise ValueError(f"a simple feature pyramid starts from one stride-16 map, the encoder gives strides {tuple(strides)}")
        (width,) = channels
        self.up = nn.ConvTranspose2d(width, width // 2, kernel_size=2, stride=2)
        self.down = nn.MaxPool2d(kernel_size=2, stride=2)

    @staticmethod
    def output_channels(channels: Sequence[int]) -> tuple[int, ...]:
        (width,) = channels
        return (width // 2, width, width)

    def forward(self, maps: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        (grid,) = maps
        return [self.up(grid), grid, self.down(grid)]


PYRAMIDS: Registry[type[IdentityPyramid | SimpleFeaturePyramid]] = Registry("feature pyramid")
PYRAMIDS.add("resnet", IdentityPyramid)
PYRAMIDS.add("pyramid", IdentityPyramid)
PYRAMIDS.add("vit", SimpleFeaturePyramid)


@MODELS.register_module(name="FrozenEncoder")  # the name the head configs give the backbone
class EncoderPyramid(FrozenEncoder):
    """mmdet backbone: the frozen suite encoder (attached in paper mode) and the feature pyramid
    trained with the head; see the module docstring."""

    def __init__(self, family: str, in_channels: Sequence[int], in_strides: Sequence[int], init_cfg: Any = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.pyramid = PYRAMIDS.get(family)(in_channels, in_strides)

    def forward(self, inputs: torch.Tensor | Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        if isinstance(inputs, torch.Tensor):  # images: paper mode
            maps = encoder_maps(self.encoder, inputs)
        else:  # the encoder's maps, read from the feature store
            maps = list(inputs)
        return tuple(self.pyramid(maps))


@MODELS.register_module()
class DetectionInputs(BaseDataPreprocessor):
    """Batches a loader's inputs on the model's device: uint8 images [3, s, s] are stacked and
    turned into the encoder's input with its preprocessing (``Preprocessing.to_dict()``, as the
    config carries it); cached encoder maps (a tuple per image, one array per level, which
    mmengine's ``pseudo_collate`` turns into one list per level) are stacked per level and cast to float32."""

    def __init__(self, preprocessing: dict | None = None, non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        self.preprocessing = Preprocessing.from_dict(preprocessing) if preprocessing is not None else None

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data["inputs"]
        if isinstance(inputs[0], torch.Tensor):
            if self.preprocessing is None:
                raise RuntimeError("DetectionInputs got images but no preprocessing (detector_config sets the backbone's)")
            batch: torch.Tensor | tuple[torch.Tensor, ...] = normalise(torch.stack(inputs), self.preprocessing)
        else:
            batch = tuple(torch.stack(level).float() for level in inputs)
        return {"inputs": batch, "data_samples": data["data_samples"]}


def _scaled(value: Any, factor: float) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_scaled(item, factor) for item in value)
    return value * factor


def detector_config(head: DetectorHead, encoder: LoadedBackbone, geometry: InputGeometry, protocol: DetectionProtocol,
                    options: dict[str, Any] | None = None) -> Config:
    """The head's config file with ``options`` (``key=value`` overrides) merged, then the values
    that depend on the run filled in: encoder family, channels and strides; neck input channels;
    pixel lengths scaled to the input size; the encoder's preprocessing."""
    cfg = Config.fromfile(CONFIG_DIR / head.config)
    if options:
        cfg.merge_from_dict(dict(options))
    arch = encoder.model.arch
    model = cfg.model
    model.backbone.update(family=arch.family, in_channels=list(arch.feature_map_dims), in_strides=list(task_strides(arch)))
    model.data_preprocessor.update(preprocessing=encoder.preprocessing.to_dict())
    channels = list(PYRAMIDS.get(arch.family).output_channels(arch.feature_map_dims))
    model.neck.in_channels = channels[::-1] if head.neck_order == "deepest_first" else channels
    factor = geometry.input_size / head.pixel_reference_size
    for key in head.pixel_keys:
        *path, leaf = key.split(".")
        node = cfg
        for part in path:
            node = node[part]
        node[leaf] = _scaled(node[leaf], factor)
    return cfg


def build_detector(cfg: Config, seed: int) -> BaseModel:
    """The mmdet detector of ``cfg.model`` on the CPU, without encoder. Layers without an mmdet
    initialiser keep PyTorch's default draw from ``seed``; mmdet's ``init_weights`` is left to
    the caller (mmengine's Runner calls it after seeding, and warns when it was called before)."""
    import mmdet.models  # noqa: F401 - registers mmdet's detectors, necks, heads
    import tasks.detection.heads  # noqa: F401 - registers MGCAYOLOHead

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MODELS.build(ConfigDict(cfg.model))
