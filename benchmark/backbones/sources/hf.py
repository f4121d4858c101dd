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
from benchmark.limits import MAX_IMAGE_SIDE, MAX_LAYERS, is_finite_number, is_whole
from benchmark.quoting import one_line, quote, quote_some
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
    cls_token: bool = True  # token models: a [CLS] token leads the sequence (SigLIP pools without one)

    def prefix_tokens(self, config: Any) -> int:
        """Tokens before the patches in the last hidden state ([CLS], then DINOv2's registers)."""
        return int(self.cls_token) + getattr(config, "num_register_tokens", 0)


MODEL_TYPES: Registry[ModelType] = Registry("Hugging Face model type")
_INTERPOLATE = {"interpolate_pos_encoding": True}
MODEL_TYPES.add("vit", ModelType("ViTModel", "tokens", build_kwargs={"add_pooling_layer": False},
                                 forward_kwargs=_INTERPOLATE, classifiers=("pooler.",)))
MODEL_TYPES.add("dinov2", ModelType("Dinov2Model", "tokens"))
MODEL_TYPES.add("dinov2_with_registers", ModelType("Dinov2WithRegistersModel", "tokens"))
MODEL_TYPES.add("clip", ModelType("CLIPVisionModel", "tokens", vision_config="vision_config", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("clip_vision_model", ModelType("CLIPVisionModel", "tokens", forward_kwargs=_INTERPOLATE))
MODEL_TYPES.add("siglip", ModelType("SiglipVisionModel", "tokens", vision_config="vision_config",
                                    forward_kwargs=_INTERPOLATE, cls_token=False))
MODEL_TYPES.add("siglip_vision_model", ModelType("SiglipVisionModel", "tokens", forward_kwargs=_INTERPOLATE, cls_token=False))
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
    state = model.state_dict()
    try:
        from transformers.core_model_loading import revert_weight_conversion
    except ImportError:  # transformers < 5 keeps the file names in its modules
        return {key: key for key in state}
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
        raise ArchitectureError(f"{config_file}: transformers cannot read it ({type(error).__name__}: {one_line(str(error))})") from None
    kind = MODEL_TYPES.get(model_type)
    vision = getattr(config, kind.vision_config) if kind.vision_config else config
    problem = _config_problem(vision)
    if problem:
        where = f"{kind.vision_config}." if kind.vision_config else ""
        raise ArchitectureError(f"{config_file}: {where}{problem}")
    return model_type, vision


# Sizes a vision config may declare: whole numbers >= 1, or non-empty lists of them (per stage, or height and width).
_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "patch_size", "image_size",
          "num_channels", "embed_dim", "embedding_size", "depths", "num_heads", "hidden_sizes", "window_size", "num_stages")


def _config_problem(config: Any) -> str | None:
    """What makes a vision config unbuildable, checked before anything is built (types, ranges, head counts).

    Sizes are not bounded here: a checkpoint must describe the model before it is built (its tensors'
    shapes are compared first), and a random initialisation must fit the machine (``Architecture.build``).
    """
    values = {key: getattr(config, key) for key in _SIZES if hasattr(config, key)}
    for key, value in values.items():
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items or not all(is_whole(item) and item >= 1 for item in items):
            return f"{key} {quote(value) if not isinstance(value, (list, tuple)) else quote_some(value)} must be a whole number >= 1 (or a list of them)"
    layers = [values.get("num_hidden_layers", 1), *(values.get("depths") or [])]
    if sum(layers) > MAX_LAYERS:
        return f"{sum(layers)} layers (num_hidden_layers, depths): more than {MAX_LAYERS}"
    registers = getattr(config, "num_register_tokens", 0)
    if not (is_whole(registers) and registers >= 0):
        return f"num_register_tokens {quote(registers)} must be a whole number >= 0"
    if hasattr(config, "mlp_ratio") and not (is_finite_number(config.mlp_ratio) and config.mlp_ratio > 0):
        return f"mlp_ratio {quote(config.mlp_ratio)} must be a number > 0"
    hidden, heads = values.get("hidden_size"), values.get("num_attention_heads")  # Swin: heads is a per-stage list
    if is_whole(hidden) and is_whole(heads) and hidden % heads:
        return f"hidden_size {hidden} is not a multiple of num_attention_heads {heads}"
    stages = {key: values[key] for key in ("depths", "num_heads", "hidden_sizes") if isinstance(values.get(key), (list, tuple))}
    if len({len(value) for value in stages.values()}) > 1:
        return f"per-stage lists of different lengths: {', '.join(f'{key} {list(value)}' for key, value in stages.items())}"
    if "embed_dim" in values and "num_heads" in stages:  # Swin: stage i has embed_dim * 2**i channels
        for stage, heads in enumerate(stages["num_heads"]):
            if (values["embed_dim"] * 2**stage) % heads:
                return f"stage {stage} has {values['embed_dim'] * 2**stage} channels, not a multiple of num_heads {heads}"
    patch, image = (values.get(key) for key in ("patch_size", "image_size"))
    if is_whole(patch) and is_whole(image) and patch > image:
        return f"patch_size {patch} is larger than image_size {image}"
    return None


def _side(value: Any, file: Path, key: str) -> int:
    """A size entry of an image-processor config: an int, {height, width} (square) or {shortest_edge}."""
    if isinstance(value, dict):
        value = value.get("shortest_edge", value.get("height") if value.get("height") == value.get("width") else None)
    if is_whole(value) and 1 <= value <= MAX_IMAGE_SIDE:
        return value
    raise ArchitectureError(f"{file}: {key} {quote(value)} is not a square size from 1 to {MAX_IMAGE_SIDE} "
                            "(int, {height, width} or {shortest_edge})")


def _number(processor: dict[str, Any], key: str, file: Path, default: float) -> float:
    value = processor.get(key, default)
    if not is_finite_number(value):
        raise ArchitectureError(f"{file}: {key} {quote(value)} is not a number")
    return float(value)


def _channel_values(processor: dict[str, Any], key: str, file: Path, channels: int) -> tuple[float, ...]:
    """image_mean / image_std: one number for every channel, or one per channel."""
    value = processor[key]
    values = [value] * channels if is_finite_number(value) else value
    if not (isinstance(values, list) and len(values) == channels and all(map(is_finite_number, values))):
        raise ArchitectureError(f"{file}: {key} {quote(value) if not isinstance(value, list) else quote_some(value)} "
                                f"is not a number or a list of {channels} numbers")
    return tuple(float(v) for v in values)


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
    rescale = _number(processor, "rescale_factor", file, 1 / 255) if processor.get("do_rescale", True) else 1.0
    if not rescale > 0:
        raise ArchitectureError(f"{file}: rescale_factor {rescale} is not positive")
    if processor.get("do_normalize", True):
        if "image_mean" not in processor or "image_std" not in processor:
            raise ArchitectureError(f"{file}: do_normalize without image_mean/image_std")
        mean, std = (_channel_values(processor, key, file, channels) for key in ("image_mean", "image_std"))
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
    try:  # on the meta device: nothing is allocated, whatever the sizes
        with torch.device("meta"), torch.no_grad():
            module = build()
            if kind.layout == "pyramid":
                size = preprocessing.input_size
                maps = _stage_maps(module.eval()(pixel_values=torch.empty(1, preprocessing.channels, size, size),
                                                 output_hidden_states=True))
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a config it cannot build
        raise ArchitectureError(f"{folder / CONFIG}: transformers cannot build {model_type} from it "
                                f"({type(error).__name__}: {one_line(str(error))})") from None
    common = dict(name=f"hf:{spec}", source="hf", build_module=build, preprocessing=preprocessing,
                  classifier_prefixes=kind.classifiers, checkpoint_names=checkpoint_names)
    if kind.layout == "tokens":
        patch = config.patch_size if isinstance(config.patch_size, int) else config.patch_size[0]
        backbone = partial(HFTokenBackbone, prefix_tokens=kind.prefix_tokens(config), patch_size=patch, forward_kwargs=kind.forward_kwargs)
        return Architecture(family="vit", backbone=backbone, **common)
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
