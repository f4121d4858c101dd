"""The MGCA model: released key layout, attention read before dropout, word aggregation, local BERT."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from benchmark.backbones import ARCHITECTURES
from pretrain.config import PretrainConfig, load_config
from pretrain.model import MGCA, aggregate_words
from pretrain.text import encode, pretrained_tokenizer, prepare_for_encoding

SMALL = ("arch=vit_tiny_patch16_224", "text_layers=1", "text_hidden_size=32", "text_heads=2", "text_intermediate_size=64", "projection_hidden=64",
         "emb_dim=16", "num_prototypes=8", "max_words=12")


def small_config(*overrides: str) -> PretrainConfig:
    return load_config("demo", [*SMALL, *overrides])


def batch(size: int = 3, crop: int = 48, vocab: int = 50, length: int = 12) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(size, 3, crop, crop, generator=generator)
    ids = torch.randint(5, vocab, (size, length), generator=generator)
    lengths = torch.tensor([12, 7, 9][:size])
    mask = (torch.arange(length)[None] < lengths[:, None]).long()
    ids[:, 0], ids[torch.arange(size), lengths - 1] = 2, 3  # [CLS] ... [SEP]
    slots = torch.where(mask.bool(), torch.arange(length)[None].expand(size, -1), torch.tensor(length))
    slots[:, 2:] = torch.where(mask[:, 2:].bool(), slots[:, 2:] - 1, slots[:, 2:])  # tokens 1 and 2 form one word
    return images, ids * mask, mask, slots


@pytest.mark.parametrize("arch", ["vit_tiny_patch16_224", "resnet18"])
def test_state_dict_has_the_released_layout(arch: str) -> None:
    model = MGCA(small_config(f"arch={arch}"), vocab_size=50)
    state = model.state_dict()
    encoder = {key.removeprefix("img_encoder_q.model."): value.shape for key, value in state.items()
               if key.startswith("img_encoder_q.model.")}
    assert encoder == dict(ARCHITECTURES.get(arch).state_shapes)
    for side in ("img_encoder_q", "text_encoder_q"):
        for head in ("global_embed", "local_embed"):
            layers = {key.split(".")[3] for key in state if key.startswith(f"{side}.{head}.head.")}
            assert layers == {"0", "1", "3", "4"}  # Linear/Conv, BN, (ReLU), Linear/Conv, BN without affine
    assert "text_encoder_q.model.embeddings.word_embeddings.weight" in state
    assert any(key.startswith("text_encoder_q.model.encoder.layer.0.") for key in state)
    assert state["prototype_layer.weight"].shape == (8, 16)
    assert {key.split(".")[0] for key in state} == {"img_encoder_q", "text_encoder_q", "prototype_layer"}


@pytest.fixture(scope="module")
def vit_model() -> MGCA:
    torch.manual_seed(0)
    return MGCA(small_config(), vocab_size=50)


def test_losses_are_finite_and_embeddings_normalised(vit_model: MGCA) -> None:
    model = vit_model.train()
    losses, image, text = model(*batch())
    assert all(torch.isfinite(value) for value in losses.detached().values() for value in [torch.tensor(value)])
    assert torch.allclose(image.global_emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(text.local_emb.norm(dim=-1), torch.ones(3, 11), atol=1e-5)
    assert image.local_emb.shape == (3, 9, 16) and image.attention.shape == (3, 9)  # 48 px: 3 x 3 patches
    assert torch.allclose(model.prototype_layer.weight.norm(dim=1), torch.ones(8), atol=1e-6)  # renormalised in place


def test_vit_patch_attention_is_the_last_blocks_cls_attention(vit_model: MGCA) -> None:
    model = vit_model.eval()
    attn = model.img_encoder_q.model.blocks[-1].attn
    probabilities = {}
    attn.fused_attn = False  # timm then computes the probabilities explicitly; keep them
    hook = attn.attn_drop.register_forward_hook(lambda _m, inputs, _o: probabilities.__setitem__("p", inputs[0]))
    try:
        encoded = model.img_encoder_q(batch()[0])
    finally:
        hook.remove()
        attn.fused_attn = True
    assert torch.allclose(encoded.attention, probabilities["p"][:, :, 0, 1:].mean(dim=1), atol=1e-6)


def test_word_attention_is_read_before_dropout() -> None:
    torch.manual_seed(0)
    model = MGCA(small_config(), vocab_size=50)  # its own: the test switches BERT to eager attention
    _, ids, mask, _ = batch()
    slots = torch.where(mask.bool(), torch.arange(12)[None].expand(3, -1), torch.tensor(12))  # one token per word
    model.train()  # dropout active: the weights must still be probabilities without dropout's zeros
    text = model.text_encoder_q(ids, mask, slots)
    assert (text.attention[~text.pad_mask] > 0).all()
    model.eval()
    text = model.text_encoder_q(ids, mask, slots)
    bert = model.text_encoder_q.model
    bert.set_attn_implementation("eager")
    reference = bert(input_ids=ids, attention_mask=mask, output_attentions=True).attentions[-1][:, :, 0].mean(dim=1)
    assert torch.allclose(text.attention, reference[:, 1:], atol=1e-6)


def test_aggregate_words_hand_values() -> None:
    tokens = torch.arange(1.0, 7.0)[None, :, None].repeat(1, 1, 2)  # token t has features (t, t)
    attention = torch.tensor([[0.5, 0.1, 0.1, 0.2, 0.1, 0.0]])
    slots = torch.tensor([[0, 1, 1, 2, 3, 6]])  # [CLS] w1 ##w1 w2 [SEP] [PAD] (L = 6)
    words, word_attention, pad = aggregate_words(tokens, attention, slots)
    assert words[0, :, 0].tolist() == [5.0, 4.0, 5.0, 0.0, 0.0]  # slots 1..5: 2+3, 4, [SEP] 5, empty
    assert torch.allclose(word_attention, torch.tensor([[0.2, 0.2, 0.1, 0.0, 0.0]]))
    assert pad.tolist() == [[False, False, False, True, True]]  # [SEP] is not padding


def test_a_local_bert_folder_gives_its_first_layers_and_tokenizer(tmp_path: Path) -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pneumo", "##thorax", "effusion"]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")  # Bio_ClinicalBERT's folder: vocab.txt, config, weights
    torch.manual_seed(0)
    full = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                intermediate_size=64), add_pooling_layer=False)
    full.save_pretrained(tmp_path)
    model = MGCA(small_config(f"text_model={tmp_path}", "text_layers=2"), vocab_size=len(vocab))
    bert = model.text_encoder_q.model
    assert len(bert.encoder.layer) == 2
    assert torch.equal(bert.encoder.layer[1].output.dense.weight, full.encoder.layer[1].output.dense.weight)
    tokenizer = prepare_for_encoding(pretrained_tokenizer(tmp_path), 8)
    assert encode(tokenizer, ["No pneumothorax"], 8).input_ids.tolist() == [[2, 5, 6, 7, 3, 0, 0, 0]]
