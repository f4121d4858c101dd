"""The MGCA model: image and text encoders with projection heads and shared prototypes.

The module tree follows the reference's (``mgca/models/mgca/mgca_module.py``). What a state dict
shares with the released checkpoints (PROTOCOL.md 12.2)::

    img_encoder_q.model.*            image encoder: the released keys exactly (timm ViT / torchvision
                                     ResNet names, no classifier), what the reference's downstream
                                     loaders and the backbone registry read
    img_encoder_q.{global,local}_embed.head.{0,1,3,4}.*   the released keys and shapes
    text_encoder_q.{global,local}_embed.head.{0,1,3,4}.*  the released keys (and shapes, with Bio_ClinicalBERT)
    prototype_layer.weight           [num_prototypes, emb_dim], as released
    text_encoder_q.model.*           BERT under transformers' names (embeddings.*, encoder.layer.{i}.*):
                                     the released BERT's names, without its unused cross-attention
                                     layers (``crossattention.*``) and with HF's token-type embedding,
                                     which BLIP's med.py lacks

The released files also hold ``patch_local_atten_layer.*`` and ``word_local_atten_layer.*``
(unused MultiheadAttention layers), which this module does not have. So the image side loads
strictly into the reference's encoder; the whole module loads into the reference's MGCA only with
``strict=False``, which is how the reference loads its own checkpoints.

Departures from the reference, both bug fixes (DEVIATIONS.md): BERT receives its inputs by
keyword, so positions run 0..L-1 (the reference passes token types as position ids, B10); and
each word's attention is the attention of its own tokens (the reference shifts it by one, B11).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.backbones import ARCHITECTURES
from benchmark.backbones.checkpoint import checkpoint_sha256, load_encoder_weights
from benchmark.backbones.encoder import FEATURES
from benchmark.backbones.projection import GlobalEmbedding, LocalEmbedding
from benchmark.quoting import one_line
from pretrain.config import RANDOM_INIT, SMALL_BERT, ConfigError, PretrainConfig, image_init_source, text_model_source
from pretrain.losses import instance_alignment_loss, prototype_alignment_loss, token_alignment_loss


def cls_attention(query: torch.Tensor, key: torch.Tensor, heads: int, key_padding: torch.Tensor | None = None) -> torch.Tensor:
    """[CLS] → token attention probabilities averaged over heads, before any dropout.

    ``query``, ``key``: (B, N, heads * d) projections of one attention layer; ``key_padding``:
    (B, N) True where a token may not be attended. Returns (B, N).
    """
    batch, tokens, width = key.shape
    q = query[:, :1].reshape(batch, 1, heads, -1).transpose(1, 2)  # (B, H, 1, d)
    k = key.reshape(batch, tokens, heads, -1).transpose(1, 2)  # (B, H, N, d)
    scores = (q @ k.transpose(-2, -1)).squeeze(2) / (width // heads) ** 0.5  # (B, H, N)
    if key_padding is not None:
        scores = scores.masked_fill(key_padding[:, None], float("-inf"))
    return scores.float().softmax(dim=-1).mean(dim=1)


class Captured:
    """The outputs of some modules during the last forward pass (forward hooks)."""

    def __init__(self, **modules: nn.Module) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        for name, module in modules.items():
            module.register_forward_hook(lambda _m, _i, output, name=name: self.outputs.__setitem__(name, output))

    def pop(self, name: str) -> torch.Tensor:
        return self.outputs.pop(name)


@dataclass
class Encoded:
    """What the losses need from one modality; embeddings L2-normalised."""

    global_emb: torch.Tensor  # (B, D)
    local_emb: torch.Tensor  # (B, N, D)
    attention: torch.Tensor | None  # (B, N) [CLS] attention per token, None for ResNets
    pad_mask: torch.Tensor | None = None  # (B, N) True at padding word slots (text only)


def initialisation_record(source: str, path: str | None = None, report: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a run records about an encoder's initial weights (run folder, log, checkpoints)."""
    return {"source": source, "path": path, "sha256": checkpoint_sha256(path) if path else None, "load_report": report}


