"""The text tower of an MGCA checkpoint: BERT, the text and image global projection heads, the tokenizer.

Two kinds of checkpoint hold one (keys as in ``pretrain/model.py``: ``text_encoder_q.model.*``
BERT, ``{text,img}_encoder_q.global_embed.head.*`` the heads):

* **exported by** ``python -m pretrain``: the export adds a :data:`EXPORT_KEY` entry with what the
  weights do not say: the run's tokenizer (``tokenizer.json`` content), the BERT config and the
  token budget (:func:`export_section`). Texts are read as in pretraining.
* **released by MGCA** (``vit_base.ckpt``, ``resnet_50.ckpt``): BLIP's ``med.py`` BERT, trained
  on Bio_ClinicalBERT's tokenizer, whose vocabulary and config come from a local Bio_ClinicalBERT
  folder (``text_model``; named backbones look for ``checkpoints/Bio_ClinicalBERT``). Texts are
  read as that model was trained: 112 tokens, every position id 0 (the reference passes token
  types in the position slot, defect B10) and no token-type embedding (med.py has none; a zero
  vector is loaded in its place). Its cross-attention layers, unused for text, are ignored.

A text is cleaned as pretraining cleans a report (lowercase ASCII words, punctuation dropped:
:func:`clean_text`), then tokenised ``[CLS] text [SEP]``; its feature is the global head on the
last layer's [CLS]; an image's is the image global head on the encoder's global feature.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, processors
from torch import nn

from benchmark.backbones.checkpoint import find_state_dict, read_checkpoint
from benchmark.backbones.projection import GlobalEmbedding
from benchmark.backbones.safe_pickle import torch_load_safely
from benchmark.backbones.text import TEXT_TOWERS, TextModelMissing, TextTower, TextTowerError, require_tokenizer_files
from benchmark.backbones.text.weights import load_parts
from benchmark.checkpoint_files import PICKLE_SUFFIXES, weights_file
from benchmark.limits import MAX_LAYERS, is_finite_number, is_whole
from benchmark.quoting import one_line, quote

TEXT_ENCODER, TEXT_HEAD, IMAGE_HEAD = "text_encoder_q.model", "text_encoder_q.global_embed", "img_encoder_q.global_embed"
EXPORT_KEY = "text_tower"  # the exported checkpoint's entry (export_section)
EXPORT_VERSION = 1
RELEASED_MAX_WORDS = 112  # the reference's tokens per report (pretrain_dataset.py L20)
# The BERT config entries an export carries, with their types (anything else in the entry is refused).
BERT_CONFIG_TYPES: dict[str, type] = {
    "vocab_size": int, "hidden_size": int, "num_hidden_layers": int, "num_attention_heads": int,
    "intermediate_size": int, "max_position_embeddings": int, "type_vocab_size": int, "pad_token_id": int,
    "layer_norm_eps": float, "hidden_act": str,
}
_WORD = re.compile(r"\w+")
_LAYER = re.compile(rf"{re.escape(TEXT_ENCODER)}\.encoder\.layer\.(\d+)\.")


def clean_text(text: str) -> str:
    """A text's words as pretraining feeds a report's (``pretrain.text.caption``): lowercase, ASCII,
    punctuation dropped; unlike a caption, a text of one word is kept."""
    words = (word.encode("ascii", "ignore").decode("ascii") for word in _WORD.findall(text.replace("\ufffd\ufffd", " ").lower()))
    return " ".join(word for word in words if word)


def prepare_for_encoding(tokenizer: Tokenizer, max_words: int) -> Tokenizer:
    """[CLS] text [SEP], truncated and padded to ``max_words`` (in place; returned for chaining)."""
    cls_id, sep_id, pad_id = (tokenizer.token_to_id(token) for token in ("[CLS]", "[SEP]", "[PAD]"))
    if None in (cls_id, sep_id, pad_id):
        raise ValueError("the tokenizer lacks [CLS], [SEP] or [PAD]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)]
    )
    tokenizer.enable_truncation(max_length=max_words)
    tokenizer.enable_padding(length=max_words, pad_id=pad_id, pad_token="[PAD]")
    return tokenizer


def pretrained_tokenizer(folder: str | Path) -> Tokenizer:
    """The fast tokenizer of a local BERT folder (Bio_ClinicalBERT: ``vocab.txt`` + config); a
    folder without one is a ValueError (:class:`TextModelMissing`) naming it."""
    from transformers import AutoTokenizer

    try:
        require_tokenizer_files(Path(folder))
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False).backend_tokenizer
    except Exception as error:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ... for a bad folder
        raise ValueError(f"{folder}: no usable BERT tokenizer there ({type(error).__name__}: "
                         f"{one_line(str(error))}); the folder needs vocab.txt or tokenizer.json") from None


def export_section(tokenizer: Tokenizer, bert_config: dict[str, Any], max_words: int) -> dict[str, Any]:
    """The :data:`EXPORT_KEY` entry an export adds: plain data (strings and numbers) only."""
    return {"version": EXPORT_VERSION, "tokenizer": tokenizer.to_str(), "max_words": max_words,
            "bert_config": {key: bert_config[key] for key in BERT_CONFIG_TYPES if bert_config.get(key) is not None}}


class MGCATextTower(TextTower):
    def __init__(self, image_encoder: nn.Module, parts: dict[str, nn.Module], tokenizer: Tokenizer, max_words: int,
                 zero_positions: bool, **kwargs: Any) -> None:
        super().__init__(image_encoder, embedding_dim=parts[TEXT_HEAD].head[3].out_features, **kwargs)
        self.bert, self.text_head, self.image_head = parts[TEXT_ENCODER], parts[TEXT_HEAD], parts[IMAGE_HEAD]
        self.tokenizer = prepare_for_encoding(tokenizer, max_words)
        self.zero_positions = zero_positions
        self.freeze()

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        encodings = self.tokenizer.encode_batch([clean_text(text) for text in texts])
        ids = torch.tensor([e.ids for e in encodings], device=self.device)
        mask = torch.tensor([e.attention_mask for e in encodings], device=self.device)
        positions = torch.zeros_like(ids) if self.zero_positions else None
        tokens = self.bert(input_ids=ids, attention_mask=mask, position_ids=positions).last_hidden_state
        return self.text_head(tokens[:, 0])

    def project_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.image_head(self.image_encoder.global_features(images))


def _head_sizes(state: dict[str, torch.Tensor], namespace: str, path: Path) -> tuple[int, int, int]:
    """(input, hidden, output) sizes of a global head, from its tensors' shapes."""
    first, second = (state.get(f"{namespace}.head.{i}.weight") for i in (0, 3))
    if first is None or second is None or first.dim() != 2 or second.dim() != 2:
        raise TextTowerError(f"{path}: the checkpoint has a text encoder but no {namespace}.head.{{0,3}}.weight "
                             "(the global projection head)")
    return first.shape[1], first.shape[0], second.shape[0]


