"""Architecture sources: each library's own save format round-trips into the feature contract.

Every model here is a random, tiny instance saved exactly as its library writes it
(``save_pretrained``, open_clip state dict + config, timm's ``CheckpointSaver``, a whole pickled
torchxrayvision module, a Lightning-style dict under a foreign prefix); the test shows that
every encoder key is matched, that the global feature is the one the library itself computes,
and that the shapes follow the contract.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import torch

from benchmark.backbones import (
    ARCHITECTURES,
    SOURCES,
    ArchitectureError,
    BackboneSpec,
    CheckpointMismatchError,
    build_backbone,
    resolve_architecture,
    user_backbone_spec,
)
from benchmark.backbones.checkpoint import match_state_dict
from benchmark.cli import main


@pytest.fixture(autouse=True)
def _no_grad():
    """Forward passes only (the probe test turns gradients back on for its head)."""
    with torch.no_grad():
        yield


def random_backbone(arch: str):
    return build_backbone(BackboneSpec(name="random", arch=arch, weights="random", description="test"))


def load(arch: str, checkpoint: Path, prefix: str | None = None):
    loaded = build_backbone(user_backbone_spec("test", arch, prefix), checkpoint)
    report = loaded.load_report
    assert report.complete and report.matched == report.expected > 0, report
    return loaded


def assert_contract(loaded, size: int, batch: int = 2):
    """Run the backbone; shapes must match what the architecture declares. Returns the images and the output."""
    arch, channels = loaded.model.arch, loaded.preprocessing.channels
    images = torch.randn(batch, channels, size, size)
    out = loaded.model(images)
    assert out.global_features.shape == (batch, arch.global_dim)
    assert out.token_features.shape[0] == batch and out.token_features.shape[2] == arch.token_dim
    assert [m.shape[1] for m in out.feature_maps] == list(arch.feature_map_dims)
    assert [size // m.shape[-1] for m in out.feature_maps] == list(arch.feature_map_strides)
    assert list(arch.feature_map_strides) == sorted(arch.feature_map_strides)
    assert out.token_features.shape[1] in [m.shape[-1] * m.shape[-2] for m in out.feature_maps]  # positions of one map
    return images, out


def same_weights(module: torch.nn.Module, state: dict[str, torch.Tensor], prefix: str = "") -> bool:
    loaded = module.state_dict()
    return all(torch.equal(loaded[key[len(prefix):]], value) for key, value in state.items()
               if key.startswith(prefix) and key[len(prefix):] in loaded)


# ------------------------------------------------------------------------------------------ timm


@pytest.fixture(scope="module")
def timm_training_checkpoint(tmp_path_factory):
    """What timm's train.py writes: CheckpointSaver with optimizer state, argparse args and a classifier head."""
    import timm
    from timm.utils import CheckpointSaver

    folder = tmp_path_factory.mktemp("timm")
    torch.manual_seed(0)
    model = timm.create_model("test_convnext", pretrained=False, num_classes=5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    with torch.enable_grad():
        model(torch.randn(2, 3, 32, 32)).sum().backward()
    optimizer.step()
    args = argparse.Namespace(model="test_convnext", lr=0.1, epochs=1, output=str(folder))
    CheckpointSaver(model, optimizer, args=args, checkpoint_dir=str(folder)).save_checkpoint(epoch=0, metric=0.5)
    return folder / "last.pth.tar", model.eval()


def test_timm_save_checkpoint_round_trip(timm_training_checkpoint):
    path, model = timm_training_checkpoint
    loaded = load("timm:test_convnext", path)
    assert loaded.load_report.container == "state_dict"
    assert loaded.load_report.ignored == ["head.fc.bias", "head.fc.weight"]
    images, out = assert_contract(loaded, 64)
    assert torch.allclose(out.global_features, model.forward_head(model.forward_features(images), pre_logits=True))
    assert loaded.preprocessing.source.startswith("timm pretrained config of test_convnext")


def _register_tiny_timm_model(name: str, entrypoint: str, **overrides) -> str:
    """A tiny member of a timm family, registered as timm registers its own ``test_*`` models."""
    import timm
    from timm.models import register_model

    original = timm.models.model_entrypoint(entrypoint)

    def create(pretrained: bool = False, **kwargs):
        return original(pretrained=pretrained, **{**overrides, **kwargs})

    create.__name__ = create.__qualname__ = name
    if not timm.is_model(name):
        register_model(create)
    return name


TINY = dict(embed_dim=32, depth=2, num_heads=2)
TIMM_FAMILIES = {  # timm's own test_* models where it ships one, else the family's smallest entrypoint made tiny
    "ViT": (lambda: "test_vit", "vit", 64),
    "DeiT": (lambda: _register_tiny_timm_model("cxr_test_deit", "deit_tiny_patch16_224", **TINY), "vit", 64),
    "Swin": (lambda: _register_tiny_timm_model("cxr_test_swin", "swin_tiny_patch4_window7_224", embed_dim=16,
                                               depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=4), "pyramid", 64),
    "ConvNeXt": (lambda: "test_convnext", "pyramid", 64),
    "ResNet": (lambda: "test_resnet", "resnet", 64),
    "DenseNet": (lambda: _register_tiny_timm_model("cxr_test_densenet", "densenet121", growth_rate=8,
                                                   block_config=(1, 1, 1, 1)), "pyramid", 64),
    "EfficientNet": (lambda: "test_efficientnet", "pyramid", 64),
    "EVA": (lambda: _register_tiny_timm_model("cxr_test_eva", "eva02_tiny_patch14_224", **TINY), "vit", 56),
}


@pytest.mark.parametrize("family", TIMM_FAMILIES)
def test_timm_family_walk(family):
    register, expected_family, size = TIMM_FAMILIES[family]
    name = register()
    arch = resolve_architecture(f"timm:{name}")
    assert arch.family == expected_family and arch.source == "timm"
    assert len(arch.feature_map_dims) == (1 if expected_family == "vit" else 3)
    loaded = random_backbone(f"timm:{name}")
    images, out = assert_contract(loaded, size)
    timm_pooled = loaded.model.model(images)  # num_classes=0: timm's own pooled features
    assert torch.allclose(out.global_features, timm_pooled, atol=1e-5)
    state = {f"module.encoder.{k}": v for k, v in loaded.model.model.state_dict().items()}
    _, report = match_state_dict(state, arch)
    assert report.complete and report.prefix == "module.encoder." and report.matched == report.expected


def test_short_names_are_the_timm_and_torchvision_modules_with_mgca_preprocessing():
    vit, timm_vit = ARCHITECTURES.get("vit_tiny_patch16_224"), resolve_architecture("timm:vit_tiny_patch16_224")
    assert vit.state_shapes == timm_vit.state_shapes and vit.shapes == timm_vit.shapes
    resnet, tv_resnet = resolve_architecture("resnet50"), resolve_architecture("torchvision:resnet50")
    assert resnet.state_shapes == tv_resnet.state_shapes
    assert resnet.preprocessing.mean == (0.5, 0.5, 0.5) and tv_resnet.preprocessing.mean == (0.485, 0.456, 0.406)
    # B20's size belongs to the architecture; the probe applies it where the protocol's rules are in force
    assert resnet.linear_probe_input_size == tv_resnet.linear_probe_input_size == 299


# ----------------------------------------------------------------------------------- torchvision


@pytest.fixture(scope="module")
def gloria_like_checkpoint(tmp_path_factory):
    """A Lightning checkpoint of a torchvision ResNet under another method's prefix, with OmegaConf hyper-parameters."""
    import torchvision
    from omegaconf import OmegaConf

    torch.manual_seed(1)
    resnet = torchvision.models.resnet18(weights=None)
    state = {f"gloria.img_encoder.model.{k}": v for k, v in resnet.state_dict().items()}
    state |= {"gloria.img_encoder.global_embedder.weight": torch.randn(8, 512), "gloria.text_encoder.model.w": torch.randn(3)}
    config = OmegaConf.create({"model": {"vision": {"model_name": "resnet_18", "pretrained": True}}, "lightning": {"seed": 23}})
    path = tmp_path_factory.mktemp("gloria") / "epoch=9.ckpt"
    torch.save({"epoch": 9, "state_dict": state, "hyper_parameters": config, "pytorch-lightning_version": "1.3.7"}, path)
    return path, resnet.eval()


def test_torchvision_lightning_checkpoint_under_a_foreign_prefix(gloria_like_checkpoint):
    path, resnet = gloria_like_checkpoint
    loaded = load("torchvision:resnet18", path)
    assert loaded.load_report.prefix == "gloria.img_encoder.model." and loaded.load_report.ignored == ["fc.bias", "fc.weight"]
    images, out = assert_contract(loaded, 64)
    resnet.fc = torch.nn.Identity()
    assert torch.allclose(out.global_features, resnet(images), atol=1e-5)


def test_torchvision_convnets_are_read_through_their_own_forward():
    """MobileNet-V3: stage maps by hooks, global feature from its own forward without the last Linear."""
    import torchvision

    arch = resolve_architecture("torchvision:mobilenet_v3_small")
    assert arch.family == "pyramid" and arch.feature_map_strides == (8, 16, 32) and arch.classifier_prefixes == ("classifier.3.",)
    loaded = random_backbone("torchvision:mobilenet_v3_small")
    images, out = assert_contract(loaded, 64)
    reference = torchvision.models.mobilenet_v3_small(weights=None)
    reference.load_state_dict(loaded.model.model.state_dict(), strict=False)
    reference.classifier[3] = torch.nn.Identity()
    assert torch.allclose(out.global_features, reference.eval()(images), atol=1e-5)


# -------------------------------------------------------------------------------------------- hf


def _save_hf(folder: Path, model, processor) -> Path:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def hf_folders(tmp_path_factory):
    """Tiny save_pretrained folders: ViT (safetensors), SigLIP vision, DINOv2 (sharded), CLIP (whole model), Swin (pytorch_model.bin)."""
    from transformers import (
        BitImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config, Dinov2Model, SiglipImageProcessor,
        SiglipVisionConfig, SiglipVisionModel, SwinConfig, SwinModel, ViTConfig, ViTImageProcessor, ViTModel,
    )

    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(2)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    folders = {
        "vit": _save_hf(root / "vit", ViTModel(ViTConfig(**small, image_size=32, patch_size=8)),
                        ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.4] * 3, image_std=[0.3] * 3)),
        "clip": _save_hf(root / "clip", CLIPModel(CLIPConfig(
            vision_config=dict(**small, image_size=32, patch_size=8),
            text_config=dict(hidden_size=16, num_hidden_layers=3, num_attention_heads=2, intermediate_size=32))),
            CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})),
    }
    siglip = SiglipVisionModel(SiglipVisionConfig(**small, image_size=32, patch_size=8))
    folders["siglip"] = _save_hf(root / "siglip", siglip, SiglipImageProcessor(size={"height": 32, "width": 32}))
    dinov2 = Dinov2Model(Dinov2Config(**small, image_size=28, patch_size=14))
    dinov2.save_pretrained(root / "dinov2", max_shard_size="40KB")
    BitImageProcessor(size={"shortest_edge": 28}, crop_size={"height": 28, "width": 28}, do_center_crop=True,
                      image_mean=[0.53] * 3, image_std=[0.26] * 3).save_pretrained(root / "dinov2")
    folders["dinov2"] = root / "dinov2"
    swin = SwinModel(SwinConfig(embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], image_size=64, window_size=2))
    (root / "swin").mkdir()
    swin.config.save_pretrained(root / "swin")
    # What transformers < 4.35 wrote: a pickled state dict under the original key names (5.x renames them on load).
    from transformers.core_model_loading import revert_weight_conversion

    torch.save(revert_weight_conversion(swin, swin.state_dict()), root / "swin" / "pytorch_model.bin")
    ViTImageProcessor(size={"height": 64, "width": 64}).save_pretrained(root / "swin")
    folders["swin"] = root / "swin"
    return folders


