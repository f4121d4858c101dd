"""Text towers with tiny random weights, one source at a time: MGCA (exported by pretrain/ and the
released layout), open_clip (plain CLIP and BiomedCLIP's Hugging Face text tower), transformers
CLIP and SigLIP folders. Each tower is compared with its own library's (or pretraining's) forward."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from benchmark.backbones import BackboneSpec, build_backbone, user_backbone_spec
from benchmark.backbones.checkpoint import CheckpointMismatchError
from benchmark.backbones.text import TextModelMissing, TextTowerError, load_text_tower
from benchmark.backbones.text.mgca import clean_text
from pretrain.config import load_config
from pretrain.export import export_checkpoint
from pretrain.model import MGCA
from benchmark.backbones.text.mgca import prepare_for_encoding
from pretrain.text import encode, save_tokenizer, train_tokenizer

TEXTS = ["No pleural effusion.", "Mild cardiomegaly", "no pleural effusion", "Effusion, no pleural."]
CAPTIONS = ["no acute cardiopulmonary process", "small left pleural effusion", "mild cardiomegaly without edema",
            "no pneumothorax or focal consolidation", "pleural effusion and atelectasis"] * 4


@pytest.fixture(autouse=True)
def _no_grad():
    with torch.no_grad():
        yield


def loaded_with_tower(arch: str, checkpoint: Path, text_model: Path | None = None, name: str = "t"):
    loaded = build_backbone(user_backbone_spec(name, arch), checkpoint=checkpoint)
    return loaded, load_text_tower(loaded, text_model)


def images(size: int, batch: int = 3) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(5))


def assert_tower_contract(tower, size: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes, unit norm, one dimension for both sides, the same text gives the same row (alone or in a batch)."""
    text = tower.text_features(TEXTS)
    image = tower.image_embeddings(images(size))
    assert text.shape == (len(TEXTS), dim) and image.shape == (3, dim) and tower.embedding_dim == dim
    assert torch.allclose(text.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert torch.allclose(image.norm(dim=-1), torch.ones(3), atol=1e-5)
    assert torch.allclose(tower.text_features(TEXTS[1:2])[0], text[1], atol=1e-5)
    assert torch.equal(tower.text_features(TEXTS), text)
    assert tower.load_report.complete and tower.load_report.matched == tower.load_report.expected > 0
    return text, image


def test_every_text_tower_source_is_an_architecture_source() -> None:
    from benchmark.backbones import SOURCES
    from benchmark.backbones.text import TEXT_TOWERS

    assert set(TEXT_TOWERS.names()) <= {*SOURCES.names(), "mgca"}  # "mgca": the short names' source


# -------------------------------------------------------------------------------------------- mgca


def _mgca(*overrides: str) -> MGCA:
    config = load_config("demo", ["arch=resnet18", "text_layers=1", "text_hidden_size=32", "text_heads=2",
                                  "text_intermediate_size=64", "projection_hidden=32", "emb_dim=16", "num_prototypes=8",
                                  "max_words=16", *overrides])
    torch.manual_seed(0)
    tokenizer = train_tokenizer(CAPTIONS, vocab_size=80)
    model = MGCA(config, tokenizer.get_vocab_size()).eval()
    for module in model.modules():  # BatchNorm statistics that differ from the initial 0 / 1
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.tokenizer = tokenizer
    return model


@pytest.fixture(scope="module")
def mgca_export(tmp_path_factory) -> tuple[MGCA, Path]:
    """A run checkpoint as pretraining writes one (best.ckpt + tokenizer.json), exported."""
    run = tmp_path_factory.mktemp("mgca_run")
    model = _mgca()
    save_tokenizer(model.tokenizer, run / "tokenizer.json")
    params = {"config": model.config.to_dict(), "data": {"vocab_size": model.tokenizer.get_vocab_size()},
              "arch": model.config.arch, "tokenizer": "tokenizer.json", "initialisation": {}}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": params, "epoch": 1}, run / "best.ckpt")
    ckpt, _ = export_checkpoint(run / "best.ckpt", run / "export" / "mgca_tiny.ckpt")
    return model, ckpt


def test_an_exported_mgca_tower_is_pretrainings_text_and_image_embedding(mgca_export) -> None:
    model, ckpt = mgca_export
    loaded, tower = loaded_with_tower("resnet18", ckpt)
    text, image = assert_tower_contract(tower, 64, 16)
    assert tower.image_encoder is loaded.model and not tower.notes
    # pretraining's own forward (eval mode): the caption as pretraining cleans it, the same tokenizer
    tokenizer = prepare_for_encoding(model.tokenizer, 16)
    encoded = encode(tokenizer, [clean_text(t) for t in TEXTS], 16)
    expected = model.text_encoder_q(*(torch.from_numpy(x) for x in (encoded.input_ids, encoded.attention_mask, encoded.word_slots)))
    assert torch.allclose(text, expected.global_emb, atol=1e-5)
    assert torch.allclose(image, model.img_encoder_q(images(64)).global_emb, atol=1e-5)
    assert torch.allclose(text[0], text[2], atol=1e-6)  # punctuation and case are cleaned away as in pretraining
    # word order counts (positions 0..L-1), if little with random position embeddings (std 0.02)
    assert (text[2] - text[3]).abs().max() > 1e-4


def test_image_only_checkpoints_and_random_backbones_have_no_tower(mgca_export, tmp_path) -> None:
    _, ckpt = mgca_export
    assert loaded_with_tower("resnet18", ckpt.with_suffix(".safetensors"))[1] is None  # the image encoder alone
    image_only = tmp_path / "demo_seed1.ckpt"  # demo-checkpoint's layout
    torch.save({"state_dict": {k: v for k, v in torch.load(ckpt, weights_only=True)["state_dict"].items()
                               if k.startswith("img_encoder_q.model.")}}, image_only)
    assert loaded_with_tower("resnet18", image_only)[1] is None
    assert load_text_tower(build_backbone("random_resnet18")) is None


def test_a_pretrain_checkpoint_without_the_text_entry_says_how_to_export_it(mgca_export) -> None:
    _, ckpt = mgca_export
    best = ckpt.parent.parent / "best.ckpt"  # a run's checkpoint: no tokenizer inside
    with pytest.raises(TextTowerError, match=r"without its text_tower entry.*python -m pretrain\.export"):
        loaded_with_tower("resnet18", best)


def test_a_damaged_text_entry_is_refused_before_anything_is_built(mgca_export, tmp_path) -> None:
    _, ckpt = mgca_export
    content = torch.load(ckpt, weights_only=True)
    content["text_tower"]["bert_config"]["num_hidden_layers"] = 10**6
    torch.save(content, tmp_path / "bad.ckpt")
    with pytest.raises(TextTowerError, match="num_hidden_layers above"):
        loaded_with_tower("resnet18", tmp_path / "bad.ckpt")
    content["text_tower"]["bert_config"]["num_hidden_layers"] = 2  # the checkpoint holds 1
    torch.save(content, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointMismatchError, match=r"incomplete text tower mgca text tower: matched .* missing"):
        loaded_with_tower("resnet18", tmp_path / "bad.ckpt")


@pytest.fixture(scope="module")
def released_mgca(tmp_path_factory) -> tuple[Path, Path]:
    """MGCA's released layout (med.py BERT: no token-type embedding, cross-attention layers) and a
    Bio_ClinicalBERT-like folder (vocab.txt, config.json)."""
    from transformers import BertConfig

    root = tmp_path_factory.mktemp("released")
    model = _mgca("text_intermediate_size=64")
    folder = root / "Bio_ClinicalBERT"
    folder.mkdir()
    (folder / "vocab.txt").write_text("\n".join(sorted(model.tokenizer.get_vocab(), key=model.tokenizer.get_vocab().get)) + "\n")
    BertConfig(vocab_size=model.tokenizer.get_vocab_size(), hidden_size=32, num_hidden_layers=12, num_attention_heads=2,
               intermediate_size=64).save_pretrained(folder)
    state = {k: v for k, v in model.state_dict().items() if "token_type_embeddings" not in k}
    state |= {f"text_encoder_q.model.encoder.layer.0.crossattention.self.{p}.weight": torch.randn(32, 32) for p in ("query", "key")}
    state["text_encoder_q.model.embeddings.position_ids"] = torch.arange(512)[None]  # med.py saved it
    torch.save({"state_dict": state, "hyper_parameters": {"img_encoder": "resnet_18", "emb_dim": 16}, "epoch": 20}, root / "mgca.ckpt")
    return root / "mgca.ckpt", folder


def test_a_released_mgca_tower_reads_text_as_the_reference_trained_it(released_mgca) -> None:
    ckpt, folder = released_mgca
    _, tower = loaded_with_tower("resnet18", ckpt, folder)
    text, _ = assert_tower_contract(tower, 64, 16)
    assert "B10" in tower.notes[0] and tower.tokenizer_source == str(folder)
    assert tower.load_report.ignored == ["text_encoder_q.model.embeddings.position_ids", *(
        f"text_encoder_q.model.encoder.layer.0.crossattention.self.{p}.weight" for p in ("key", "query"))]
    assert not tower.bert.embeddings.token_type_embeddings.weight.any()  # med.py has none
    assert (text[2] - text[3]).abs().max() < 1e-6  # every position id 0: word order does not count (B10)


def test_a_released_mgca_tower_without_its_text_model_names_what_to_pass(released_mgca, tmp_path, monkeypatch) -> None:
    ckpt, folder = released_mgca
    with pytest.raises(TextModelMissing, match="needs the Bio_ClinicalBERT folder .* pass text_model=FOLDER"):
        loaded_with_tower("resnet18", ckpt)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TextModelMissing, match=r"empty/config\.json: the BERT config"):
        loaded_with_tower("resnet18", ckpt, tmp_path / "empty")
    with pytest.raises(TextModelMissing, match="no such folder"):
        loaded_with_tower("resnet18", ckpt, tmp_path / "absent")
    # a named backbone finds its text model folder like its checkpoint file, and says where it looked
    spec = BackboneSpec(name="released", arch="resnet18", weights="checkpoint", checkpoint_file="mgca.ckpt",
                        text_model="Bio_ClinicalBERT", description="test")
    monkeypatch.setenv("MGCA_BENCH_CHECKPOINTS", str(ckpt.parent))
    assert load_text_tower(build_backbone(spec)) is not None
    monkeypatch.setenv("MGCA_BENCH_CHECKPOINTS", str(tmp_path))
    with pytest.raises(TextModelMissing, match=rf"looked at {tmp_path}/Bio_ClinicalBERT, checkpoints/Bio_ClinicalBERT"):
        load_text_tower(build_backbone(spec, checkpoint=ckpt))


