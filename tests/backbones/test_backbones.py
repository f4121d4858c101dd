"""Named backbones, the feature contract and the CLI, for the real and the tiny architectures."""

from __future__ import annotations

import json

import pytest
import torch

from benchmark.backbones import ARCHITECTURES, BACKBONES, BackboneSpec, CheckpointNotFound, build_backbone, user_backbone_spec
from benchmark.cli import main


@pytest.mark.parametrize("name", BACKBONES.names())
def test_every_registered_backbone_names_a_known_architecture(name):
    spec = BACKBONES.get(name)
    assert spec.arch in ARCHITECTURES
    assert spec.weights in ("random", "checkpoint")
    assert spec.weights == "random" or (spec.checkpoint_file and (spec.published_at or spec.build_command))


@pytest.mark.parametrize(
    "arch, size, global_dim, tokens, maps",
    [
        ("vit_base_patch16_224", 224, 768, (196, 768), [(768, 14, 14)]),
        ("resnet50", 224, 2048, (196, 1024), [(512, 28, 28), (1024, 14, 14), (2048, 7, 7)]),
        ("vit_tiny_patch16_224", 64, 192, (16, 192), [(192, 4, 4)]),
        ("resnet18", 64, 512, (16, 256), [(128, 8, 8), (256, 4, 4), (512, 2, 2)]),
    ],
)
def test_feature_contract_shapes(arch, size, global_dim, tokens, maps):
    backbone = build_backbone(BackboneSpec(name="x", arch=arch, weights="random", description="test"))
    with torch.no_grad():
        out = backbone.model(torch.randn(1, 3, size, size))
    assert out.global_features.shape == (1, global_dim)
    assert out.token_features.shape == (1, *tokens)
    assert [tuple(m.shape[1:]) for m in out.feature_maps] == maps
    spec = ARCHITECTURES.get(arch)
    assert spec.global_dim == global_dim and spec.feature_map_dims == tuple(m[0] for m in maps)


def test_vit_global_feature_is_the_normalised_cls_token():
    model = build_backbone("random_vit_tiny").model
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = model.model.forward_features(images)[:, 0]
        assert torch.equal(model.global_features(images), expected)


def test_backbones_are_frozen_and_stay_in_eval_mode():
    model = build_backbone("random_resnet18").model
    model.train()
    assert not model.training and not any(m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    running_mean = model.model.bn1.running_mean.clone()
    model(torch.randn(4, 3, 32, 32) * 5 + 3)
    assert torch.equal(model.model.bn1.running_mean, running_mean)


def test_random_initialisation_is_seeded_and_hashed():
    first, second = build_backbone("random_vit_tiny"), build_backbone("random_vit_tiny")
    assert first.weights_sha256 == second.weights_sha256
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert first.weights_sha256 != build_backbone("random_resnet18").weights_sha256


def test_named_checkpoint_lookup_and_the_error_that_says_where_to_put_it(tmp_path, monkeypatch, tiny_states, save_mgca_checkpoint):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MGCA_BENCH_CHECKPOINTS", raising=False)
    with pytest.raises(CheckpointNotFound, match=r"vit_base.ckpt.*drive.google.com.*MGCA_BENCH_CHECKPOINTS"):
        build_backbone("mgca_vit")
    folder = tmp_path / "weights"
    folder.mkdir()
    save_mgca_checkpoint(folder / "resnet_50.ckpt", tiny_states["resnet18"], "resnet_50")
    monkeypatch.setenv("MGCA_BENCH_CHECKPOINTS", str(folder))
    with pytest.raises(Exception, match="incomplete load into resnet50"):  # a ResNet-18 under the ResNet-50 name
        build_backbone("mgca_resnet50")


def test_user_checkpoint_backbone(tmp_path, tiny_states, save_mgca_checkpoint):
    path = save_mgca_checkpoint(tmp_path / "mine.ckpt", tiny_states["vit_tiny_patch16_224"], "vit_tiny")
    loaded = build_backbone(user_backbone_spec("mine", "vit_tiny_patch16_224"), checkpoint=path)
    assert loaded.load_report.complete and len(loaded.load_report.sha256) == 64
    same_weights_other_format = tmp_path / "mine.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in tiny_states["vit_tiny_patch16_224"].items()}, str(same_weights_other_format))
    again = build_backbone(user_backbone_spec("mine", "vit_tiny_patch16_224"), checkpoint=same_weights_other_format)
    assert again.load_report.sha256 != loaded.load_report.sha256  # different files
    assert again.weights_sha256 == loaded.weights_sha256  # same weights: one board identity, one feature cache
    assert torch.equal(loaded.model.model.cls_token, tiny_states["vit_tiny_patch16_224"]["cls_token"])


@pytest.mark.parametrize("arch", ["vit_base_patch16_224", "resnet50"])
def test_check_checkpoint_reports_an_exact_match_for_mgca_release_layout(arch, mgca_release_like, capsys):
    assert main(["check-checkpoint", str(mgca_release_like[arch]), "--arch", arch]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["arch"] == arch and report["prefix"] == "img_encoder_q.model."
    assert report["matched"] == report["expected"] == {"vit_base_patch16_224": 150, "resnet50": 265}[arch]
    assert report["missing"] == report["unexpected"] == report["mismatched"] == 0
    assert len(report["sha256"]) == 64


def test_check_checkpoint_fails_on_the_wrong_architecture(mgca_release_like, capsys):
    assert main(["check-checkpoint", str(mgca_release_like["resnet50"]), "--arch", "vit_base_patch16_224"]) == 2
    out, err = capsys.readouterr()
    assert '"ok": false' in out
    assert err.count("\n") == 1 and str(mgca_release_like["resnet50"]) in err and "--arch" in err


def test_check_checkpoint_refuses_a_malicious_file(tmp_path, capsys):
    import os

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    assert main(["check-checkpoint", str(tmp_path / "evil.ckpt"), "--arch", "resnet18"]) == 2
    out, err = capsys.readouterr()
    assert not out and err.startswith(f"error: {tmp_path / 'evil.ckpt'}: refused, the file tries to run code")
    assert err.count("\n") == 1 and "weights_only" not in err
    assert not (tmp_path / "pwned").exists()


def test_backbones_verb_lists_the_whole_registry(capsys):
    assert main(["backbones"]) == 0
    listing = capsys.readouterr().out
    assert all(name in listing for name in BACKBONES.names())
    assert main(["backbones", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [b["name"] for b in data["backbones"]] == BACKBONES.names()


def test_demo_checkpoint_is_a_complete_mgca_layout_checkpoint(tmp_path, capsys):
    path = tmp_path / "demo.ckpt"
    assert main(["demo-checkpoint", "--arch", "resnet18", "--seed", "1", "--out", str(path)]) == 0
    capsys.readouterr()
    assert main(["check-checkpoint", str(path), "--arch", "resnet18"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] and report["prefix"] == "img_encoder_q.model."
    seed0 = build_backbone("random_resnet18")
    assert report["sha256"] != seed0.weights_sha256
