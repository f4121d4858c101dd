"""The text tower of an open_clip model (CheXzero, BiomedCLIP, any ``open_clip:`` architecture).

The tower is open_clip's own, built from the same model config as the visual tower
(``sources/open_clip.py``) and loaded from the same state dict: a plain CLIP keeps its text
transformer's keys at the top level (``token_embedding``, ``transformer``, ``ln_final``,
``text_projection``, ...), a custom text tower under ``text.``. The image embedding is the visual
tower's output, which already ends in CLIP's image projection (the backbone's global feature).

Tokenizers: open_clip's CLIP BPE tokenizer, which ships with the package, for a config without
a Hugging Face tokenizer; a Hugging Face text model or tokenizer (BiomedCLIP's PubMedBERT) is
read from a local folder passed as ``text_model`` (its ``config.json`` and tokenizer files),
never from the Hub.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.backbones.checkpoint import read_checkpoint
from benchmark.backbones.text import TEXT_TOWERS, TextModelMissing, TextTower, TextTowerError, require_tokenizer_files
from benchmark.backbones.text.weights import load_parts
from benchmark.limits import MAX_LAYERS, is_whole
from benchmark.quoting import one_line, quote


class OpenClipTextTower(TextTower):
    def __init__(self, image_encoder: nn.Module, text: nn.Module, tokenizer: Any, **kwargs: Any) -> None:
        super().__init__(image_encoder, **kwargs)
        self.text, self.tokenizer = text, tokenizer
        self.freeze()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        return self.text(self.tokenizer(texts).to(self.device))

    def project_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_encoder.global_features(images)


def _hf_folder(text_model: Path | None, text_cfg: dict[str, Any], origin: str) -> Path:
    name = text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name")
    if text_model is None:
        raise TextModelMissing(f"{origin}: the text tower uses the Hugging Face model {quote(name, 120)}; nothing is "
                               "downloaded: pass text_model=FOLDER, a local copy of it (config.json and tokenizer files)")
    if text_cfg.get("hf_model_name") and not (text_model / "config.json").is_file():
        raise TextModelMissing(f"{text_model / 'config.json'}: missing; the text model folder must hold the config of "
                               f"{quote(name, 120)} and its tokenizer files")
    return text_model


def _tokenizer(text_cfg: dict[str, Any], folder: Path | None) -> Any:
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    context = text_cfg.get("context_length", 77)
    if folder is None:
        return SimpleTokenizer(context_length=context)
    require_tokenizer_files(folder)
    try:
        return HFTokenizer(str(folder), context_length=context, **text_cfg.get("tokenizer_kwargs", {}))
    except Exception as error:  # noqa: BLE001 - transformers raises many types for a folder without a tokenizer
        raise TextModelMissing(f"{folder}: no usable tokenizer there ({type(error).__name__}: {one_line(str(error))}); "
                               "the folder needs tokenizer.json, or vocab.txt / vocab.json with its config") from None


def _text_config_problem(text_cfg: dict[str, Any]) -> str | None:
    """What makes a text config unbuildable, checked before anything is built (as ``sources/open_clip.py``
    checks the vision config): sizes that are not whole numbers >= 1, too many layers, a width the heads do not divide."""
    for key in ("context_length", "vocab_size", "width", "heads", "layers"):
        value = text_cfg.get(key, 1)
        if not (is_whole(value) and value >= 1):
            return f"text_cfg.{key} {quote(value)} must be a whole number >= 1"
    if text_cfg.get("layers", 12) > MAX_LAYERS:
        return f"text_cfg.layers: more than {MAX_LAYERS}"
    if text_cfg.get("width", 512) % text_cfg.get("heads", 8):
        return f"text_cfg.width {text_cfg.get('width', 512)} is not a multiple of text_cfg.heads {text_cfg.get('heads', 8)}"
    return None


def build(image_encoder: nn.Module, path: Path, text_model: Path | None, allow_partial: bool) -> TextTower | None:
    """The text tower of the open_clip model whose visual tower is ``image_encoder``; None without a text config."""
    from benchmark.backbones.sources.open_clip import read_config

    model_cfg, _, origin = read_config(image_encoder.arch.name.removeprefix("open_clip:"))
    if not isinstance(model_cfg.get("text_cfg"), dict):
        return None
    text_cfg = copy.deepcopy(model_cfg["text_cfg"])
    problem = _text_config_problem(text_cfg)
    if problem:
        raise TextTowerError(f"{origin}: {problem}")
    folder = _hf_folder(text_model, text_cfg, origin) if text_cfg.get("hf_model_name") or text_cfg.get("hf_tokenizer_name") else None
    if text_cfg.get("hf_model_name"):  # built from the local folder's config; its weights are the checkpoint's
        text_cfg |= {"hf_model_name": str(folder), "hf_model_pretrained": False}
    tokenizer = _tokenizer(text_cfg, folder)
    vocabulary = getattr(tokenizer, "vocab_size", None) or len(getattr(tokenizer, "encoder", {})) or None
    if not text_cfg.get("hf_model_name") and vocabulary and text_cfg.get("vocab_size", 49408) < vocabulary:
        raise TextTowerError(f"{origin}: text_cfg.vocab_size {quote(text_cfg.get('vocab_size'))} is smaller than its "
                             f"tokenizer's {vocabulary} tokens")
    namespace = "text" if model_cfg.get("custom_text") or text_cfg.get("hf_model_name") else ""

    def parts() -> dict[str, nn.Module]:
        from open_clip.model import _build_text_tower

        return {namespace: _build_text_tower(model_cfg["embed_dim"], text_cfg, quick_gelu=model_cfg.get("quick_gelu", False))}

    state, _ = read_checkpoint(path)
    modules, report = load_parts(path, state, parts, f"open_clip text tower ({origin})", allow_partial)
    return OpenClipTextTower(image_encoder, modules[namespace], tokenizer, embedding_dim=model_cfg["embed_dim"],
                             tokenizer_source=str(folder) if folder else "open_clip's CLIP BPE tokenizer (bundled)",
                             load_report=report)


TEXT_TOWERS.add("open_clip", build)
