"""A dense task's encoder input and map grid (benchmark/backbones/dense.py), on hand-made tensors."""

from __future__ import annotations

import pytest
import torch

from benchmark.backbones import MGCA_PREPROCESSING, resolve_architecture
from benchmark.backbones.dense import fit_input, grid_notes, on_task_grid, task_strides


def test_a_dynamic_size_model_sees_the_task_input_as_it_is():
    images = torch.rand(2, 3, 64, 64)
    assert fit_input(images, MGCA_PREPROCESSING) is images


def test_a_fixed_size_model_sees_exactly_its_size():
    fixed = MGCA_PREPROCESSING.__class__(input_size=48, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3, fixed_size=True)
    images = torch.full((2, 3, 64, 64), 0.25)
    resized = fit_input(images, fixed)
    assert resized.shape == (2, 3, 48, 48) and torch.allclose(resized, torch.full_like(resized, 0.25))
    same = torch.rand(1, 3, 48, 48)
    assert fit_input(same, fixed) is same


def test_maps_on_the_task_grid_are_left_alone_and_others_resampled():
    on_grid = torch.rand(1, 4, 8, 8)  # stride 16 of 128 px
    assert on_task_grid([on_grid], [16], 128)[0] is on_grid
    coarse = torch.tensor([[[[1.0, 3.0], [1.0, 3.0]]]])  # a patch-32 ViT at 64 px: 2 cells a side
    (fine,) = on_task_grid([coarse], [16], 128)
    assert fine.shape == (1, 1, 8, 8)
    # bilinear with half-pixel centres: output cell j reads source position (j + 0.5) / 4 - 0.5, clamped to [0, 1]
    assert torch.allclose(fine[0, 0, 0], torch.tensor([1.0, 1.0, 1.25, 1.75, 2.25, 2.75, 3.0, 3.0]))
    with pytest.raises(ValueError):
        on_task_grid([on_grid, on_grid], [16], 128)


def test_single_map_encoders_are_read_at_stride_16_and_pyramids_at_their_own():
    assert resolve_architecture("vit_tiny_patch16_224").feature_map_strides == (16,)
    assert task_strides(resolve_architecture("vit_tiny_patch16_224")) == (16,)
    assert task_strides(resolve_architecture("timm:vit_small_patch8_224")) == (16,)
    assert task_strides(resolve_architecture("resnet18")) == (8, 16, 32)


def test_the_reference_geometry_needs_no_note_and_other_geometries_are_named():
    vit_b = resolve_architecture("vit_base_patch16_224")
    assert grid_notes(vit_b, vit_b.preprocessing, 224) == []
    assert grid_notes(resolve_architecture("resnet50"), MGCA_PREPROCESSING, 224) == []
    patch8 = resolve_architecture("timm:vit_small_patch8_224")
    assert grid_notes(patch8, patch8.preprocessing, 224) == [
        "encoder maps of 28 cells a side resampled (bilinear) to 14, strides 16 of the 224 px input"]
