"""``run --dry-run``'s own measurement: each encoder timed at the side its task feeds it (TaskInfo.encoder_input_size)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import benchmark.grid.dry_run
import tasks.classification.adapter
from benchmark.backbones import BackboneSpec, LoadedBackbone, build_backbone
from benchmark.backbones.encoder import Backbone
from benchmark.cli import main
from tasks.registry import get_task

SECONDS_PER_224_IMAGE = 0.1  # the fake encoder's cost: proportional to the pixels it is fed
SIDE = 40  # what the faked geometry rule feeds it (the real one: 299 for ResNet-50, tested above)


def test_the_probe_feeds_resnet50_at_299_under_the_protocol_and_other_encoders_at_their_own_size() -> None:
    probe = get_task("classification")
    resnet50, vit = build_backbone("random_resnet50"), build_backbone("random_vit_tiny")
    assert probe.encoder_input_size(resnet50, 256, "linear") == 299  # B20, on the reference's 256 px cache
    assert probe.encoder_input_size(resnet50, 64, "linear") == 75  # the same ratio on demo images: crop 56 -> 75
    assert probe.encoder_input_size(vit, 256, "linear") == 224 and probe.encoder_input_size(vit, 64, "linear") == 48


@pytest.fixture(scope="module")
def tiny() -> dict[str, LoadedBackbone]:
    return {name: build_backbone(f"random_{name}") for name in ("resnet18", "vit_tiny")}  # both take 224 px of their own


@pytest.fixture(scope="module")
def fixed_vit(write_open_clip_folder, tmp_path_factory: pytest.TempPathFactory) -> LoadedBackbone:
    """open_clip's patch-8 ViT with position embeddings for 48 px only."""
    folder = write_open_clip_folder(tmp_path_factory.mktemp("open_clip") / "vit", 32, image_size=48)
    return build_backbone(BackboneSpec(name="random", arch=f"open_clip:{folder}", weights="random", description="test"))


def test_every_task_declares_the_side_its_cells_feed_the_encoder(tiny: dict[str, LoadedBackbone]) -> None:
    """Each task's own geometry, not the backbone's 224 (the task test files check these against real cells)."""
    resnet, vit = tiny["resnet18"], tiny["vit_tiny"]
    assert resnet.preprocessing.input_size == vit.preprocessing.input_size == 224
    assert all(get_task(name).encoder_input is not None for name in ("detection", "segmentation", "zeroshot", "retrieval"))
    detection, segmentation = get_task("detection"), get_task("segmentation")
    # detection: the protocol's 224, a smaller cache at its own size, rounded down to the stride 32; every head alike
    for head in detection.heads:
        assert [detection.encoder_input_size(resnet, cache, head) for cache in (256, 64, 100)] == [224, 64, 96]
    assert detection.encoder_input_size(vit, 1024, "faster_rcnn", {"input_size": 512}) == 512  # a board's input size
    assert detection.encoder_input_size(vit, 1024, "faster_rcnn", {"max_epochs": 1}) == 224
    # segmentation: the head's config (224), a smaller cache at its own size, rounded down to the head's stride
    assert [segmentation.encoder_input_size(resnet, cache, "unet") for cache in (256, 64, 48)] == [224, 64, 32]
    assert [segmentation.encoder_input_size(vit, cache, "setr") for cache in (256, 64, 48)] == [224, 64, 48]
    assert segmentation.encoder_input_size(resnet, 48, "unet", {"max_epochs": 1, "batch_size": 2}) == 32
    # zero-shot and retrieval: the crop of 224/256 at the model's scale, a ViT's rounded down to its patch 16
    for name in ("zeroshot", "retrieval"):
        task = get_task(name)
        assert [task.encoder_input_size(resnet, cache, task.heads[0]) for cache in (256, 64, 512)] == [224, 56, 448]
        assert [task.encoder_input_size(vit, cache, task.heads[0]) for cache in (256, 64, 32)] == [224, 48, 16]


def test_a_fixed_size_model_is_declared_at_the_side_it_takes(fixed_vit: LoadedBackbone) -> None:
    """Detection and segmentation resize their input to a fixed-size model's own side (dense.fit_input); so do the
    joint-space tasks (their geometry)."""
    assert fixed_vit.preprocessing.fixed_size and fixed_vit.preprocessing.input_size == 48
    assert get_task("detection").encoder_input_size(fixed_vit, 64, "faster_rcnn") == 48  # the task's input: 64
    assert get_task("segmentation").encoder_input_size(fixed_vit, 32, "setr") == 48  # the task's input: 32
    assert get_task("zeroshot").encoder_input_size(fixed_vit, 64, "prompts") == 48


def test_the_default_throughput_is_measured_at_the_side_the_task_feeds_the_encoder(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    clock, fed, asked = [0.0], [], []

    def global_features(self: Backbone, images: torch.Tensor) -> torch.Tensor:  # a fake encoder with a fake clock
        fed.append(images.shape[-1])
        clock[0] += SECONDS_PER_224_IMAGE * images.shape[0] * images.shape[-1] * images.shape[-2] / 224**2
        return torch.zeros(images.shape[0], 8)

    def probe_side(backbone, cache_size: int, head: str, overrides) -> int:  # the probe's rule, made cheap to run
        asked.append((backbone.spec.name, cache_size, head))
        return SIDE

    monkeypatch.setattr(Backbone, "global_features", global_features)
    monkeypatch.setattr(benchmark.grid.dry_run, "time", SimpleNamespace(perf_counter=lambda: clock[0]))
    monkeypatch.setattr(tasks.classification.adapter, "encoder_input_size", probe_side)
    args = ["run", "--backbone", "random_resnet18", "--board", "mgca-cxr-v1", "--tasks", "classification", "--datasets",
            "rsna", "--data", str(tmp_path / "nothing"), "--dry-run", "--from-splits", "--format", "json"]
    assert main(args) == 0
    measured = json.loads(capsys.readouterr().out)
    # asked once per cell (21), with the split sizes planned as prepared at prepare's default 256 px
    assert set(asked) == {("random_resnet18", 256, "linear")} and set(fed) == {SIDE}
    assert f"at {SIDE} px" in measured["throughput"]["measured"]
    assert [(e["input_size"], e["images_per_second"]) for e in measured["throughput"]["encoders"]] == [
        (SIDE, pytest.approx(224**2 / SIDE**2 / SECONDS_PER_224_IMAGE, rel=1e-3))]
    # the fake encoder's speed at 224 px, given: the measured estimate is (SIDE/224)^2 times that one
    assert main([*args, "--throughput", str(1 / SECONDS_PER_224_IMAGE)]) == 0
    at_224 = json.loads(capsys.readouterr().out)
    assert measured["total"] == at_224["total"]
    assert measured["per_shard"][0]["estimated_seconds"] == pytest.approx(
        at_224["per_shard"][0]["estimated_seconds"] * SIDE**2 / 224**2, rel=1e-3)
