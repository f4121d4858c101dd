"""mmseg modules of the segmentation task: the frozen encoder as a backbone, and the two decoders.

Everything here is registered in mmseg's ``MODELS`` registry and assembled by mmseg's
``EncoderDecoder`` from the configs in ``configs/``:

* :class:`EncoderOutputsBackbone` (``FrozenEncoder`` in the configs): any
  :class:`~benchmark.backbones.LoadedBackbone` (weights only ever read by the suite's safe
  loader), frozen and in eval mode (:mod:`benchmark.backbones.frozen`), as an mmseg backbone. It turns
  0-255 pixels into the encoder's input with the backbone's own preprocessing
  (:func:`~benchmark.backbones.normalise`). Its outputs are the multi-scale stages (``stages``,
  for the U-Net: a ResNet's five, a pyramid backbone's three maps) or the patch-token grid
  (``tokens``, for SETR).
* :class:`PrecomputedFeatures` and :class:`FeaturePreProcessor`: the ``cached`` mode's
  stand-ins for the encoder and the image pre-processor: the batch already holds the encoder's
  outputs, computed once on un-augmented images (``features.py``).
* :class:`UNetHead` and :class:`SETRHead`: the reference's decoders (PROTOCOL.md 8.4).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from mmcv.cnn import build_norm_layer
from mmengine.model import BaseDataPreprocessor, BaseModule
from mmseg.models.decode_heads.decode_head import BaseDecodeHead
from mmseg.models.decode_heads.setr_up_head import SETRUPHead
from mmseg.registry import MODELS
from torch import nn

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.backbones.dense import SINGLE_MAP_STRIDE, fit_input, on_task_grid, task_strides
from benchmark.backbones.frozen import FrozenEncoder
from benchmark.backbones.encoder import ResNetBackbone

EncoderOutputs = Literal["stages", "tokens"]


class HeadError(ValueError):
    """A head cannot be put on this encoder (a U-Net needs the five stages of a ResNet)."""


def encoder_outputs(backbone: LoadedBackbone, images: torch.Tensor, outputs: EncoderOutputs) -> list[torch.Tensor]:
    """What a decoder reads from the frozen encoder (``images``: already preprocessed).

    ``stages``: a torchvision-layout ResNet's five stage outputs, strides 2 to 32
    (:meth:`ResNetBackbone.stages`, as the reference's U-Net); any other multi-scale encoder (a
    ``pyramid`` or timm ResNet) gives its feature maps at strides 8, 16, 32, and the U-Net's two
    finest blocks upsample without a skip.
    ``tokens``: the token features (ViT patch tokens after the final norm; ResNet layer3
    positions) as a ``[B, C, side, side]`` grid of the square input, at stride 16 of it.

    A fixed-size model sees its own input size, and maps or grids off the input's grid at those
    strides are resampled onto it (``benchmark/backbones/dense.py``).
    """
    model, size = backbone.model, images.shape[-1]
    images = fit_input(images, backbone.preprocessing)
    if outputs == "stages":
        if isinstance(model, ResNetBackbone):
            return model.stages(images)
        if model.arch.family == "vit":
            raise HeadError(f"the U-Net head needs the stages of a multi-scale encoder; {backbone.spec.name} is a "
                            f"vit ({model.arch.name}): use the setr head")
        return on_task_grid(model.feature_maps(images), task_strides(model.arch), size)
    tokens = model.token_features(images)
    side = math.isqrt(tokens.shape[1])
    if side * side != tokens.shape[1]:
        raise HeadError(f"{tokens.shape[1]} tokens do not form a square grid")
    return on_task_grid([tokens.transpose(1, 2).reshape(len(tokens), -1, side, side)], [SINGLE_MAP_STRIDE], size)


@MODELS.register_module(name="FrozenEncoder")  # the name the head configs give the backbone
class EncoderOutputsBackbone(FrozenEncoder):
    """mmseg backbone: the frozen suite encoder's outputs that the decoder reads (``stages`` or
    ``tokens``); frozen, eval, never saved (:class:`benchmark.backbones.frozen.FrozenEncoder`)."""

    def __init__(self, encoder: LoadedBackbone, outputs: EncoderOutputs) -> None:
        super().__init__(encoder)
        self.outputs = outputs

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``images``: 0-255 pixels ``[B, 3, H, W]`` from the data pre-processor."""
        return tuple(encoder_outputs(self.encoder, normalise(images, self.encoder.preprocessing), self.outputs))


@MODELS.register_module()
class PrecomputedFeatures(BaseModule):
    """The ``cached`` mode's backbone: the batch already holds the encoder's outputs."""

    def forward(self, features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return tuple(features)


@MODELS.register_module()
class FeaturePreProcessor(BaseDataPreprocessor):
    """Stacks per-image lists of cached encoder outputs into one float tensor per level."""

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)  # pseudo_collate has already grouped the inputs per level
        return {"inputs": [torch.stack(list(level)).float() for level in data["inputs"]], "data_samples": data["data_samples"]}


class SigmoidHeadMixin:
    """One sigmoid channel: mmseg's ``acc_seg`` (an arg-max over channels) means nothing here."""

    def loss_by_feat(self, seg_logits: torch.Tensor, batch_data_samples: list) -> dict:
        losses = super().loss_by_feat(seg_logits, batch_data_samples)  # type: ignore[misc]
        losses.pop("acc_seg", None)
        return losses


