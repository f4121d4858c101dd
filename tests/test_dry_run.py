"""``run --dry-run``'s own measurement: each encoder timed at the side its task feeds it (TaskInfo.encoder_input_size)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import benchmark.grid.dry_run
import tasks.classification.adapter
from benchmark.backbones import build_backbone
from benchmark.backbones.encoder import Backbone
from benchmark.cli import main
from tasks.registry import get_task

SECONDS_PER_224_IMAGE = 0.1  # the fake encoder's cost: proportional to the pixels it is fed
SIDE = 40  # what the faked geometry rule feeds it (the real one: 299 for ResNet-50, tested above)


def test_the_probe_feeds_resnet50_at_299_under_the_protocol_and_other_encoders_at_their_own_size() -> None:
    probe, detection = get_task("classification"), get_task("detection")
    resnet50, vit = build_backbone("random_resnet50"), build_backbone("random_vit_tiny")
    assert probe.encoder_input_size(resnet50, 256, "linear") == 299  # B20, on the reference's 256 px cache
    assert probe.encoder_input_size(resnet50, 64, "linear") == 75  # the same ratio on demo images: crop 56 -> 75
    assert probe.encoder_input_size(vit, 256, "linear") == 224 and probe.encoder_input_size(vit, 64, "linear") == 48
    assert detection.encoder_input is None and detection.encoder_input_size(resnet50, 256, "yolov3") == 224  # its own


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
