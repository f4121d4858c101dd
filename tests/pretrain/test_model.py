"""The MGCA model: released key layout, attention read before dropout, word aggregation, local BERT."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from transformers import BertConfig, BertModel

from benchmark.backbones import ARCHITECTURES
from pretrain.config import ConfigError, PretrainConfig, load_config
from pretrain.model import MGCA, aggregate_words
from benchmark.backbones.text.mgca import prepare_for_encoding, pretrained_tokenizer
from pretrain.text import encode

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
    record = model.initialisation["text"]
    assert (record["source"], record["path"]) == ("folder", str(tmp_path.resolve()))
    weights = hashlib.sha256((tmp_path / "model.safetensors").read_bytes()).hexdigest()
    assert record["sha256"] == hashlib.sha256(f"model.safetensors {weights}\n".encode()).hexdigest()  # a folder's hash
    report = record["load_report"]
    assert not report["missing_keys"] and any(key.startswith("encoder.layer.3.") for key in report["unexpected_keys"])
    with pytest.raises(ConfigError, match="do not cover the first 6 BERT layers: missing"):
        MGCA(small_config(f"text_model={tmp_path}", "text_layers=6"), vocab_size=len(vocab))
    tokenizer = prepare_for_encoding(pretrained_tokenizer(tmp_path), 8)
    assert encode(tokenizer, ["No pneumothorax"], 8).input_ids.tolist() == [[2, 5, 6, 7, 3, 0, 0, 0]]


# ---------------------------------------------------------------------------------------------
# Initial weights (issue 18 §2)


def _file_of_another_model(arch: str, path: Path) -> dict[str, torch.Tensor]:
    """A checkpoint as its library publishes it (with the classifier), of weights unlike a fresh build's."""
    import timm
    import torchvision

    torch.manual_seed(123)
    if arch.startswith("vit"):
        model = timm.create_model(arch, pretrained=False, num_classes=7)
        state = model.state_dict()
        torch.save({"model": state, "epoch": 300}, path)  # DeiT's layout: the weights under "model"
    else:
        model = getattr(torchvision.models, arch)(weights=None, num_classes=7)
        state = model.state_dict()
        from safetensors.torch import save_file

        save_file(state, str(path))
    return state


@pytest.mark.parametrize("arch, name", [("vit_tiny_patch16_224", "deit.pth"), ("resnet18", "resnet.safetensors")])
def test_the_image_encoder_starts_from_the_files_weights(arch: str, name: str, tmp_path: Path) -> None:
    from pretrain.train import build_model

    path = tmp_path / name
    state = _file_of_another_model(arch, path)
    model = build_model(small_config(f"arch={arch}", f"image_init={path}"), vocab_size=50)
    encoder = model.img_encoder_q.model.state_dict()
    classifier = {key for key in state if key.startswith(("head.", "fc."))}
    assert classifier and set(encoder) == set(state) - classifier
    assert all(torch.equal(encoder[key], state[key]) for key in encoder)
    record = model.initialisation["image"]
    assert record["source"] == "file" and record["path"] == str(path.resolve())
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    report = record["load_report"]
    assert report["ok"] and report["matched"] == report["expected"] and sorted(report["ignored"]) == sorted(classifier)
    random = build_model(small_config(f"arch={arch}"), vocab_size=50)
    assert random.initialisation["image"] == {"source": "random", "path": None, "sha256": None, "load_report": None}
    fresh = random.img_encoder_q.model.state_dict()
    assert not all(torch.equal(fresh[key], encoder[key]) for key in encoder)
    # The heads and the text side start where a random run starts: the file changes the encoder only.
    heads = {key: value for key, value in model.state_dict().items() if not key.startswith("img_encoder_q.model.")}
    assert all(torch.equal(value, random.state_dict()[key]) for key, value in heads.items())


def test_an_incomplete_image_init_is_refused(tmp_path: Path) -> None:
    from benchmark.backbones import CheckpointMismatchError

    state = _file_of_another_model("resnet18", tmp_path / "full.safetensors")
    from safetensors.torch import save_file

    save_file({key: value for key, value in state.items() if not key.startswith("layer4.")}, str(tmp_path / "part.safetensors"))
    with pytest.raises(CheckpointMismatchError, match="incomplete load into resnet18"):
        MGCA(small_config("arch=resnet18", f"image_init={tmp_path / 'part.safetensors'}"), vocab_size=50)


# ---------------------------------------------------------------------------------------------
# The released checkpoints' key layout (PROTOCOL.md 12.2), written out from the reference's module
# tree (vits.py VisionTransformer, torchvision's ResNet-50 with fc = Identity, encoder.py heads),
# not from this package's modules.