class ImageEncoder(nn.Module):
    """A backbone-registry encoder, trainable, with the [CLS] attention of a ViT's last block.

    ``init``: ``random``, or a file whose encoder weights are loaded by the suite's safe loader
    (complete encoder required; a classifier is dropped and reported); ``self.initialisation``
    records which.
    """

    def __init__(self, arch_name: str, hidden_dim: int, emb_dim: int, init: str = RANDOM_INIT) -> None:
        super().__init__()
        arch = ARCHITECTURES.get(arch_name)
        self.family = arch.family
        self.model = arch.build()
        if init == RANDOM_INIT:
            self.initialisation = initialisation_record(RANDOM_INIT)
        else:
            report = load_encoder_weights(self.model, init, arch)
            self.initialisation = initialisation_record("file", str(Path(init).resolve()), report.to_dict())
        self.global_embed = GlobalEmbedding(arch.global_dim, hidden_dim, emb_dim)
        self.local_embed = LocalEmbedding(arch.token_dim, hidden_dim, emb_dim)
        # The ViT's last-block q and k, from which the [CLS] attention is recomputed (the reference
        # stores the block's attention map, register_blk=11); timm's fused attention does not return it.
        self._captured = Captured(qkv=self.model.blocks[-1].attn.qkv) if self.family == "vit" else None

    def patch_attention(self) -> torch.Tensor:
        """Last block's [CLS] → patch attention averaged over heads."""
        attn = self.model.blocks[-1].attn
        query, key, _ = self._captured.pop("qkv").chunk(3, dim=-1)
        query, key = (norm(x.unflatten(-1, (attn.num_heads, -1))).flatten(-2) for norm, x in ((attn.q_norm, query), (attn.k_norm, key)))
        prefix = getattr(self.model, "num_prefix_tokens", 1)
        return cls_attention(query, key, attn.num_heads)[:, prefix:]

    def forward(self, images: torch.Tensor) -> Encoded:
        features = FEATURES[self.family](self.model, images)
        attention = self.patch_attention() if self.family == "vit" else None
        return Encoded(
            global_emb=F.normalize(self.global_embed(features.global_features), dim=-1),
            local_emb=F.normalize(self.local_embed(features.token_features), dim=-1),
            attention=attention,
        )


def aggregate_words(tokens: torch.Tensor, attention: torch.Tensor, word_slots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token features and attention summed per word slot (the reference's ``aggregate_tokens``).

    ``tokens``: (B, L, H); ``attention``: (B, L); ``word_slots``: (B, L) slot of each token, L for
    padding (:func:`pretrain.text.encode`). Returns the word slots 1..L-1 ([CLS] dropped): features
    (B, L-1, H), attention (B, L-1) and a padding mask (B, L-1), True after the [SEP] slot.
    """
    batch, length, hidden = tokens.shape
    words = tokens.new_zeros(batch, length + 1, hidden).scatter_add_(1, word_slots[..., None].expand(-1, -1, hidden), tokens)
    word_attention = attention.new_zeros(batch, length + 1).scatter_add_(1, word_slots, attention)
    last_slot = word_slots.masked_fill(word_slots == length, 0).amax(dim=1)  # the [SEP] slot
    pad_mask = torch.arange(1, length, device=tokens.device)[None] > last_slot[:, None]
    return words[:, 1:length], word_attention[:, 1:length], pad_mask


def build_bert(config: PretrainConfig, vocab_size: int) -> tuple[nn.Module, dict[str, Any]]:
    """Bio_ClinicalBERT's first ``text_layers`` layers from a local folder, or a small BERT; and
    the record of its initialisation (the folder's load report: keys it lacks are an error, keys
    left unused, such as the later layers and the pre-training heads, are listed)."""
    from transformers import BertModel

    folder = text_model_source(config)
    if folder != SMALL_BERT:
        try:
            model, info = BertModel.from_pretrained(
                folder, num_hidden_layers=config.text_layers, add_pooling_layer=False, local_files_only=True,
                output_loading_info=True,
            )
        except Exception as error:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ... for a bad folder
            raise ConfigError(f"text_model = {folder!r}: not a loadable BERT folder ({type(error).__name__}: "
                              f"{one_line(str(error))})") from None
        report = {key: sorted(map(str, info.get(key, ()))) for key in ("missing_keys", "unexpected_keys", "mismatched_keys")}
        if report["missing_keys"] or report["mismatched_keys"]:
            raise ConfigError(f"text_model = {folder!r}: the folder's weights do not cover the first {config.text_layers} "
                              f"BERT layers: missing {report['missing_keys'][:3]}, mismatched {report['mismatched_keys'][:3]}")
        return model, initialisation_record("folder", str(Path(folder).resolve()), report)
    return BertModel(small_bert_config(config, vocab_size), add_pooling_layer=False), initialisation_record(SMALL_BERT)


def small_bert_config(config: PretrainConfig, vocab_size: int) -> Any:
    """The ``BertConfig`` of ``text_model = "small"``: the config's sizes over the run's vocabulary."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=vocab_size, hidden_size=config.text_hidden_size, num_hidden_layers=config.text_layers,
        num_attention_heads=config.text_heads, intermediate_size=config.text_intermediate_size,
        max_position_embeddings=max(512, config.max_words),
    )


class TextEncoder(nn.Module):
    """BERT; report feature = last-layer [CLS]; word features = token features summed per word slot."""

    def __init__(self, config: PretrainConfig, vocab_size: int) -> None:
        super().__init__()
        self.model, self.initialisation = build_bert(config, vocab_size)
        hidden = self.model.config.hidden_size
        self.global_embed = GlobalEmbedding(hidden, config.projection_hidden, config.emb_dim)
        self.local_embed = LocalEmbedding(hidden, config.projection_hidden, config.emb_dim)
        last = self.model.encoder.layer[-1].attention.self
        self.heads = last.num_attention_heads
        # Word weights need the last layer's attention probabilities before dropout, which
        # transformers does not return (output_attentions gives them after dropout).
        self._captured = Captured(query=last.query, key=last.key)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_slots: torch.Tensor) -> Encoded:
        tokens = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        attention = cls_attention(self._captured.pop("query"), self._captured.pop("key"), self.heads, attention_mask == 0)
        words, word_attention, pad_mask = aggregate_words(tokens, attention, word_slots)
        return Encoded(
            global_emb=F.normalize(self.global_embed(tokens[:, 0]), dim=-1),
            local_emb=F.normalize(self.local_embed(words), dim=-1),
            attention=word_attention,
            pad_mask=pad_mask,
        )


