"""The text tower of a transformers CLIP or SigLIP folder (``hf:<folder>``).

The folder's ``config.json`` describes the whole model; the image encoder is its vision tower
(``sources/hf.py``), this the text side, loaded from the same weights under the names
``save_pretrained`` gives them: ``text_model.*`` and, for CLIP, ``text_projection`` and
``visual_projection``. The tokenizer is the folder's own (``AutoTokenizer``, local files only,
no remote code). Embeddings are what ``get_text_features`` and ``get_image_features`` return:
CLIP projects the pooled [EOS] token and the vision tower's pooled output, SigLIP's towers end
in their own pooling heads. SigLIP reads texts padded to its full context, as it was trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from benchmark.backbones.checkpoint import read_checkpoint
from benchmark.backbones.text import TEXT_TOWERS, TextModelMissing, TextTower, TextTowerError, require_tokenizer_files
from benchmark.backbones.text.weights import load_parts
from benchmark.quoting import one_line
from benchmark.registry import Registry


@dataclass(frozen=True)
class TextModelType:
    """How one vision-language ``model_type`` of config.json gives its text tower."""

    text_class: str  # transformers class built from the config's text_config
    output: str  # the text model's output that is the embedding
    padding: Literal["longest", "max_length"]  # how texts are padded (SigLIP: to its full context)
    visual_projection: bool  # a linear map from the vision tower's pooled output into the joint space


TEXT_MODEL_TYPES: Registry[TextModelType] = Registry("Hugging Face text model type")
TEXT_MODEL_TYPES.add("clip", TextModelType("CLIPTextModelWithProjection", "text_embeds", "longest", visual_projection=True))
TEXT_MODEL_TYPES.add("siglip", TextModelType("SiglipTextModel", "pooler_output", "max_length", visual_projection=False))


class HFTextTower(TextTower):
    def __init__(self, image_encoder: nn.Module, text: nn.Module, visual_projection: nn.Module | None, tokenizer: Any,
                 kind: TextModelType, max_length: int, **kwargs: Any) -> None:
        super().__init__(image_encoder, **kwargs)
        self.text, self.visual_projection = text, visual_projection
        self.tokenizer, self.kind, self.max_length = tokenizer, kind, max_length
        self.freeze()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=self.kind.padding, truncation=True, max_length=self.max_length, return_tensors="pt")
        inputs = {key: batch[key].to(self.device) for key in ("input_ids", "attention_mask") if key in batch}
        return getattr(self.text(**inputs), self.kind.output)

    def project_images(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.image_encoder.global_features(images)
        return self.visual_projection(pooled) if self.visual_projection is not None else pooled


def _tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    require_tokenizer_files(folder)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a folder without a tokenizer
        raise TextModelMissing(f"{folder}: no usable tokenizer there ({type(error).__name__}: {one_line(str(error))}); "
                               "save the model's tokenizer beside it (AutoTokenizer.from_pretrained(...)"
                               f".save_pretrained('{folder}'))") from None


def build(image_encoder: nn.Module, path: Path, text_model: Path | None, allow_partial: bool) -> TextTower | None:
    """The text tower of the CLIP / SigLIP folder whose vision tower is ``image_encoder``; None for vision-only types."""
    import transformers

    folder = Path(image_encoder.arch.name.removeprefix("hf:")).expanduser()
    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True)  # read once already by the source
    if config.model_type not in TEXT_MODEL_TYPES:
        return None  # a vision model, or a vision tower saved alone
    model_type, kind = config.model_type, TEXT_MODEL_TYPES.get(config.model_type)
    tokenizer = _tokenizer(text_model or folder)
    text_config = config.text_config
    if hasattr(config, "projection_dim"):
        text_config.projection_dim = config.projection_dim
    text_class = getattr(transformers, kind.text_class)
    dim = config.projection_dim if kind.visual_projection else getattr(text_config, "projection_size", text_config.hidden_size)
    image_dim = config.projection_dim if kind.visual_projection else config.vision_config.hidden_size
    if dim != image_dim:
        raise TextTowerError(f"{folder / 'config.json'}: text embeddings of {dim} dimensions, image embeddings of "
                             f"{image_dim}: not one joint space")

    def parts() -> dict[str, nn.Module]:
        text = text_class(text_config)
        # The whole model keeps the text side under text_model.; a text model class holds it either under
        # that name too (CLIP, with text_projection beside it) or (SigLIP in transformers >= 5) at its top level.
        built: dict[str, nn.Module] = {"" if hasattr(text, "text_model") else "text_model": text}
        if kind.visual_projection:
            built["visual_projection"] = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        return built

    state, _ = read_checkpoint(path)
    modules, report = load_parts(path, state, parts, f"{model_type} text tower ({folder})", allow_partial)
    text = next(module for namespace, module in modules.items() if namespace != "visual_projection")
    return HFTextTower(image_encoder, text, modules.get("visual_projection"),
                       tokenizer, kind, text_config.max_position_embeddings, embedding_dim=dim,
                       tokenizer_source=str(text_model or folder), load_report=report)


TEXT_TOWERS.add("hf", build)
