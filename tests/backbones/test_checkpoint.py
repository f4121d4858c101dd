"""Checkpoint loading: every supported format, foreign pickled objects, malicious pickles, prefixes."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from benchmark.backbones import ARCHITECTURES, CheckpointError, CheckpointMismatchError, UnsafeCheckpointError
from benchmark.backbones.checkpoint import detect_prefix, load_encoder_weights, read_checkpoint

RESNET18 = ARCHITECTURES.get("resnet18")
VIT_TINY = ARCHITECTURES.get("vit_tiny_patch16_224")


def assert_same_weights(model: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    loaded = model.state_dict()
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


@pytest.mark.parametrize("arch", [RESNET18, VIT_TINY], ids=lambda a: a.name)
def test_lightning_checkpoint_with_foreign_objects_loads_exactly(tmp_path, tiny_states, save_mgca_checkpoint, arch):
    path = save_mgca_checkpoint(tmp_path / "mgca.ckpt", tiny_states[arch.name], "x")
    model = arch.build()
    report = load_encoder_weights(model, path, arch)
    assert report.complete and report.prefix == "img_encoder_q.model." and report.container == "state_dict"
    assert report.matched == report.expected > 0
    assert_same_weights(model, tiny_states[arch.name])


@pytest.mark.parametrize(
    "save",
    [
        pytest.param(lambda state, path: torch.save(state, path), id="plain-state-dict"),
        pytest.param(lambda state, path: torch.save({"model": state}, path), id="nested-model-key"),
        pytest.param(lambda state, path: torch.save(state, path, _use_new_zipfile_serialization=False), id="legacy-format"),
    ],
)
def test_pickled_formats_round_trip(tmp_path, tiny_states, save):
    path = tmp_path / "weights.pth"
    save(tiny_states["resnet18"], path)
    model = RESNET18.build()
    assert load_encoder_weights(model, path, RESNET18).complete
    assert_same_weights(model, tiny_states["resnet18"])


def test_safetensors_round_trip(tmp_path, tiny_states):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in tiny_states["vit_tiny_patch16_224"].items()}, str(path))
    model = VIT_TINY.build()
    assert load_encoder_weights(model, path, VIT_TINY).complete
    assert_same_weights(model, tiny_states["vit_tiny_patch16_224"])


def test_prefix_of_another_method_is_detected_and_classifier_ignored(tmp_path, tiny_states):
    state = {f"module.backbone.{k}": v for k, v in tiny_states["resnet18"].items()}
    state["module.backbone.fc.weight"] = torch.zeros(10, 512)
    state["module.projector.0.weight"] = torch.zeros(4, 4)
    torch.save(state, tmp_path / "simclr.pth")
    report = load_encoder_weights(RESNET18.build(), tmp_path / "simclr.pth", RESNET18)
    assert report.prefix == "module.backbone."
    assert report.ignored == ["fc.weight"] and report.complete


def test_ambiguous_prefixes_need_an_explicit_choice(tmp_path, tiny_states):
    state = {f"encoder_q.{k}": v for k, v in tiny_states["resnet18"].items()}
    state |= {f"encoder_k.{k}": v + 1 if v.is_floating_point() else v for k, v in tiny_states["resnet18"].items()}
    torch.save(state, tmp_path / "moco.pth")
    with pytest.raises(CheckpointError, match="several prefixes.*--prefix"):
        load_encoder_weights(RESNET18.build(), tmp_path / "moco.pth", RESNET18)
    model = RESNET18.build()
    assert load_encoder_weights(model, tmp_path / "moco.pth", RESNET18, prefix="encoder_q.").complete
    assert_same_weights(model, tiny_states["resnet18"])


def test_detect_prefix_prefers_the_complete_encoder():
    expected = {"a.weight": (2, 2), "b.weight": (3,)}
    assert detect_prefix({"enc.a.weight": (2, 2), "enc.b.weight": (3,), "head.a.weight": (2, 2)}, expected) == "enc."
    assert detect_prefix({"a.weight": (2, 2), "b.weight": (3,)}, expected) == ""


def test_detect_prefix_counts_shapes_so_a_text_tower_with_the_same_names_does_not_compete():
    """CLIP-style: the text tower repeats the vision tower's key names with other shapes, and has more layers."""
    expected = {f"encoder.layers.{i}.weight": (8, 8) for i in range(2)} | {"embeddings.weight": (8, 3)}
    state = {f"vision_model.encoder.layers.{i}.weight": (8, 8) for i in range(2)} | {"vision_model.embeddings.weight": (8, 3)}
    state |= {f"text_model.encoder.layers.{i}.weight": (4, 4) for i in range(6)} | {"text_model.embeddings.weight": (9, 4)}
    assert detect_prefix(state, expected) == "vision_model."