@dataclass
class Losses:
    ita: torch.Tensor
    cta: torch.Tensor
    cpa: torch.Tensor
    total: torch.Tensor

    def detached(self) -> dict[str, float]:
        return {name: float(getattr(self, name).detach()) for name in ("ita", "cta", "cpa", "total")}


class MGCA(nn.Module):
    def __init__(self, config: PretrainConfig, vocab_size: int) -> None:
        super().__init__()
        self.config = config
        self.img_encoder_q = ImageEncoder(config.arch, config.projection_hidden, config.emb_dim, image_init_source(config))
        self.text_encoder_q = TextEncoder(config, vocab_size)
        self.prototype_layer = nn.Linear(config.emb_dim, config.num_prototypes, bias=False)

    @property
    def initialisation(self) -> dict[str, dict[str, Any]]:
        """Where each encoder's initial weights came from: source, path, sha256, load report."""
        return {"image": self.img_encoder_q.initialisation, "text": self.text_encoder_q.initialisation}

    def embed(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
              word_slots: torch.Tensor) -> tuple[Encoded, Encoded]:
        return self.img_encoder_q(images), self.text_encoder_q(input_ids, attention_mask, word_slots)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                word_slots: torch.Tensor) -> tuple[Losses, Encoded, Encoded]:
        """The three losses of one batch and the embeddings they came from."""
        c = self.config
        image, text = self.embed(images, input_ids, attention_mask, word_slots)
        with torch.no_grad():  # prototypes re-normalised in place at every step (mgca_module.py L230-233)
            self.prototype_layer.weight.copy_(F.normalize(self.prototype_layer.weight, dim=1))
        ita = instance_alignment_loss(image.global_emb, text.global_emb, c.ita_temperature)
        cta = token_alignment_loss(text.local_emb, image.local_emb, text.attention, image.attention, text.pad_mask,
                                   c.cta_temperature)
        cpa = prototype_alignment_loss(image.global_emb, text.global_emb, self.prototype_layer.weight,
                                       c.sinkhorn_epsilon, c.sinkhorn_iterations, c.cpa_temperature)
        total = c.lambda_ita * ita + c.lambda_cta * cta + c.lambda_cpa * cpa
        return Losses(ita, cta, cpa, total), image, text
