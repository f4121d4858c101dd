"""``text_tower_requirement``: whether a backbone has a usable text tower, answered with the checks of a
load but without the tower's weights (``load_text_tower(..., weights=False)``): what a task that needs a
tower declares as its ``requires``, asked once per backbone when a grid is planned."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmark.backbones import build_backbone, user_backbone_spec
from benchmark.backbones.checkpoint import CheckpointError
from benchmark.backbones.text import TextTower, load_text_tower, text_tower_requirement
from pretrain.config import load_config
from pretrain.export import export_checkpoint
from pretrain.model import MGCA
from pretrain.text import save_tokenizer, train_tokenizer

CAPTIONS = ["no acute cardiopulmonary process", "small left pleural effusion", "mild cardiomegaly without edema"] * 4


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny run checkpoint (best.ckpt + tokenizer.json), exported by pretrain/export.py."""
    run = tmp_path_factory.mktemp("run")
    config = load_config("demo", ["arch=resnet18", "text_layers=1", "text_hidden_size=32", "text_heads=2",
                                  "text_intermediate_size=64", "projection_hidden=32", "emb_dim=16", "num_prototypes=8",
                                  "max_words=16"])
    tokenizer = train_tokenizer(CAPTIONS, vocab_size=60)
    save_tokenizer(tokenizer, run / "tokenizer.json")
    torch.manual_seed(0)
    model = MGCA(config, tokenizer.get_vocab_size())
    params = {"config": config.to_dict(), "data": {"vocab_size": tokenizer.get_vocab_size()}, "arch": config.arch,
              "tokenizer": "tokenizer.json", "initialisation": {}}
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": params, "epoch": 1}, run / "best.ckpt")
    return export_checkpoint(run / "best.ckpt", run / "tiny.ckpt")[0]


def _loaded(checkpoint: Path):
    return build_backbone(user_backbone_spec("t", "resnet18"), checkpoint=checkpoint)


def test_a_checked_tower_is_the_loaded_one_without_its_weights(exported: Path) -> None:
    loaded = _loaded(exported)
    checked, tower = load_text_tower(loaded, weights=False), load_text_tower(loaded)
    text = [p for name, p in checked.named_parameters() if not name.startswith("image_encoder.")]
    assert text and all(p.is_meta for p in text)  # nothing allocated for the text side
    assert not any(p.is_meta for p in tower.parameters())  # the flag does not outlive the check
    assert checked.load_report.to_dict() == tower.load_report.to_dict() and checked.load_report.complete
    assert checked.embedding_dim == tower.embedding_dim and tower.text_features(["effusion"]).shape == (1, 16)
    assert text_tower_requirement(loaded) is None


def test_the_requirement_names_what_is_missing_as_a_full_load_does(exported: Path, tmp_path: Path) -> None:
    content = torch.load(exported, weights_only=True)
    content["text_tower"]["bert_config"]["num_hidden_layers"] = 2  # the checkpoint holds 1: missing layer
    torch.save(content, tmp_path / "incomplete.ckpt")
    backbones = [_loaded(exported), build_backbone("random_resnet18"), _loaded(exported.with_suffix(".safetensors")),
                 _loaded(tmp_path / "incomplete.ckpt")]
    reasons = [text_tower_requirement(loaded) for loaded in backbones]
    assert reasons[0] is None and reasons[1] == reasons[2] == (
        "no text tower (an image-only checkpoint or source, or random weights)")
    assert reasons[3].startswith("its text tower cannot be loaded: ") and "incomplete text tower" in reasons[3]
    # the answer of a load of the whole tower (what the zero-shot cell then does): a tower, None, or the same error
    assert isinstance(load_text_tower(backbones[0]), TextTower)
    assert load_text_tower(backbones[1]) is None and load_text_tower(backbones[2]) is None
    with pytest.raises(CheckpointError) as loading:
        load_text_tower(backbones[3])
    assert reasons[3] == f"its text tower cannot be loaded: {str(loading.value).splitlines()[0]}"