def test_wrong_architecture_fails_with_the_counts(tmp_path, tiny_states):
    torch.save(tiny_states["resnet18"], tmp_path / "r18.pth")
    resnet34 = ARCHITECTURES.get("resnet34")
    with pytest.raises(CheckpointMismatchError, match="incomplete load into resnet34") as error:
        load_encoder_weights(resnet34.build(), tmp_path / "r18.pth", resnet34)
    assert error.value.report.missing and not error.value.report.complete


def test_partial_load_only_when_allowed(tmp_path, tiny_states):
    state = dict(tiny_states["resnet18"])
    del state["layer4.1.conv2.weight"]
    state["layer1.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(CheckpointMismatchError, match="missing 1"):
        load_encoder_weights(RESNET18.build(), tmp_path / "partial.pth", RESNET18)
    report = load_encoder_weights(RESNET18.build(), tmp_path / "partial.pth", RESNET18, allow_partial=True)
    assert report.missing == ["layer4.1.conv2.weight"]
    assert report.mismatched == ["layer1.0.conv1.weight: [1] vs [64, 64, 3, 3]"]


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsAnImportableFunction:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("payload", [_RunsACommand, _CallsAnImportableFunction], ids=["os.system", "Path.touch"])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path, tiny_states, payload, legacy):
    marker = tmp_path / "pwned"
    torch.save({"state_dict": tiny_states["resnet18"], "hyper_parameters": payload(marker)}, tmp_path / "evil.ckpt",
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeCheckpointError, match="the file tries to run code.*nothing was executed") as error:
        read_checkpoint(tmp_path / "evil.ckpt")
    assert not marker.exists()
    assert "weights_only" not in str(error.value) and "\n" not in str(error.value)


def test_raw_pickle_with_code_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.pth").write_bytes(pickle.dumps(_RunsACommand(marker)))
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "truncated"),
        (b"not a checkpoint at all", "truncated"),
    ],
)
def test_unreadable_files_name_the_problem(tmp_path, content, message):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        read_checkpoint(tmp_path / "bad.ckpt")


def test_truncated_checkpoint_and_missing_file(tmp_path, tiny_states):
    torch.save(tiny_states["resnet18"], tmp_path / "full.pth")
    (tmp_path / "cut.pth").write_bytes((tmp_path / "full.pth").read_bytes()[:4096])
    with pytest.raises(CheckpointError, match="cut.pth"):
        read_checkpoint(tmp_path / "cut.pth")
    with pytest.raises(CheckpointError, match="not found"):
        read_checkpoint(tmp_path / "absent.ckpt")


def test_corrupt_safetensors_and_unknown_suffix(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(CheckpointError, match="safetensors"):
        read_checkpoint(tmp_path / "bad.safetensors")
    (tmp_path / "weights.h5").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="unknown checkpoint format"):
        read_checkpoint(tmp_path / "weights.h5")


def test_checkpoint_without_tensors_is_explained(tmp_path):
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.ckpt")
    with pytest.raises(CheckpointError, match="no state dict found"):
        read_checkpoint(tmp_path / "empty.ckpt")