def _reference_vit_base_keys() -> dict[str, tuple[int, ...]]:
    width, mlp, depth = 768, 3072, 12  # create_vit('base'): patch 16, 12 blocks, 12 heads, mlp ratio 4
    keys = {"cls_token": (1, 1, width), "pos_embed": (1, 197, width), "patch_embed.proj.weight": (width, 3, 16, 16),
            "patch_embed.proj.bias": (width,), "norm.weight": (width,), "norm.bias": (width,)}
    for block in range(depth):
        b = f"blocks.{block}."
        keys |= {b + "norm1.weight": (width,), b + "norm1.bias": (width,), b + "norm2.weight": (width,), b + "norm2.bias": (width,),
                 b + "attn.qkv.weight": (3 * width, width), b + "attn.qkv.bias": (3 * width,),
                 b + "attn.proj.weight": (width, width), b + "attn.proj.bias": (width,),
                 b + "mlp.fc1.weight": (mlp, width), b + "mlp.fc1.bias": (mlp,),
                 b + "mlp.fc2.weight": (width, mlp), b + "mlp.fc2.bias": (width,)}
    return keys


def _batch_norm(prefix: str, channels: int, affine: bool = True) -> dict[str, tuple[int, ...]]:
    keys = {prefix + "running_mean": (channels,), prefix + "running_var": (channels,), prefix + "num_batches_tracked": ()}
    return keys | ({prefix + "weight": (channels,), prefix + "bias": (channels,)} if affine else {})


def _reference_resnet50_keys() -> dict[str, tuple[int, ...]]:
    keys = {"conv1.weight": (64, 3, 7, 7), **_batch_norm("bn1.", 64)}
    channels = 64
    for layer, (width, blocks) in enumerate([(64, 3), (128, 4), (256, 6), (512, 3)], start=1):
        for block in range(blocks):  # Bottleneck, expansion 4; the first block of a layer has a projection
            b = f"layer{layer}.{block}."
            keys |= {b + "conv1.weight": (width, channels, 1, 1), **_batch_norm(b + "bn1.", width),
                     b + "conv2.weight": (width, width, 3, 3), **_batch_norm(b + "bn2.", width),
                     b + "conv3.weight": (4 * width, width, 1, 1), **_batch_norm(b + "bn3.", 4 * width)}
            if block == 0:
                keys |= {b + "downsample.0.weight": (4 * width, channels, 1, 1), **_batch_norm(b + "downsample.1.", 4 * width)}
            channels = 4 * width
    return keys  # fc = Identity: no classifier keys


def _reference_head_keys(prefix: str, global_dim: int, local_dim: int, hidden: int = 2048, out: int = 128) -> dict[str, tuple[int, ...]]:
    keys = {}
    for head, dim, kernel in (("global_embed", global_dim, ()), ("local_embed", local_dim, (1,))):
        h = f"{prefix}.{head}.head."
        keys |= {h + "0.weight": (hidden, dim, *kernel), h + "0.bias": (hidden,), **_batch_norm(h + "1.", hidden),
                 h + "3.weight": (out, hidden, *kernel), h + "3.bias": (out,), **_batch_norm(h + "4.", out, affine=False)}
    return keys


@pytest.mark.parametrize("config_name, backbone, global_dim, local_dim", [
    ("mimic_vit_base", _reference_vit_base_keys, 768, 768),
    ("mimic_resnet50", _reference_resnet50_keys, 2048, 1024),
])
def test_the_image_side_has_the_released_key_layout(config_name: str, backbone, global_dim: int, local_dim: int) -> None:
    with torch.device("meta"):  # the real ViT-B/16 and ResNet-50, built without memory
        model = MGCA(load_config(config_name), vocab_size=28996)
    state = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    image_side = {key: shape for key, shape in state.items() if key.startswith("img_encoder_q.")}
    expected = {f"img_encoder_q.model.{key}": shape for key, shape in backbone().items()}
    expected |= _reference_head_keys("img_encoder_q", global_dim, local_dim)
    assert image_side == expected
    assert state["prototype_layer.weight"] == (500, 128)


@pytest.mark.parametrize("arch, img_encoder", [
    ("vit_base_patch16_224", "vit_base"), ("resnet50", "resnet_50"), ("resnet18", "resnet_18"), ("resnet34", "resnet_34"),
    ("vit_tiny_patch16_224", "vit_tiny"),  # the reference's create_vit refuses it: its loaders fail instead of building a ViT-B
])
def test_img_encoder_is_written_as_the_reference_names_it(arch: str, img_encoder: str) -> None:
    # mgca_module.py --img_encoder: "vit_base" (create_vit(model_name[4:])) or "resnet_50" (cnn_backbones.resnet_50).
    from pretrain.checkpoints import reference_img_encoder

    assert reference_img_encoder(arch) == img_encoder


def test_a_text_folder_without_bert_is_one_error(tmp_path: Path) -> None:
    # Regression (issue 19 §2): transformers' ValueError / OSError escaped as tracebacks.
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ValueError, match=f"{tmp_path}: no usable BERT tokenizer there"):
        pretrained_tokenizer(tmp_path)
    with pytest.raises(ConfigError, match=f"text_model = '{tmp_path}': not a loadable BERT folder"):
        MGCA(small_config(f"text_model={tmp_path}"), vocab_size=50)
