"""``open_clip:<model config>``: the visual tower of an open_clip model.

The config is a built-in open_clip model name (``open_clip.list_models()``; OpenAI-CLIP-derived
weights such as CheXzero's need the ``-quickgelu`` variant, e.g. ``ViT-B-32-quickgelu``), a local
JSON file ``{"model_cfg": ..., "preprocess_cfg": ...}`` as open_clip publishes them (BiomedCLIP's
``open_clip_config.json``), or a folder holding that file. Only the visual tower is built here:
the text tower (which may need a tokenizer or a language model folder) is not part of the
image encoder, and a timm trunk is built without its pretrained weights. The checkpoint is the whole model's state
dict; the tower is found under ``visual.``.

The global feature is the tower's output, the image embedding CLIP compares with text; maps
and tokens come from open_clip's ``forward_intermediates`` (the last block after the final norm
for transformers, the last three stages for ResNets). Preprocessing is open_clip's: the JSON's
``preprocess_cfg`` over open_clip's defaults (OpenAI mean/std) at the tower's image size, which
is fixed (position embeddings are not resized). The text tower, when a task needs it, is built
from the same config by ``text/open_clip.py``.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.backbones.architectures import Architecture, ArchitectureError, Family
from benchmark.backbones.encoder import Backbone, BackboneOutput, tokens_of
from benchmark.backbones.preprocessing import Preprocessing
from benchmark.backbones.sources import SOURCES, Source
from benchmark.limits import MAX_LAYERS, is_whole
from benchmark.quoting import one_line, quote, quote_some

CONFIG_FILE = "open_clip_config.json"


class OpenClipBackbone(Backbone):
    def __init__(self, arch: Architecture, model: nn.Module, n_maps: int) -> None:
        super().__init__(arch, model)
        self.n_maps = n_maps

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        out = self.model.forward_intermediates(images, indices=self.n_maps, normalize_intermediates=True)
        maps = list(out["image_intermediates"])
        return BackboneOutput(global_features=out["image_features"], token_features=tokens_of(maps[-1]), feature_maps=maps)


def read_config(spec: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    """(model_cfg, preprocess_cfg, where they came from) for a built-in name, a JSON file or a folder."""
    import open_clip

    if spec.startswith(("hf-hub:", "local-dir:")):
        raise ArchitectureError(
            f"open_clip:{spec}: nothing is downloaded. Download the model's folder yourself (it holds {CONFIG_FILE} "
            "and the weights) and use open_clip:<folder> --checkpoint <folder>"
        )
    path = Path(spec).expanduser()
    if path.is_dir():
        path = path / CONFIG_FILE
        if not path.is_file():
            raise ArchitectureError(f"{path.parent}: no {CONFIG_FILE}; pass the model config JSON or a built-in open_clip name")
    if path.is_file():
        try:
            content = json.loads(path.read_text())
            model_cfg = content["model_cfg"] if "model_cfg" in content else content
            vision = model_cfg["vision_cfg"]
            if not isinstance(vision, dict) or "embed_dim" not in model_cfg:
                raise KeyError("embed_dim")
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ArchitectureError(
                f"{path}: not an open_clip model config ({type(error).__name__}: {error}); expected "
                '{"model_cfg": {"embed_dim": ..., "vision_cfg": {...}}, "preprocess_cfg": {...}}'
            ) from None
        preprocess_cfg = content.get("preprocess_cfg", {})
        problem = _config_problem(model_cfg, preprocess_cfg)
        if problem:
            raise ArchitectureError(f"{path}: {problem}")
        return model_cfg, preprocess_cfg, str(path)
    config = open_clip.get_model_config(spec)
    if config is None:
        close = difflib.get_close_matches(spec, open_clip.list_models(), n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(f'open_clip:{c}') for c in close)}?" if close else ""
        raise ArchitectureError(f"unknown open_clip model config {spec!r} (no such file or built-in name).{hint} "
                                "Built-in names: open_clip.list_models()")
    return config, {}, f"open_clip built-in config {spec}"


def _config_problem(model_cfg: dict[str, Any], preprocess_cfg: Any) -> str | None:
    """What makes a config unusable, checked before anything is built: a hub name (nothing is downloaded),
    sizes that are not whole numbers >= 1, a width the head width does not divide, mean/std that are not numbers."""
    vision = model_cfg["vision_cfg"]
    for key, value in vision.items():
        if isinstance(value, str) and re.match(r"(hf[-_]hub|local-dir):", value):
            return (f"vision_cfg.{key} {quote(value, 120)} names a model on the Hugging Face Hub; nothing is downloaded: "
                    "name a timm architecture (its weights come from --checkpoint)")
    if not (is_whole(model_cfg["embed_dim"]) and model_cfg["embed_dim"] >= 1):
        return f"embed_dim {quote(model_cfg['embed_dim'])} must be a whole number >= 1"
    sizes = ("image_size",) if vision.get("timm_model_name") else ("image_size", "layers", "width", "head_width", "patch_size")
    for key in sizes:
        value = vision.get(key, 1)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items or not all(is_whole(item) and item >= 1 for item in items):
            shown = quote_some(value) if isinstance(value, (list, tuple)) else quote(value)
            return f"vision_cfg.{key} {shown} must be a whole number >= 1 (or a list of them)"
    if not vision.get("timm_model_name"):
        layers = vision.get("layers", 12)
        total = sum(layers) if isinstance(layers, (list, tuple)) else layers  # ModifiedResNet: layers per stage
        if total > MAX_LAYERS:
            return f"vision_cfg.layers: {total} layers, more than {MAX_LAYERS}"
        width, head_width = vision.get("width", 768), vision.get("head_width", 64)
        channels = width * 32 if isinstance(vision.get("layers"), (list, tuple)) else width  # ModifiedResNet: width * 32
        if channels % head_width:
            return f"vision_cfg.width {width} gives {channels} channels, not a multiple of head_width {head_width}"
    if not isinstance(preprocess_cfg, dict):
        return f"preprocess_cfg {quote(preprocess_cfg)} is not a JSON object"
    for key in ("mean", "std"):
        value = preprocess_cfg.get(key, 0.5)
        items = list(value) if isinstance(value, (list, tuple)) else [value]
        if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in items):
            return f"preprocess_cfg.{key} {quote_some(value) if isinstance(value, list) else quote(value)} is not a number or a list of numbers"
    return None


def _builder(model_cfg: dict[str, Any]):
    vision_cfg = copy.deepcopy(model_cfg["vision_cfg"])
    vision_cfg["timm_model_pretrained"] = False  # never fetch a timm trunk's weights

    def build() -> nn.Module:
        from open_clip.model import _build_vision_tower

        return _build_vision_tower(model_cfg["embed_dim"], vision_cfg, quick_gelu=model_cfg.get("quick_gelu", False))

    return build


def _family(tower: nn.Module, size: int) -> Family:
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.timm_model import TimmModel

    if isinstance(tower, ModifiedResNet):
        return "resnet"
    if isinstance(tower, TimmModel):
        with torch.no_grad():
            return "vit" if tower.trunk.forward_features(torch.empty(1, 3, size, size)).dim() == 3 else "pyramid"
    return "vit"


def resolve(spec: str) -> Architecture:
    model_cfg, preprocess_cfg, origin = read_config(spec)
    from open_clip.transform import PreprocessCfg, merge_preprocess_dict

    build = _builder(model_cfg)
    try:
        with torch.device("meta"):
            tower = build()
            image_size = tower.image_size[0] if isinstance(tower.image_size, (tuple, list)) else tower.image_size
            family = _family(tower, image_size)
    except Exception as error:  # noqa: BLE001 - open_clip and timm raise many types for a config they cannot build
        raise ArchitectureError(f"{origin}: open_clip cannot build its vision tower "
                                f"({type(error).__name__}: {one_line(str(error))})") from None
    cfg = PreprocessCfg(**merge_preprocess_dict(PreprocessCfg().__dict__ | {"size": image_size}, preprocess_cfg))
    preprocessing = Preprocessing(
        input_size=image_size, channels=3, mean=tuple(cfg.mean), std=tuple(cfg.std), fixed_size=True,
        source=f"open_clip preprocess config ({origin})",
    )
    return Architecture(
        name=f"open_clip:{spec}", source="open_clip", family=family, build_module=build, preprocessing=preprocessing,
        backbone=partial(OpenClipBackbone, n_maps=1 if family == "vit" else 3),
    )


SOURCES.add("open_clip", Source(
    name="open_clip", syntax="open_clip:<built-in name | config .json | folder>", resolve=resolve,
    covers="the visual tower of any open_clip model (open_clip.list_models(), or a local open_clip_config.json "
           "such as BiomedCLIP's)",
    weights="--checkpoint FILE or folder: the model's state dict (open_clip_pytorch_model.bin, .safetensors, "
            "OpenAI-layout CLIP state dicts); the tower is read under visual.",
    preprocessing="open_clip's preprocess config (the JSON's preprocess_cfg, else OpenAI mean/std) at the tower's size",
    example="open_clip:ViT-B-32-quickgelu",
))
