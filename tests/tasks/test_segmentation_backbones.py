"""Segmentation on backbones beyond MGCA's: their own preprocessing (1-channel torchxrayvision, [-1024, 1024])
in both modes, and the U-Net on a pyramid backbone's maps (timm ConvNeXt), end to end on demo data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.backbones import LoadedBackbone, normalise
from benchmark.data.prepared import PreparedDataset
from tasks.registry import TaskCell, get_task
from tasks.segmentation.adapter import build_model, run_cell
from tasks.segmentation.data import SegmentationImages
from tasks.segmentation.features import cached_levels
from tasks.segmentation.models import encoder_outputs
from tasks.segmentation.protocol import load_config

CPU = torch.device("cpu")
ONE_EPOCH = {"train_cfg.max_epochs": 1, "train_dataloader.batch_size": 4, "val_dataloader.batch_size": 4}


def cell(backbone: LoadedBackbone, data: Path, work: Path, mode: str = "paper") -> TaskCell:
    info = get_task("segmentation")
    return TaskCell(backbone=backbone, dataset=PreparedDataset(data / "siim"), partition="segmentation",
                    head=info.default_head(backbone.model.arch.family), fraction=100, draw=0, seed=0, mode=mode,
                    work_dir=work, cache_dir=work.parent / "cache", device="cpu", progress=False)


class InputWatcher:
    """The tensors the encoder's first layer receives."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.inputs: list[torch.Tensor] = []
        self.handle = module.register_forward_pre_hook(lambda _m, args: self.inputs.append(args[0].detach().clone()))


def test_pyramid_backbones_get_the_unet_head_by_default():
    assert get_task("segmentation").default_head("pyramid") == "unet"


def test_the_frozen_encoder_applies_the_backbones_preprocessing_in_both_modes(segmentation_data, xrv_resnet, tmp_path):
    """Paper mode (the mmseg model from 0-255 pixels) and cached mode (the store) feed the 1-channel stem the same input."""
    dataset = PreparedDataset(segmentation_data / "siim")
    split = SegmentationImages(dataset, dataset.split_ids("val", partition="segmentation")[:2], 32)
    model = build_model(load_config("unet", "siim", 100), xrv_resnet, 32, "paper", CPU)
    watcher = InputWatcher(xrv_resnet.model.model.conv1)
    batch = {"inputs": [split[0]["inputs"], split[1]["inputs"]], "data_samples": [split[0]["data_samples"], split[1]["data_samples"]]}
    with torch.no_grad():
        model.extract_feat(model.data_preprocessor(batch, False)["inputs"])  # mmseg's pre-processor, then the encoder
        cached, _ = cached_levels(tmp_path / "cache", xrv_resnet, split, "stages", 8, CPU)
    paper_input, cached_input = watcher.inputs[0], watcher.inputs[-1]
    watcher.handle.remove()
    pixels = torch.stack([split[0]["inputs"], split[1]["inputs"]])
    assert paper_input.shape == (2, 1, 32, 32)  # one channel, as torchxrayvision's stem takes
    assert torch.allclose(paper_input, pixels[:, :1].float() / 255 * 2048 - 1024, atol=1e-3)  # [0, 255] -> [-1024, 1024]
    assert torch.equal(paper_input, cached_input)
    assert len(cached) == 5  # the U-Net's five ResNet stages


def test_a_pyramid_backbone_runs_a_segmentation_cell_end_to_end(segmentation_data, convnext, tmp_path):
    """The U-Net on a timm ConvNeXt's maps at strides 8, 16, 32 (its two finest blocks have no skip), one epoch."""
    assert convnext.model.arch.family == "pyramid"
    one = cell(convnext, segmentation_data, tmp_path / "work")
    assert one.head == "unet"
    result = run_cell(one, ONE_EPOCH)
    with np.load(result.predictions_file) as predictions:
        assert predictions["probs"].shape[1:] == (32, 32)
    maps = encoder_outputs(convnext, normalise(torch.zeros(1, 3, 32, 32, dtype=torch.uint8), convnext.preprocessing), "stages")
    assert [32 // level.shape[-1] for level in maps] == [8, 16, 32]
    assert result.config["mmengine_config"]["model"]["decode_head"]["in_channels"] == [level.shape[1] for level in maps]


@pytest.mark.parametrize("mode", ["paper", "cached"])
def test_a_fixed_size_model_with_another_patch_size_runs_a_segmentation_cell(segmentation_data, open_clip_fixed_vit, tmp_path, mode,
                                                                            stem_sides):
    """open_clip's patch-8 ViT takes 48 px only: the 32 px input is resized to 48 for it, and its 6x6 grid resampled
    to the input's stride-16 grid (2x2), which SETR's four x2 stages bring back to 32 px. The task declares the 48 px
    the encoder is fed (the dry run times it there)."""
    one = cell(open_clip_fixed_vit, segmentation_data, tmp_path / "work", mode=mode)
    assert one.head == "setr"
    fed = stem_sides(open_clip_fixed_vit)
    result = run_cell(one, ONE_EPOCH)
    assert set(fed) == {get_task("segmentation").encoder_input_size(open_clip_fixed_vit, 32, one.head, one.overrides)} == {48}
    with np.load(result.predictions_file) as predictions:
        assert predictions["probs"].shape[1:] == (32, 32)
    (grid,) = encoder_outputs(open_clip_fixed_vit, torch.zeros(1, 3, 32, 32), "tokens")
    assert grid.shape[-2:] == (2, 2)
    assert any("resized to 48 px" in note for note in result.notes)
