"""Pretraining end to end on a tiny demo corpus: logs, checkpoints, export, resume, frozen prototypes."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

import pretrain.train as training
from benchmark.backbones import ARCHITECTURES
from benchmark.backbones.checkpoint import load_encoder_weights
from benchmark.cli import main as benchmark_main
from pretrain.__main__ import main as pretrain_main
from pretrain.checkpoints import load_checkpoint
from pretrain.config import ConfigError

LOGGED = {"epoch", "global_step", "lr", "seconds",
          *(f"{split}_{loss}" for split in ("train", "val") for loss in ("ita", "cta", "cpa", "total")),
          *(f"val_{direction}@{k}" for direction in ("i2t", "t2i") for k in (1, 5))}
STEPS_PER_EPOCH = 38 // 16  # 38 training pairs in batches of 16, the last partial batch dropped


@pytest.fixture(scope="module")
def straight(demo_mimic: Path, tiny_overrides: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-epoch run through the command line, exported; its folder."""
    root = tmp_path_factory.mktemp("straight")
    args = ["--config", "demo", f"data={demo_mimic}", f"out={root / 'run'}", f"export={root / 'export' / 'mgca_tiny.ckpt'}",
            *tiny_overrides]
    assert pretrain_main(args) == 0
    return root


def read_log(run: Path) -> tuple[list[dict], list[dict]]:
    """(start records, epoch records) of a run folder's log.jsonl."""
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    return [r["start"] for r in records if "start" in r], [r for r in records if "start" not in r]


def test_a_run_logs_every_epoch(straight: Path) -> None:
    starts, records = read_log(straight / "run")
    assert [r["epoch"] for r in records] == [1, 2] and set(records[0]) == LOGGED
    assert len(starts) == 1 and starts[0]["resumed_at_epoch"] == 0
    assert records[1]["global_step"] == 2 * STEPS_PER_EPOCH
    assert all(0 <= r[key] <= 1 for r in records for key in r if "@" in key)


def test_the_export_loads_like_a_released_checkpoint(straight: Path) -> None:
    exported = straight / "export" / "mgca_tiny.ckpt"
    checkpoint = load_checkpoint(exported)
    assert "optimizer_states" not in checkpoint and checkpoint["epoch"] >= 1
    arch_name = checkpoint["hyper_parameters"]["arch"]
    arch = ARCHITECTURES.get(arch_name)
    for path in (exported, exported.with_suffix(".safetensors")):
        report = load_encoder_weights(arch.build(), path, arch)
        assert report.complete and report.matched == report.expected > 100
    assert benchmark_main(["check-checkpoint", str(exported), "--arch", arch_name]) == 0
    best = load_checkpoint(straight / "run" / "best.ckpt")["state_dict"]
    assert all(torch.equal(value, checkpoint["state_dict"][key]) for key, value in best.items())


def test_the_export_carries_its_text_tower(straight: Path, capsys) -> None:
    # Issue 22: the exported file alone gives the text tower (tokenizer, BERT config and heads inside).
    from benchmark.backbones import build_backbone, user_backbone_spec
    from benchmark.backbones.text import load_text_tower

    exported = straight / "export" / "mgca_tiny.ckpt"
    loaded = build_backbone(user_backbone_spec("tiny", "vit_tiny_patch16_224"), checkpoint=exported)
    tower = load_text_tower(loaded)
    assert tower.load_report.complete and tower.tokenizer_source.endswith("(text_tower.tokenizer)")
    with torch.no_grad():
        text = tower.text_features(["no pleural effusion", "no pleural effusion", "mild cardiomegaly"])
        image = tower.image_embeddings(torch.randn(2, 3, 48, 48))
    assert text.shape == (3, 16) and image.shape == (2, 16) and torch.equal(text[0], text[1])
    tokenizer = json.loads(load_checkpoint(exported)["text_tower"]["tokenizer"])
    assert tokenizer == json.loads((straight / "run" / "tokenizer.json").read_text())  # the run's own vocabulary
    again = straight / "again" / "mgca_tiny.ckpt"  # python -m pretrain.export gives the same file content
    from pretrain.export import main as export_main

    assert export_main([str(straight / "run" / "best.ckpt"), str(again)]) == 0
    assert load_checkpoint(again)["text_tower"] == load_checkpoint(exported)["text_tower"]
    assert export_main([str(straight / "run" / "best.ckpt"), str(again.with_suffix(".pt"))]) == 2
    assert "name a .ckpt file" in capsys.readouterr().err