def _check_bert_config(config: dict[str, Any], where: str) -> None:
    """Types and the layer bound of the :data:`BERT_CONFIG_TYPES` entries, before a BERT is built from them."""
    for key, value in config.items():
        kind = BERT_CONFIG_TYPES[key]
        ok = (is_whole(value) and value >= 0) if kind is int else is_finite_number(value) if kind is float else isinstance(value, str)
        if not ok:
            raise TextTowerError(f"{where}.{key} {quote(value)} is not a {kind.__name__}")
    if config.get("num_hidden_layers", 0) > MAX_LAYERS:
        raise TextTowerError(f"{where}.num_hidden_layers above {MAX_LAYERS}")


def _exported_config(section: Any, path: Path) -> tuple[Tokenizer, dict[str, Any], int]:
    """The tokenizer, BERT config and token budget of an export's entry, checked before use."""
    if not isinstance(section, dict) or section.get("version") != EXPORT_VERSION:
        raise TextTowerError(f"{path}: {EXPORT_KEY} entry of an unknown format (expected version {EXPORT_VERSION})")
    config = section.get("bert_config")
    if not isinstance(config, dict) or set(config) - set(BERT_CONFIG_TYPES):
        raise TextTowerError(f"{path}: {EXPORT_KEY}.bert_config must hold only {', '.join(BERT_CONFIG_TYPES)}")
    _check_bert_config(config, f"{path}: {EXPORT_KEY}.bert_config")
    max_words = section.get("max_words")
    if not (is_whole(max_words) and 3 <= max_words <= config.get("max_position_embeddings", 512)):
        raise TextTowerError(f"{path}: {EXPORT_KEY}.max_words {quote(max_words)} is not a token budget the BERT can read")
    try:
        tokenizer = Tokenizer.from_str(section["tokenizer"])
    except Exception as error:  # noqa: BLE001 - tokenizers raises its own exception types for bad JSON
        raise TextTowerError(f"{path}: {EXPORT_KEY}.tokenizer is not a tokenizer ({type(error).__name__}: "
                             f"{one_line(str(error))})") from None
    return tokenizer, config, max_words


