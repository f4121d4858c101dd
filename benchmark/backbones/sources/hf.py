"""``hf:<folder>``: a local Hugging Face ``transformers`` folder (``save_pretrained`` layout).

The architecture comes from the folder's ``config.json``: a vision model (ViT, DINOv2 with or
without registers, Swin, ConvNeXt, ResNet) or the vision tower of a vision-language model
(CLIP, SigLIP: the text tower's weights are left out of the encoder). The preprocessing comes
from the folder's ``preprocessor_config.json`` (what the image processor does: size, rescale,
mean, std). The weights are the folder's own (``model.safetensors``, sharded or not, or
``pytorch_model.bin``), passed as ``--checkpoint <folder>``, or any other checkpoint holding
the same keys. Token models give the global feature the model pools (its ``pooler_output``,
else the [CLS] token of the last hidden state), the patch tokens and their grid; pyramids give
their pooled output and the last hidden state at strides 8, 16 and 32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from benchmark.backbones.architectures import Architecture, ArchitectureError
from benchmark.backbones.encoder import STAGE_STRIDES, Backbone, BackboneOutput, tokens_of
from benchmark.backbones.preprocessing import Preprocessing
from benchmark.backbones.sources import SOURCES, Source
from benchmark.registry import Registry

CONFIG, PROCESSOR = "config.json", "preprocessor_config.json"


@dataclass(frozen=True)
class ModelType:
    """How one ``model_type`` of config.json becomes an encoder."""

    model_class: str  # transformers class built from the (vision) config
    layout: Literal["tokens", "pyramid"]
    vision_config: str | None = None  # attribute holding the vision tower's config in a vision-language config
    build_kwargs: dict[str, Any] = field(default_factory=dict)
    forward_kwargs: dict[str, Any] = field(default_factory=dict)
    classifiers: tuple[str, ...] = ()  # keys of heads the encoder does not keep

    def prefix_tokens(self, config: Any) -> int:
        """Tokens before the patches in the last hidden state ([CLS], registers)."""
        if self.layout != "tokens" or self.model_class.startswith("Siglip"):
            return 0
        return 1 + getattr(config, "num_register_tokens", 0)


MODEL_TYPES: Registry[ModelType] = Registry("Hugging Face model type")
_INTERPOLATE = {"interpolate_pos_encoding": True}
MODEL_TYPES.add("vit", ModelType("ViTModel", "tokens", build_kwargs={"add_pooling_layer": False},
                                 forward_kwargs=_INTERPOLATE, classifiers=("pooler.",)))
MODEL_TYPES.add("dinov2", ModelType("Dinov2Model", "tokens"))
MODEL_TYPES.add("dinov2_with_registers", ModelType("Dinov2WithRegistersModel", "tokens"))
MODEL_TYPES.add("clip", ModelType("CLIPVisionModel", "tokens", vision_config="vision_config", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("clip_vision_model", ModelType("CLIPVisionModel", "tokens", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("siglip", ModelType("SiglipVisionModel", "tokens", vision_config="vision_config", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("siglip_vision_model", ModelType("SiglipVisionModel", "tokens", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("swin", ModelType("SwinModel", "pyramid"))
MODEL_TYPES.add("convnext", ModelType("ConvNextModel", "pyramid"))
MODEL_TYPES.add("resnet", ModelType("ResNetModel", "pyramid"))


class HFTokenBackbone(Backbone):
    def __init__(self, arch: Architecture, model: nn.Module, prefix_tokens: int, patch_size: int, forward_kwargs: dict) -> None:
        super().__init__(arch, model)
        self.prefix_tokens, self.patch_size, self.forward_kwargs = prefix_tokens, patch_size, forward_kwargs

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        out = self.model(pixel_values=images, **self.forward_kwargs)
        hidden = out.last_hidden_state
        patches = hidden[:, self.prefix_tokens:]
        height, width = (side // self.patch_size for side in images.shape[-2:])
        grid = patches.transpose(1, 2).reshape(len(images), -1, height, width)
        pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else hidden[:, 0]
        return BackboneOutput(global_features=pooled, token_features=patches, feature_maps=[grid])


class HFPyramidBackbone(Backbone):
    def __init__(self, arch: Architecture, model: nn.Module, stages: tuple[int, ...], forward_kwargs: dict) -> None:
        super().__init__(arch, model)
        self.stages, self.forward_kwargs = stages, forward_kwargs

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        out = self.model(pixel_values=images, output_hidden_states=True, **self.forward_kwargs)
        maps = [_stage_maps(out)[i] for i in self.stages]
        return BackboneOutput(global_features=out.pooler_output.flatten(1), token_features=tokens_of(maps[-1]), feature_maps=maps)


def checkpoint_names(model: nn.Module) -> dict[str, str]:
    """{key in a save_pretrained file: key in the module}: transformers >= 5 renames weights on load.

    ``revert_weight_conversion`` is what ``save_pretrained`` applies to write the original names;
    for the model types here it only renames, so each tensor keeps its identity through it.
    """
    from transformers.core_model_loading import revert_weight_conversion

    state = model.state_dict()
    module_key = {id(tensor): key for key, tensor in state.items()}
    reverted = revert_weight_conversion(model, dict(state))
    names = {key: module_key.get(id(tensor)) for key, tensor in reverted.items()}
    if None in names.values() or len(names) != len(state):
        raise ArchitectureError(f"{type(model).__name__}: transformers converts (not only renames) its weights on load; not supported")
    return names


def _stage_maps(out: Any) -> tuple[torch.Tensor, ...]:
    """Hidden states as (B, C, H, W) maps: Swin returns them as ``reshaped_hidden_states``."""
    return getattr(out, "reshaped_hidden_states", None) or out.hidden_states


def _config(folder: Path) -> tuple[str, Any]:
    config_file = folder / CONFIG
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise ArchitectureError(f"{config_file}: not a readable config.json ({type(error).__name__}: {error})") from None
    if model_type not in MODEL_TYPES:
        raise ArchitectureError(
            f"{config_file}: model type {model_type!r} is not supported; supported: {', '.join(MODEL_TYPES.names())}. "
            "For another architecture, name it through timm: or torchvision: and pass the weights with --checkpoint"
        )
    import transformers

    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a bad config
        raise ArchitectureError(f"{config_file}: transformers cannot read it ({type(error).__name__}: {error})") from None
    kind = MODEL_TYPES.get(model_type)
    return model_type, getattr(config, kind.vision_config) if kind.vision_config else config


def _side(value: Any, file: Path, key: str) -> int:
    """A size entry of an image-processor config: an int, {height, width} (square) or {shortest_edge}."""
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if "shortest_edge" in value:
            return int(value["shortest_edge"])
        if "height" in value and value.get("height") == value.get("width"):
            return int(value["height"])
    raise ArchitectureError(f"{file}: {key} {value!r} is not a square size (int, {{height, width}} or {{shortest_edge}})")


def read_preprocessing(folder: Path, channels: int) -> Preprocessing:
    """The image processor's preprocessing: size (after any centre crop), rescale, mean and std."""
    file = folder / PROCESSOR
    if not file.is_file():
        raise ArchitectureError(
            f"{folder}: no {PROCESSOR}, which holds the model's preprocessing (size, mean, std). Save the image "
            f"processor beside the model (AutoImageProcessor.from_pretrained(...).save_pretrained('{folder}'))"
        )
    try:
        processor = json.loads(file.read_text())
        if not isinstance(processor, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise ArchitectureError(f"{file}: not a readable image-processor config ({error})") from None
    key = "crop_size" if processor.get("do_center_crop") and "crop_size" in processor else "size"
    if key not in processor:
        raise ArchitectureError(f"{file}: no 'size' entry; the input size cannot be read")
    rescale = processor.get("rescale_factor", 1 / 255) if processor.get("do_rescale", True) else 1.0
    if processor.get("do_normalize", True):
        if "image_mean" not in processor or "image_std" not in processor:
            raise ArchitectureError(f"{file}: do_normalize without image_mean/image_std")
        mean, std = processor["image_mean"], processor["image_std"]
        mean, std = (tuple(float(v) for v in ([x] * channels if isinstance(x, (int, float)) else x)) for x in (mean, std))
    else:
        mean, std = (0.0,) * channels, (1.0,) * channels
    return Preprocessing(
        input_size=_side(processor[key], file, key), channels=channels, mean=mean, std=std,
        value_range=(0.0, 255.0 * rescale), source=f"{file} ({processor.get('image_processor_type', 'image processor')})",
    )


def _not_local(spec: str) -> str:
    looks_like_hub = "/" in spec.strip("/") and not spec.startswith((".", "/", "~"))
    hint = (f" Nothing is downloaded: fetch it yourself (huggingface-cli download {spec} --local-dir DIR) "
            "and pass hf:DIR") if looks_like_hub else ""
    return f"hf:{spec}: no such local folder.{hint}"


def resolve(spec: str) -> Architecture:
    folder = Path(spec).expanduser()
    if not folder.is_dir():
        raise ArchitectureError(_not_local(spec))
    if not (folder / CONFIG).is_file():
        raise ArchitectureError(f"{folder}: no {CONFIG}; hf: needs a transformers save_pretrained folder (config.json + weights)")
    model_type, config = _config(folder)
    kind = MODEL_TYPES.get(model_type)
    import transformers

    model_class = getattr(transformers, kind.model_class)

    def build() -> nn.Module:
        return model_class(config, **kind.build_kwargs)

    preprocessing = read_preprocessing(folder, getattr(config, "num_channels", 3))
    common = dict(name=f"hf:{spec}", source="hf", build_module=build, preprocessing=preprocessing,
                  classifier_prefixes=kind.classifiers, checkpoint_names=checkpoint_names)
    if kind.layout == "tokens":
        patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
        backbone = partial(HFTokenBackbone, prefix_tokens=kind.prefix_tokens(config), patch_size=patch, forward_kwargs=kind.forward_kwargs)
        return Architecture(family="vit", backbone=backbone, **common)
    size = preprocessing.input_size
    with torch.device("meta"), torch.no_grad():
        maps = _stage_maps(build().eval()(pixel_values=torch.empty(1, preprocessing.channels, size, size), output_hidden_states=True))
    last = {size // m.shape[-1]: i for i, m in enumerate(maps) if m.dim() == 4 and size % m.shape[-1] == 0}
    if not set(STAGE_STRIDES) <= set(last):
        raise ArchitectureError(f"{folder}: {model_type} hidden states have no maps at strides {STAGE_STRIDES} at {size} px")
    backbone = partial(HFPyramidBackbone, stages=tuple(last[s] for s in STAGE_STRIDES), forward_kwargs=kind.forward_kwargs)
    return Architecture(family="resnet" if model_type == "resnet" else "pyramid", backbone=backbone, **common)


SOURCES.add("hf", Source(
    name="hf", syntax="hf:<folder>", resolve=resolve,
    covers=f"a local transformers save_pretrained folder; model types: {', '.join(MODEL_TYPES.names())} "
           "(CLIP/SigLIP: the vision tower)",
    weights="--checkpoint <the same folder> (model.safetensors, sharded index, pytorch_model.bin) or a file with those keys",
    preprocessing=f"the folder's {PROCESSOR} (size or crop_size, rescale, image_mean, image_std)",
    example="hf:/models/rad-dino",
))