def test_a_run_from_scratch_says_so_everywhere(straight: Path) -> None:
    # Issue 18 §2: the run folder's config, the log and the export record both initialisations.
    scratch = {"image": {"source": "random", "path": None, "sha256": None, "load_report": None},
               "text": {"source": "small", "path": None, "sha256": None, "load_report": None}}
    params = load_checkpoint(straight / "export" / "mgca_tiny.ckpt")["hyper_parameters"]
    assert params["initialisation"] == scratch
    assert (params["img_encoder"], params["emb_dim"], params["num_prototypes"]) == ("vit_tiny", 16, 8)  # the reference's names
    assert json.loads((straight / "run" / "config.json").read_text())["initialisation"] == scratch
    assert read_log(straight / "run")[0][0]["initialisation"] == scratch
    with safe_open(str(straight / "export" / "mgca_tiny.safetensors"), "pt") as tensors:
        assert tensors.metadata()["image_init"] == "random"


def test_a_run_from_a_file_records_it_everywhere(demo_mimic: Path, tiny_overrides: tuple[str, ...], tmp_path: Path, capsys) -> None:
    import timm

    torch.manual_seed(7)
    init = tmp_path / "deit_tiny.pth"
    torch.save({"model": timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()}, init)
    args = ["--config", "demo", f"data={demo_mimic}", f"out={tmp_path / 'run'}", f"export={tmp_path / 'mgca.ckpt'}",
            *tiny_overrides, "epochs=1", f"image_init={init}", "text_model=small"]
    assert pretrain_main(args) == 0
    assert f"image encoder: initial weights {init}" in capsys.readouterr().err
    params = load_checkpoint(tmp_path / "mgca.ckpt")["hyper_parameters"]
    image = params["initialisation"]["image"]
    assert (image["source"], image["path"], image["sha256"]) == ("file", str(init), hashlib.sha256(init.read_bytes()).hexdigest())
    assert image["load_report"]["ok"] and image["load_report"]["ignored"] == ["head.bias", "head.weight"]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["initialisation"] == params["initialisation"]
    assert read_log(tmp_path / "run")[0][0]["initialisation"] == params["initialisation"]
    torch.save({"model": timm.create_model("vit_tiny_patch16_224", pretrained=False).state_dict()}, init)
    assert pretrain_main(args) == 2  # the same path with other weights does not resume the run
    assert "started from other image weights" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["truncated", "foreign pickle", "an export"])
def test_a_damaged_last_checkpoint_is_one_line_without_unsafe_advice(damage: str, straight: Path, tmp_path: Path,
                                                                    tiny_overrides: tuple[str, ...], demo_mimic: Path, capsys) -> None:
    # Regression (issue 19 §2): a truncated last.ckpt gave a traceback; torch's message advises
    # weights_only=False, which would run the file's code.
    run = tmp_path / "run"
    shutil.copytree(straight / "run", run)
    last = run / "last.ckpt"
    if damage == "truncated":
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    elif damage == "foreign pickle":
        torch.save({"state_dict": {}, "hyper_parameters": argparse.Namespace(lr=1)}, last)
    else:
        shutil.copy(straight / "export" / "mgca_tiny.ckpt", last)  # no optimizer state: cannot be resumed
    assert pretrain_main(["--config", "demo", f"data={demo_mimic}", f"out={run}", "export=", *tiny_overrides]) == 2
    err = capsys.readouterr().err
    expected = "not a run checkpoint of python -m pretrain (it lacks optimizer_states" if damage == "an export" else \
        "not a readable pretraining checkpoint"
    assert err.count("\n") == 1 and err.startswith(f"error: {last}: {expected}")
    assert "weights_only" not in err