@pytest.mark.parametrize("kind, family, size", [("vit", "vit", 64), ("dinov2", "vit", 56), ("clip", "vit", 64),
                                                ("siglip", "vit", 64), ("swin", "pyramid", 64)])
def test_hf_save_pretrained_folder_round_trip(hf_folders, kind, family, size):
    from transformers import AutoModel

    folder = hf_folders[kind]
    loaded = load(f"hf:{folder}", folder)
    assert loaded.model.arch.family == family
    images, out = assert_contract(loaded, size)
    reference = AutoModel.from_pretrained(folder).eval()
    if kind == "clip":  # the tower's pooled [CLS] (after post_layernorm); the text tower is not part of the encoder
        assert loaded.load_report.prefix == "vision_model."
        expected = reference.vision_model(pixel_values=images, interpolate_pos_encoding=True).pooler_output
    elif kind == "vit":
        expected = reference(pixel_values=images, interpolate_pos_encoding=True).last_hidden_state[:, 0]
    elif kind == "siglip":  # no [CLS]: the attention-pooling head's output
        expected = reference(pixel_values=images, interpolate_pos_encoding=True).pooler_output
    else:
        expected = reference(pixel_values=images).pooler_output
    assert torch.allclose(out.global_features, expected, atol=1e-5)


def test_hf_preprocessing_comes_from_the_image_processor_config(hf_folders, capsys):
    assert main(["check-checkpoint", str(hf_folders["dinov2"]), "--arch", f"hf:{hf_folders['dinov2']}"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["preprocessing"]["input_size"] == 28  # the centre crop, not the resize
    assert report["preprocessing"]["mean"] == [0.53] * 3 and report["preprocessing"]["std"] == [0.26] * 3
    assert report["preprocessing"]["value_range"] == [0.0, pytest.approx(1.0)]
    assert "preprocessor_config.json" in report["preprocessing"]["source"]


def test_sharded_safetensors_load_without_pickle(hf_folders, monkeypatch):
    folder = hf_folders["dinov2"]
    assert len(list(folder.glob("model-*.safetensors"))) > 1 and (folder / "model.safetensors.index.json").is_file()

    def no_pickle(*args, **kwargs):
        raise AssertionError("torch.load was called")

    monkeypatch.setattr(torch, "load", no_pickle)
    loaded = load(f"hf:{folder}", folder)
    assert len(loaded.load_report.sha256) == 64


def test_medclip_vit_layout_swin_under_vision_model_model(hf_folders, tmp_path):
    """MedCLIP-ViT's pytorch_model.bin: HF Swin under ``vision_model.model.``, a projection head, a BERT text model."""
    swin_state = torch.load(hf_folders["swin"] / "pytorch_model.bin")
    state = {f"vision_model.model.{k}": v for k, v in swin_state.items()}
    state |= {"vision_model.projection_head.weight": torch.randn(8, 64), "text_model.model.embeddings.word_embeddings.weight":
              torch.randn(10, 8), "text_model.projection_head.weight": torch.randn(8, 8), "logit_scale": torch.tensor(4.6)}
    torch.save(state, tmp_path / "pytorch_model.bin")
    loaded = load(f"hf:{hf_folders['swin']}", tmp_path / "pytorch_model.bin")
    assert loaded.load_report.prefix == "vision_model.model."


def test_biovil_layout_resnet_trunk_under_encoder_encoder(tmp_path):
    """BioViL's image model file: a torchvision ResNet under ``encoder.encoder.`` (BioViL-T adds a ViT pooler beside it)."""
    import torchvision

    trunk = torchvision.models.resnet18(weights=None).state_dict()
    state = {f"encoder.encoder.{k}": v for k, v in trunk.items()}
    state |= {"projector.projection.model.0.weight": torch.randn(8, 512, 1, 1), "encoder.backbone_to_vit.weight":
              torch.randn(4, 512, 1, 1), "encoder.vit_pooler.blocks.0.norm1.weight": torch.randn(4)}
    torch.save(state, tmp_path / "biovil_image_resnet_proj_size_128.pt")
    loaded = load("torchvision:resnet18", tmp_path / "biovil_image_resnet_proj_size_128.pt")
    assert loaded.load_report.prefix == "encoder.encoder." and loaded.load_report.ignored == ["fc.bias", "fc.weight"]


# ------------------------------------------------------------------------------------- open_clip


@pytest.fixture(scope="module")
def open_clip_folders(tmp_path_factory, write_open_clip_folder):
    root = tmp_path_factory.mktemp("open_clip")
    return {"vit": write_open_clip_folder(root / "vit", 32), "wide": write_open_clip_folder(root / "wide", 48),
            "timm": write_open_clip_folder(root / "biomedclip_like", 0, trunk="test_vit")}


@pytest.mark.parametrize("kind", ["vit", "timm"])
def test_open_clip_state_dict_and_config_round_trip(open_clip_folders, kind):
    import open_clip

    folder = open_clip_folders[kind]
    loaded = load(f"open_clip:{folder}", folder)
    assert loaded.load_report.prefix == "visual."
    assert loaded.preprocessing.mean == (0.39, 0.39, 0.39) and loaded.preprocessing.fixed_size
    images, out = assert_contract(loaded, 32)
    model = open_clip.create_model(f"local-dir:{folder}").eval()
    assert torch.allclose(out.global_features, model.encode_image(images), atol=1e-5)


def test_open_clip_config_that_does_not_match_the_checkpoint_is_exit_2(open_clip_folders, capsys):
    wide_weights = open_clip_folders["wide"] / "open_clip_pytorch_model.bin"
    assert main(["check-checkpoint", str(wide_weights), "--arch", f"open_clip:{open_clip_folders['vit']}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(wide_weights) in err and "mismatched" in err and "--arch" in err


# ------------------------------------------------------------------------------------------- xrv


@pytest.fixture(scope="module")
def xrv_densenet_file(tmp_path_factory):
    """torchxrayvision's released DenseNet weights are whole pickled modules, classifier and all."""
    import torchxrayvision as xrv

    torch.manual_seed(4)
    model = xrv.models.DenseNet(weights=None).eval()
    path = tmp_path_factory.mktemp("xrv") / "nih-pc-chex-mimic_ch-google-openi-kaggle-densenet121-d121-tw-lr001-rot45-tr15-sc15-seed0-best.pt"
    torch.save(model, path)
    return path, model


def test_xrv_pickled_module_loads_without_running_its_code(xrv_densenet_file):
    path, model = xrv_densenet_file
    loaded = load("xrv:densenet121-res224-all", path)
    assert loaded.load_report.container == "pickled nn.Module"
    assert loaded.load_report.ignored == ["classifier.bias", "classifier.weight"]
    assert loaded.preprocessing.channels == 1 and loaded.preprocessing.value_range == (-1024.0, 1024.0)
    images, out = assert_contract(loaded, 64)
    assert torch.allclose(out.global_features, model.features2(images), atol=1e-5)


def test_xrv_resnet50_has_torchxrayvisions_layout():
    arch = resolve_architecture("xrv:resnet50-res512-all")
    assert arch.state_shapes["conv1.weight"] == (64, 1, 7, 7) and "fc.weight" not in arch.state_shapes
    assert arch.preprocessing.input_size == 512 and arch.family == "resnet"


# ---------------------------------------------------------------------------- names and bad input


@pytest.mark.parametrize("name, message", [
    ("timm:hf-hub:timm/vit_base_patch16_224.augreg_in21k", "nothing is downloaded"),
    ("hf:microsoft/rad-dino", "huggingface-cli download microsoft/rad-dino"),
    ("open_clip:hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224", "nothing is downloaded"),
    ("timm:convnext_tinyy", "Did you mean 'timm:convnext_tiny'"),
    ("torchvision:resnet5O", "Did you mean 'torchvision:resnet50'"),
    ("open_clip:ViT-B-32-quickgeluu", "open_clip:ViT-B-32-quickgelu"),
    ("xrv:densenet121-res224-everything", "densenet121-res224-all"),
    ("timn:resnet50", "Did you mean 'timm'"),
    ("convnext_tiny", "Did you mean 'timm:convnext_tiny'"),
    ("resnet5", "Did you mean 'resnet50'"),
    ("torchvision:vit_b_16", "Use the timm equivalent"),
])
def test_names_that_cannot_be_resolved_say_what_to_do(name, message):
    with pytest.raises(Exception, match=message.replace("(", r"\(").replace(".", r"\.")):
        resolve_architecture(name)


@pytest.mark.parametrize("arch", ["nope", "timm:nope_net", "hf:/nonexistent/folder"])
def test_check_checkpoint_with_an_unknown_arch_is_one_line_exit_2(arch, tmp_path, capsys):
    torch.save({"a": torch.zeros(1)}, tmp_path / "w.pth")
    assert main(["check-checkpoint", str(tmp_path / "w.pth"), "--arch", arch]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith("error: ") and err.count("\n") == 1


def test_bad_hf_folders_name_the_file_and_the_fix(tmp_path, hf_folders, capsys):
    empty = tmp_path / "no_config"
    empty.mkdir()
    (empty / "model.safetensors").write_bytes(b"")
    unknown = tmp_path / "unknown_type"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"model_type": "mamba"}))
    no_processor = tmp_path / "no_processor"
    no_processor.mkdir()
    (no_processor / "config.json").write_text((hf_folders["vit"] / "config.json").read_text())
    for folder, message in [(empty, "no config.json"), (unknown, "config.json: model type 'mamba' is not supported"),
                            (no_processor, "no preprocessor_config.json")]:
        assert main(["check-checkpoint", str(folder), "--arch", f"hf:{folder}"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err


def test_a_checkpoint_of_another_architecture_is_exit_2(hf_folders, timm_training_checkpoint, capsys):
    assert main(["check-checkpoint", str(timm_training_checkpoint[0]), "--arch", f"hf:{hf_folders['vit']}"]) == 2
    err = capsys.readouterr().err
    assert str(timm_training_checkpoint[0]) in err and "--arch" in err and err.count("\n") == 1
    with pytest.raises(CheckpointMismatchError):
        build_backbone(user_backbone_spec("x", "timm:test_vit"), hf_folders["vit"])


def test_backbones_all_lists_every_source_and_how_to_name_it(capsys):
    assert main(["backbones", "--all"]) == 0
    listing = capsys.readouterr().out
    for _, source in SOURCES.items():
        assert source.syntax in listing and source.example in listing
    assert main(["backbones", "--json", "--all"]) == 0
    assert {s["name"] for s in json.loads(capsys.readouterr().out)["sources"]} == set(SOURCES.names())


def test_every_source_example_resolves_without_weights():
    for _, source in SOURCES.items():
        if source.name == "hf":
            with pytest.raises(ArchitectureError, match="no such local folder"):
                resolve_architecture(source.example)
            continue
        arch = resolve_architecture(source.example)
        assert arch.source == source.name and arch.preprocessing.input_size > 0 and arch.state_shapes


# ------------------------------------------------------------------------------ the probe, per source


@pytest.fixture(scope="module")
def rsna_demo(tmp_path_factory):
    from tasks.classification.synthetic import write_synthetic_prepared

    root = tmp_path_factory.mktemp("prepared")
    write_synthetic_prepared(root, "rsna", {"train": 16, "val": 8, "test": 8}, image_size=64)
    return root / "rsna"


@pytest.fixture(scope="module")
def one_checkpoint_per_source(timm_training_checkpoint, gloria_like_checkpoint, hf_folders, open_clip_folders, xrv_densenet_file):
    return {
        "timm": ("timm:test_convnext", timm_training_checkpoint[0]),
        "torchvision": ("torchvision:resnet18", gloria_like_checkpoint[0]),
        "hf": (f"hf:{hf_folders['vit']}", hf_folders["vit"]),
        "open_clip": (f"open_clip:{open_clip_folders['vit']}", open_clip_folders["vit"]),
        "xrv": ("xrv:densenet121-res224-all", xrv_densenet_file[0]),
    }


@pytest.mark.parametrize("source, encoder_input", [("timm", 40), ("torchvision", 56), ("hf", 56), ("open_clip", 32), ("xrv", 56)])
def test_linear_probe_runs_on_every_source_with_its_own_preprocessing(one_checkpoint_per_source, rsna_demo, tmp_path, source, encoder_input):
    """On 64 px demo images (crop 56) the encoder input follows the model: test_convnext's 160 px at the reference
    224 crop gives 56 * 160 / 224 = 40; open_clip's fixed 32; the others take 224 at 224, so the crop as it is."""
    from benchmark.data.prepared import PreparedDataset
    from tasks.classification.adapter import linear_probe
    from tasks.classification.protocol import with_overrides

    arch, checkpoint = one_checkpoint_per_source[source]
    loaded = load(arch, checkpoint)
    with torch.enable_grad():
        result = linear_probe(loaded, PreparedDataset(rsna_demo), 100, 0, 0, "cached", tmp_path / "work", tmp_path / "cache",
                              protocol=with_overrides(batch_size=8, max_epochs=2, encode_batch_size=8), device="cpu")
    assert result.predictions_file.is_file() and result.targets_file.is_file()
    assert result.config["preprocessing"] == loaded.preprocessing.to_dict()
    assert result.config["geometry"]["encoder_input_size"] == encoder_input


@pytest.mark.parametrize("preprocess", ["model", "protocol"])
@pytest.mark.parametrize("source", ["timm", "torchvision", "hf", "open_clip", "xrv"])
def test_check_checkpoint_prints_the_resolved_preprocessing_of_every_source(one_checkpoint_per_source, capsys, source, preprocess):
    from benchmark.backbones import resolve_preprocessing

    arch, checkpoint = one_checkpoint_per_source[source]
    assert main(["check-checkpoint", str(checkpoint), "--arch", arch, "--preprocess", preprocess]) == 0
    printed = json.loads(capsys.readouterr().out)["preprocessing"]
    declared = resolve_architecture(arch).preprocessing
    assert printed == resolve_preprocessing(declared, preprocess).to_dict()
    assert printed["mode"] == preprocess and printed["channels"] == declared.channels
    assert printed["input_size"] == declared.input_size