def _released_config(folder: Path, state: dict[str, torch.Tensor], path: Path) -> tuple[Tokenizer, dict[str, Any]]:
    """Bio_ClinicalBERT's tokenizer and config (as many layers as the checkpoint holds)."""
    config_file = folder / "config.json"
    try:
        config = json.loads(config_file.read_text())
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:
        raise TextModelMissing(f"{config_file}: the BERT config of the text model folder cannot be read "
                               f"({type(error).__name__}: {one_line(str(error))})") from None
    try:
        tokenizer = pretrained_tokenizer(folder)
    except ValueError as error:
        raise TextModelMissing(str(error)) from None
    layers = {int(match.group(1)) for key in state if (match := _LAYER.match(key))}
    config = {key: config[key] for key in BERT_CONFIG_TYPES if config.get(key) is not None} | {"num_hidden_layers": max(layers, default=-1) + 1}
    _check_bert_config(config, str(config_file))
    return tokenizer, config


def _is_cross_attention(key: str) -> bool:
    return ".crossattention." in key


def build(image_encoder: nn.Module, path: Path, text_model: Path | None, allow_partial: bool) -> TextTower | None:
    """The tower of an MGCA checkpoint at ``path``; None when it holds no text encoder."""
    file = weights_file(path)
    content = torch_load_safely(file) if file.suffix in PICKLE_SUFFIXES else {}
    state, _ = find_state_dict(content, file) if content else read_checkpoint(path)
    if not any(key.startswith(f"{TEXT_ENCODER}.") for key in state):
        return None
    section = content.get(EXPORT_KEY) if isinstance(content, dict) else None
    params = content.get("hyper_parameters") if isinstance(content, dict) else None
    released = section is None
    if released and isinstance(params, dict) and "config" in params:
        raise TextTowerError(f"{path}: a checkpoint of python -m pretrain without its {EXPORT_KEY} entry (exported "
                             "before text towers were exported, or a run's own best.ckpt): export it again with "
                             f"python -m pretrain.export RUN/best.ckpt {path.name}")
    if released:
        if text_model is None:
            raise TextModelMissing(f"{path}: a released MGCA checkpoint's text tower needs the Bio_ClinicalBERT folder it "
                                   "was trained with (vocab.txt, config.json): pass text_model=FOLDER")
        tokenizer, config = _released_config(text_model, state, path)
        max_words = RELEASED_MAX_WORDS
        token_types = f"{TEXT_ENCODER}.embeddings.token_type_embeddings.weight"
        if token_types not in state and "hidden_size" in config:  # med.py has none: adding zeros is adding nothing
            state = state | {token_types: torch.zeros(config.get("type_vocab_size", 2), config["hidden_size"])}
    else:
        tokenizer, config, max_words = _exported_config(section, path)
    image_sizes, text_sizes = _head_sizes(state, IMAGE_HEAD, path), _head_sizes(state, TEXT_HEAD, path)
    if image_sizes[2] != text_sizes[2]:
        raise TextTowerError(f"{path}: the image head gives {image_sizes[2]} dimensions, the text head {text_sizes[2]}: "
                             "not one joint space")

    def parts() -> dict[str, nn.Module]:
        from transformers import BertConfig, BertModel

        return {TEXT_ENCODER: BertModel(BertConfig(**config), add_pooling_layer=False),
                TEXT_HEAD: GlobalEmbedding(*text_sizes), IMAGE_HEAD: GlobalEmbedding(*image_sizes)}

    modules, report = load_parts(path, state, parts, "mgca text tower", allow_partial,
                                 ignored=_is_cross_attention if released else lambda key: False)
    notes = (f"released MGCA layout: {RELEASED_MAX_WORDS} tokens, every position id 0 and no token-type embedding, as "
             "the reference trained it (B10, med.py); cross-attention layers unused",) if released else ()
    tokenizer_source = str(text_model) if released else f"{path} ({EXPORT_KEY}.tokenizer)"
    return MGCATextTower(image_encoder, modules, tokenizer, max_words, zero_positions=released,
                         tokenizer_source=tokenizer_source, load_report=report, notes=notes)


TEXT_TOWERS.add("mgca", build)
