"""Model configs are checked before anything is built (issue 19, section 2).

Each probe is a tiny model folder as the library writes it, with one entry made absurd or
inconsistent the way a careless or hostile user would: zero or negative sizes, head counts that
do not divide, sizes that would take terabytes, hub names, strings where numbers belong. Each
gives one error line naming the file and the entry (exit 2), with nothing allocated: the
checkpoint's tensor shapes are compared with the ones the config implies (on the meta device)
before the model is built, and a random initialisation is refused when it would not fit memory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from benchmark.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _check(folder: Path, arch: str, capsys) -> str:
    assert main(["check-checkpoint", str(folder), "--arch", arch]) == 2
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def _edited(source: Path, target: Path, file: str, **changes) -> Path:
    """A copy of the model folder ``source`` whose JSON ``file`` has ``changes`` (dotted keys for nested ones)."""
    target.mkdir()
    for item in source.iterdir():
        (target / item.name).symlink_to(item)
    content = json.loads((source / file).read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = content
        for parent in parents:
            node = node[parent]
        node[key] = value
    (target / file).unlink()
    (target / file).write_text(json.dumps(content))
    return target


@pytest.fixture(scope="module")
def hf_vit(tmp_path_factory) -> Path:
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("hf") / "vit"
    torch.manual_seed(0)
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
                       patch_size=8)).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.4] * 3, image_std=[0.3] * 3).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def open_clip_vit(tmp_path_factory, write_open_clip_folder) -> Path:
    return write_open_clip_folder(tmp_path_factory.mktemp("open_clip") / "vit", 32)


@pytest.mark.parametrize("changes, words", [
    ({"hidden_size": -32}, ["config.json", "hidden_size -32"]),
    ({"hidden_size": 0}, ["hidden_size 0"]),
    ({"num_attention_heads": 0}, ["num_attention_heads 0"]),
    ({"num_attention_heads": 3}, ["not a multiple of num_attention_heads 3"]),
    ({"patch_size": 0}, ["patch_size 0"]),
    ({"patch_size": 64}, ["larger than image_size"]),
    ({"num_hidden_layers": "two"}, ["num_hidden_layers"]),
    ({"intermediate_size": 1.5}, ["intermediate_size"]),
    ({"hidden_size": 1_000_000}, ["mismatched", "--arch"]),  # 24 TB of weights, never allocated
    ({"image_size": 320_000}, ["mismatched"]),  # 1.6 billion position embeddings
    ({"num_hidden_layers": 100_000}, ["more than 1024"]),
])
def test_hf_configs_are_checked_against_the_weights_before_building(hf_vit, changes, words, tmp_path, capsys):
    folder = _edited(hf_vit, tmp_path / "vit", "config.json", **changes)
    err = _check(folder, f"hf:{folder}", capsys)
    assert all(word in err for word in words), err


@pytest.mark.parametrize("changes, words", [
    ({"image_mean": "abc"}, ["preprocessor_config.json", "image_mean 'abc'"]),
    ({"image_std": [0.3, "x", 0.3]}, ["image_std"]),
    ({"image_std": [0.3, 0.3]}, ["image_std", "3 numbers"]),
    ({"rescale_factor": "x"}, ["rescale_factor 'x' is not a number"]),
    ({"rescale_factor": -1}, ["rescale_factor -1.0 is not positive"]),
    ({"size": {"height": -5, "width": -5}}, ["size", "not a square size"]),
    ({"size": {"height": 100_000, "width": 100_000}}, ["from 1 to 4096"]),
])
def test_wrong_types_in_the_image_processor_config_are_one_line(hf_vit, changes, words, tmp_path, capsys):
    folder = _edited(hf_vit, tmp_path / "vit", "preprocessor_config.json", **changes)
    err = _check(folder, f"hf:{folder}", capsys)
    assert all(word in err for word in words), err


@pytest.mark.parametrize("changes, words", [
    ({"model_cfg.vision_cfg.width": 0}, ["vision_cfg.width 0"]),
    ({"model_cfg.vision_cfg.width": -32}, ["vision_cfg.width -32"]),
    ({"model_cfg.vision_cfg.head_width": 0}, ["vision_cfg.head_width 0"]),
    ({"model_cfg.vision_cfg.head_width": 12}, ["not a multiple of head_width 12"]),
    ({"model_cfg.vision_cfg.patch_size": 0}, ["vision_cfg.patch_size 0"]),
    ({"model_cfg.vision_cfg.layers": -1}, ["vision_cfg.layers -1"]),
    ({"model_cfg.vision_cfg.layers": 100_000}, ["more than 1024"]),
    ({"model_cfg.embed_dim": "24"}, ["embed_dim '24'"]),
    ({"model_cfg.vision_cfg.width": 640_000, "model_cfg.vision_cfg.head_width": 64}, ["mismatched"]),  # 20 TB
    ({"preprocess_cfg.mean": "abc"}, ["preprocess_cfg.mean 'abc'"]),
    ({"preprocess_cfg.std": [0.3, None, 0.3]}, ["preprocess_cfg.std"]),
    ({"model_cfg.vision_cfg.timm_model_name": "hf-hub:timm/vit_tiny_patch16_224.augreg_in21k"}, ["nothing is downloaded"]),
])
def test_open_clip_configs_are_checked_before_building(open_clip_vit, changes, words, tmp_path, capsys):
    folder = _edited(open_clip_vit, tmp_path / "vit", "open_clip_config.json", **changes)
    err = _check(folder, f"open_clip:{folder}", capsys)
    assert all(word in err for word in words) and str(folder) in err, err


def test_a_random_initialisation_that_would_not_fit_memory_is_refused_before_allocating(hf_vit, tmp_path, capsys):
    folder = _edited(hf_vit, tmp_path / "vit", "config.json", hidden_size=1_000_000, intermediate_size=1_000_000)
    out = tmp_path / "demo.ckpt"
    assert main(["demo-checkpoint", "--arch", f"hf:{folder}", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "more than this machine's" in err and "GiB" in err and not out.exists(), err


def test_the_hubs_are_offline_in_the_suite_and_in_what_it_starts(monkeypatch, capsys):
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    assert main(["backbones"]) == 0
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