def conv_bn_relu(in_channels: int, out_channels: int, norm_cfg: dict, bias: bool) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias),
            build_norm_layer(norm_cfg, out_channels)[1], nn.ReLU(inplace=True)]


class UNetBlock(nn.Module):
    """Nearest x2 upsampling, concatenation with the skip, two conv3x3-BN-ReLU (smp's DecoderBlock)."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int, norm_cfg: dict) -> None:
        super().__init__()
        self.convs = nn.Sequential(*conv_bn_relu(in_channels + skip_channels, out_channels, norm_cfg, bias=False),
                                   *conv_bn_relu(out_channels, out_channels, norm_cfg, bias=False))

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.convs(x if skip is None else torch.cat([x, skip], dim=1))


# segmentation_models_pytorch's initialisation of the reference's U-Net decoder and head.
UNET_INIT = [
    dict(type="Kaiming", layer="Conv2d", mode="fan_in", nonlinearity="relu", distribution="uniform", bias=0),
    dict(type="Constant", layer="BatchNorm2d", val=1, bias=0),
    dict(type="Xavier", distribution="uniform", bias=0, override=dict(name="conv_seg")),
]


@MODELS.register_module()
class UNetHead(SigmoidHeadMixin, BaseDecodeHead):
    """The reference's U-Net decoder (``smp.Unet("resnet50")``, decoder 256/128/64/32/16) as a decode head.

    A decode head, not mmseg's ``UNet``: that class is a whole encoder-decoder backbone with its
    own trainable encoder, while the protocol trains only a decoder on a given frozen encoder.
    Input: the encoder's five stages (strides 2, 4, 8, 16, 32). Five blocks each upsample x2 and
    concatenate the next shallower stage (the last block has no skip), so the output has the
    input's size; then a 3x3 convolution to one logit (smp's segmentation head, no dropout).
    """

    def __init__(self, in_channels: Sequence[int], decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
                 norm_cfg: dict | None = None, init_cfg: Any = UNET_INIT, **kwargs: Any) -> None:
        norm_cfg = norm_cfg or dict(type="BN")
        super().__init__(in_channels=list(in_channels), channels=decoder_channels[-1], in_index=list(range(len(in_channels))),
                         input_transform="multiple_select", norm_cfg=norm_cfg, init_cfg=init_cfg, **kwargs)
        deepest_first = list(in_channels)[::-1]
        skips = deepest_first[1:] + [0] * (len(decoder_channels) - len(deepest_first) + 1)
        inputs = [deepest_first[0], *decoder_channels[:-1]]
        self.blocks = nn.ModuleList(UNetBlock(i, s, o, norm_cfg) for i, s, o in zip(inputs, skips, decoder_channels))
        self.conv_seg = nn.Conv2d(decoder_channels[-1], self.out_channels, kernel_size=3, padding=1)

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        stages = self._transform_inputs(inputs)[::-1]
        x = stages[0]
        for index, block in enumerate(self.blocks):
            x = block(x, stages[index + 1] if index + 1 < len(stages) else None)
        return self.cls_seg(x)


@MODELS.register_module()
class SETRHead(SigmoidHeadMixin, SETRUPHead):
    """mmseg's SETR progressive-upsampling head with the reference's widths (``SETRModel``).

    ``SETRUPHead.forward`` is used as it is: a module on the token sequence, then the
    conv-norm-ReLU-upsample stages, then the classifier. Three of its parts are set to the
    reference's (``mgca/models/backbones/transformer_seg.py``), which ``SETRUPHead``'s arguments
    cannot express, so its ``__init__`` is bypassed for ``BaseDecodeHead``'s:

    * the token module is the reference's ``Linear(C, C)`` (``Encoder2D.final_dense``), not a LayerNorm;
    * one width per stage (512/256/128/64), conv3x3 with bias, BN, ReLU, bilinear x2 with
      ``align_corners=True``, where ``SETRUPHead`` gives every stage the same width;
    * the classifier is a 3x3 convolution to one logit (``Decoder2D.final_out``), not 1x1.

    From a stride-16 token grid, four x2 stages give the input's size. PyTorch's default
    initialisation, as the reference.
    """

    def __init__(self, in_channels: int, stage_channels: Sequence[int] = (512, 256, 128, 64),
                 norm_cfg: dict | None = None, **kwargs: Any) -> None:
        norm_cfg = norm_cfg or dict(type="BN")
        BaseDecodeHead.__init__(self, in_channels=in_channels, channels=stage_channels[-1], norm_cfg=norm_cfg,
                                align_corners=True, init_cfg=None, **kwargs)
        self.norm = nn.Linear(in_channels, in_channels)
        widths = [in_channels, *stage_channels]
        self.up_convs = nn.ModuleList(
            nn.Sequential(*conv_bn_relu(widths[k], widths[k + 1], norm_cfg, bias=True),
                          nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True))
            for k in range(len(stage_channels))
        )
        self.conv_seg = nn.Conv2d(stage_channels[-1], self.out_channels, kernel_size=3, padding=1)