# ------------------------------------------------------------------------------------------ open_clip


@pytest.fixture(scope="module")
def open_clip_text_folders(tmp_path_factory, write_open_clip_folder):
    """A plain CLIP (open_clip's BPE tokenizer) and BiomedCLIP's layout: a Hugging Face BERT text tower
    named by its Hub id in open_clip_config.json, read from a local folder."""
    import open_clip
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertConfig, PreTrainedTokenizerFast

    root = tmp_path_factory.mktemp("open_clip_text")
    plain = write_open_clip_folder(root / "clip", 32, text_vocab=49408)
    bert = root / "PubMedBERT"
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "no", "pleural", "effusion", "mild", "cardiomegaly"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                            sep_token="[SEP]").save_pretrained(bert)
    BertConfig(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               max_position_embeddings=16).save_pretrained(bert)
    biomed = root / "biomedclip"
    biomed.mkdir()
    text_cfg = {"hf_model_name": str(bert), "hf_tokenizer_name": str(bert), "hf_proj_type": "mlp",
                "hf_pooler_type": "cls_last_hidden_state_pooler", "context_length": 16}
    vision = {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16}
    config = {"model_cfg": {"embed_dim": 24, "vision_cfg": vision, "text_cfg": text_cfg},
              "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}
    (biomed / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(4)
    model = open_clip.create_model(f"local-dir:{biomed}", pretrained_text=False).eval()
    torch.save(model.state_dict(), biomed / "open_clip_pytorch_model.bin")
    hub = "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract"  # as published: the Hub id, not a folder
    config["model_cfg"]["text_cfg"] |= {"hf_model_name": hub, "hf_tokenizer_name": hub}
    (biomed / "open_clip_config.json").write_text(json.dumps(config))
    return {"clip": plain, "biomedclip": biomed, "bert": bert, "biomedclip_model": model}


def test_an_open_clip_tower_is_open_clips_encode_text_and_encode_image(open_clip_text_folders) -> None:
    import open_clip

    folder = open_clip_text_folders["clip"]
    _, tower = loaded_with_tower(f"open_clip:{folder}", folder)
    text, image = assert_tower_contract(tower, 32, 24)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    tokens = open_clip.get_tokenizer(f"local-dir:{folder}")(TEXTS)
    assert torch.allclose(text, F.normalize(model.encode_text(tokens), dim=-1), atol=1e-5)
    assert torch.allclose(image, F.normalize(model.encode_image(images(32)), dim=-1), atol=1e-5)
    assert tower.load_report.prefix == "" and not any(k.startswith("visual.") for k in tower.load_report.unexpected)


def test_a_biomedclip_layout_reads_its_text_model_from_a_local_folder(open_clip_text_folders) -> None:
    folders = open_clip_text_folders
    with pytest.raises(TextModelMissing, match="microsoft/BiomedNLP.*nothing is downloaded: pass text_model=FOLDER"):
        loaded_with_tower(f"open_clip:{folders['biomedclip']}", folders["biomedclip"])
    _, tower = loaded_with_tower(f"open_clip:{folders['biomedclip']}", folders["biomedclip"], folders["bert"])
    text, image = assert_tower_contract(tower, 32, 24)
    model = folders["biomedclip_model"]  # built from the local folder before the config named the Hub
    tokens = tower.tokenizer(TEXTS)
    assert torch.allclose(text, F.normalize(model.encode_text(tokens), dim=-1), atol=1e-5)
    assert torch.allclose(image, F.normalize(model.encode_image(images(32)), dim=-1), atol=1e-5)


def test_an_open_clip_text_folder_without_config_names_the_file(open_clip_text_folders, tmp_path) -> None:
    folders = open_clip_text_folders
    (tmp_path / "bert").mkdir()
    with pytest.raises(TextModelMissing, match=r"bert/config\.json: missing"):
        loaded_with_tower(f"open_clip:{folders['biomedclip']}", folders["biomedclip"], tmp_path / "bert")


@pytest.mark.parametrize("change, message", [({"layers": 10**6}, "text_cfg.layers: more than"),
                                             ({"width": 17}, "text_cfg.width 17 is not a multiple of text_cfg.heads 2"),
                                             ({"vocab_size": "big"}, "text_cfg.vocab_size 'big' must be a whole number")])
def test_an_unbuildable_open_clip_text_config_is_refused_before_building(open_clip_text_folders, tmp_path, change, message) -> None:
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(open_clip_text_folders["clip"], folder)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"] |= change
    (folder / "open_clip_config.json").write_text(json.dumps(config))
    with pytest.raises(TextTowerError, match=message):
        loaded_with_tower(f"open_clip:{folder}", folder)


# ------------------------------------------------------------------------------------------- hf


def _word_tokenizer(folder: Path, words: list[str], **special: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=special["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=backend, **special).save_pretrained(folder)


@pytest.fixture(scope="module")
def hf_text_folders(tmp_path_factory):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, SiglipConfig, SiglipImageProcessor, SiglipModel

    root = tmp_path_factory.mktemp("hf_text")
    words = ["<pad>", "<unk>", "no", "pleural", "effusion.", "mild", "cardiomegaly", "effusion,", "pleural.", "<eos>"]
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    text = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, vocab_size=len(words),
                max_position_embeddings=12)
    torch.manual_seed(6)
    clip = CLIPModel(CLIPConfig(vision_config=dict(**small, image_size=32, patch_size=8),
                                text_config=text | {"eos_token_id": 9, "pad_token_id": 0}, projection_dim=20)).eval()
    clip.save_pretrained(root / "clip")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "clip")
    siglip = SiglipModel(SiglipConfig(vision_config=dict(**small, image_size=32, patch_size=8),
                                      text_config=text | {"hidden_size": 32})).eval()  # one width: no projections
    siglip.save_pretrained(root / "siglip")
    SiglipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "siglip")
    for name in ("clip", "siglip"):
        _word_tokenizer(root / name, words, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>")
    return {"clip": (root / "clip", clip), "siglip": (root / "siglip", siglip)}


def _features(output) -> torch.Tensor:
    """``get_*_features`` returns a tensor, or (transformers >= 5) an output holding ``pooler_output``."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


@pytest.mark.parametrize("kind, dim, padding", [("clip", 20, "longest"), ("siglip", 32, "max_length")])
def test_an_hf_tower_is_get_text_features_and_get_image_features(hf_text_folders, kind, dim, padding) -> None:
    from transformers import AutoTokenizer

    folder, model = hf_text_folders[kind]
    _, tower = loaded_with_tower(f"hf:{folder}", folder)
    text, image = assert_tower_contract(tower, 32, dim)
    batch = AutoTokenizer.from_pretrained(folder)(TEXTS, padding=padding, max_length=12, truncation=True, return_tensors="pt")
    expected = _features(model.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]))
    assert torch.allclose(text, F.normalize(expected, dim=-1), atol=1e-5)
    assert torch.allclose(image, F.normalize(_features(model.get_image_features(pixel_values=images(32))), dim=-1), atol=1e-5)


def test_a_siglip_folder_whose_towers_differ_in_width_is_refused(hf_text_folders, tmp_path) -> None:
    import shutil

    folder = tmp_path / "siglip"
    shutil.copytree(hf_text_folders["siglip"][0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"] |= {"hidden_size": 16, "projection_size": 16}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TextTowerError, match="text embeddings of 16 dimensions, image embeddings of 32"):
        loaded_with_tower(f"hf:{folder}", folder)


def test_an_hf_folder_without_a_tokenizer_names_the_folder(hf_text_folders, tmp_path) -> None:
    import shutil

    folder = tmp_path / "clip"
    shutil.copytree(hf_text_folders["clip"][0], folder)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (folder / name).unlink()
    with pytest.raises(TextModelMissing, match=rf"{folder}: no tokenizer files there \(looked for tokenizer.json"):
        loaded_with_tower(f"hf:{folder}", folder)


def test_vision_only_sources_have_no_tower(tmp_path) -> None:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=32,
                       patch_size=8)).save_pretrained(tmp_path / "vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path / "vit")
    assert loaded_with_tower(f"hf:{tmp_path / 'vit'}", tmp_path / "vit")[1] is None
    import timm

    torch.save(timm.create_model("resnet18", pretrained=False).state_dict(), tmp_path / "timm.pth")
    assert loaded_with_tower("timm:resnet18", tmp_path / "timm.pth")[1] is None