def test_resume_continues_exactly_and_prototypes_wait_one_epoch(straight: Path, tiny_config, tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(f"out={tmp_path / 'interrupted'}")
    (tmp_path / "interrupted").mkdir()
    # The vocabulary is trained once per run (the trainer's tie-breaking is not reproducible): share it.
    shutil.copy(straight / "run" / "tokenizer.json", tmp_path / "interrupted" / "tokenizer.json")
    real_validate, calls = training.validate, []

    def validate_then_stop(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during epoch 2: last.ckpt holds epoch 1
        return real_validate(*args, **kwargs)

    monkeypatch.setattr(training, "validate", validate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        training.train(config)
    monkeypatch.setattr(training, "validate", real_validate)
    after_one = load_checkpoint(tmp_path / "interrupted" / "last.ckpt")
    assert after_one["epoch"] == 1

    # Epoch 1 froze the prototypes: they are only re-normalised.
    initial = training.build_model(config, after_one["hyper_parameters"]["data"]["vocab_size"])
    frozen = F.normalize(initial.prototype_layer.weight.detach(), dim=1)
    assert torch.allclose(after_one["state_dict"]["prototype_layer.weight"], frozen, atol=1e-6)
    assert not torch.allclose(after_one["state_dict"]["img_encoder_q.model.cls_token"], initial.img_encoder_q.model.cls_token)

    training.train(config)  # resumes at epoch 2
    a = load_checkpoint(straight / "run" / "last.ckpt")
    b = load_checkpoint(tmp_path / "interrupted" / "last.ckpt")
    assert (a["epoch"], a["global_step"]) == (b["epoch"], b["global_step"]) == (2, 2 * STEPS_PER_EPOCH)
    for key, value in a["state_dict"].items():
        assert torch.allclose(value.float(), b["state_dict"][key].float(), atol=1e-5), key
    assert not torch.allclose(b["state_dict"]["prototype_layer.weight"], frozen, atol=1e-4)  # epoch 2 moved them

    with pytest.raises(ConfigError, match=r"other settings \(lr: 0.001 -> 0.002\)"):
        training.train(tiny_config(f"out={tmp_path / 'interrupted'}", "lr=2e-3"))


@pytest.mark.parametrize("damage", ["truncated", "garbled"])
def test_a_damaged_image_cache_is_one_line(damage: str, demo_mimic: Path, tiny_overrides: tuple[str, ...], tmp_path: Path,
                                          capsys) -> None:
    # Regression (issue 19 §2): np.load's errors escaped as tracebacks.
    data = tmp_path / "mimic"
    shutil.copytree(demo_mimic, data)
    cache = data / "images.npy"
    content = cache.read_bytes()
    cache.write_bytes(content[: len(content) // 2] if damage == "truncated" else content[:10] + b"#" * 40 + content[50:])
    args = ["--config", "demo", f"data={data}", f"out={tmp_path / 'run'}", "export=", *tiny_overrides, "num_workers=2"]
    assert pretrain_main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {cache}: not a readable image cache")


def test_command_line_errors_are_one_line(tmp_path: Path, capsys) -> None:
    assert pretrain_main(["--config", "demo", f"data={tmp_path / 'missing'}", f"out={tmp_path / 'run'}"]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing'}/manifest.json: not a prepared dataset")
    assert pretrain_main(["--config", "demo", "epochz=1"]) == 2
    assert "unknown key 'epochz'; did you mean epochs" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert pretrain_main(["--config", "demo", "precision=bf16", f"out={tmp_path / 'run'}"]) == 2
        assert "needs a GPU (autocast runs on GPU only)" in capsys.readouterr().err
