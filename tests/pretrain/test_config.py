"""Configs as data: every shipped file parses, overrides are typed, mistakes are named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.backbones import ARCHITECTURES
from pretrain.__main__ import main as pretrain_main
from pretrain.config import CONFIG_DIR, ConfigError, PretrainConfig, load_config

SHIPPED = sorted(CONFIG_DIR.glob("*.toml"))


def test_the_reference_configs_are_shipped() -> None:
    assert {"demo", "mimic_vit_base", "mimic_resnet50"} <= {path.stem for path in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_every_shipped_config_parses_and_names_a_registered_architecture(path: Path) -> None:
    config = load_config(str(path))
    ARCHITECTURES.get(config.arch)
    assert config.export.endswith(".ckpt")


def test_reference_defaults() -> None:
    vit, resnet = load_config("mimic_vit_base"), load_config("mimic_resnet50")
    assert (vit.arch, resnet.arch, resnet.encoder_input_size) == ("vit_base_patch16_224", "resnet50", 299)
    for config in (vit, resnet):
        assert (config.lr, config.weight_decay, config.batch_size, config.epochs) == (2e-5, 0.05, 72, 50)
        assert (config.emb_dim, config.num_prototypes, config.max_words, config.text_layers) == (128, 500, 112, 6)
        assert (config.ita_temperature, config.cta_temperature, config.cpa_temperature) == (0.07, 0.1, 0.2)
        assert (config.lambda_ita, config.lambda_cta, config.lambda_cpa) == (1.0, 1.0, 1.0)
        assert (config.warmup_fraction, config.freeze_prototypes_epochs, config.early_stopping_patience) == (0.4, 1, 5)
        assert config.precision == "fp32"  # the reference trains in fp32 (issue 18 §3)


def test_overrides_are_read_with_the_field_types() -> None:
    config = load_config("demo", ["epochs=3", "lr=1e-3", "data=/tmp/x y", "progress=false", "weight_decay=0", 'export=""'])
    assert (config.epochs, config.lr, config.data, config.progress, config.weight_decay, config.export) == (
        3, 1e-3, "/tmp/x y", False, 0.0, "")
    assert isinstance(config.weight_decay, float)


@pytest.mark.parametrize("override, message", [
    ("epoch=3", "unknown key 'epoch'; did you mean epochs"),
    ("epochs=three", "epochs = 'three' is not a int"),
    ("epochs=2.5", "epochs = 2.5 is not a int"),
    ("precision=fp8", "choose one of ('auto', 'fp32', 'bf16', 'fp16')"),
    ("epochs", "expected key=value"),
])
def test_bad_overrides_are_named(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_config("demo", [override])


def test_bad_files_are_named(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("arch = 3\n")
    with pytest.raises(ConfigError, match=f"{bad}: arch = 3 is not a str"):
        load_config(str(bad))
    with pytest.raises(ConfigError, match="no such config file"):
        load_config("nonexistent")


def test_an_empty_file_is_the_reference(tmp_path: Path) -> None:
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_config(str(empty)) == PretrainConfig()


@pytest.mark.parametrize("override, message", [
    ("epochs=-1", "epochs = -1 is out of range: it must be between 1 and"),
    ("batch_size=0", "batch_size = 0 is out of range: it must be between 2 and"),
    ("lr=-1", "lr = -1.0 is out of range: it must be above 0"),
    ("lr=nan", "lr = nan is not a finite number"),
    ("lr=inf", "lr = inf is not a finite number"),
    ("text_heads=3", "text_heads = 3 does not divide text_hidden_size = 128"),
    ("arch=resnet19", "arch = 'resnet19': pretraining builds the backbone registry's short names; unknown architecture"),
    ("arch=hf:/nonexistent", "arch = 'hf:/nonexistent': pretraining builds"),
    ("warmup_fraction=2", "warmup_fraction = 2.0 is out of range: it must be between 0 and 1"),
    ("num_prototypes=0", "num_prototypes = 0 is out of range: it must be between 2 and"),
    ("vocab_size=1000000000", "vocab_size = 1000000000 is out of range: it must be between 100 and 1000000"),
    ("beta2=1", "beta2 = 1.0 is out of range: it must be in [0, 1)"),
    ("min_lr=1", "min_lr = 1 is above lr = 0.0005"),
    ("max_words=100000", "max_words = 100000 is out of range"),
    ("reference_weights=resnet50.IMAGENET1K_V2", "reference_weights = 'resnet50.IMAGENET1K_V2' initialise resnet50, not arch = 'resnet18'"),
    ("reference_weights=deit", "reference_weights = 'deit' is out of range: it must be '' or one of ['deit_base_patch16_224', "),
    ("image_init=/nonexistent.pth", "image_init = '/nonexistent.pth' is not a file"),
    ("image_init=/dev/zero", "image_init = '/dev/zero' is not a file"),
    ("text_model=/nonexistent", "text_model = '/nonexistent' is not a folder"),
    ("export=model.pt", "export = 'model.pt': name a .ckpt file"),
    ("out=", "out is empty; name a folder"),  # it wrote the run into the current folder
    ("encoder_input_size=1", "encoder_input_size = 1 is out of range: it must be 0 (no upsampling) or between 32 and 2048"),
])
def test_every_setting_is_range_checked_at_load_time(override: str, message: str, capsys) -> None:
    # Regression (issue 19 §2): these gave tracebacks, a Rust abort (vocab_size) or trained anyway.
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config("demo", [override])
    assert pretrain_main(["--config", "demo", override]) == 2  # before anything is read or written
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and override.split("=")[0] in err


def test_out_naming_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match=f"out = '{tmp_path / 'file'}' is a file; name a folder"):
        load_config("demo", [f"out={tmp_path / 'file'}"])


@pytest.mark.parametrize("name, weights, url", [
    ("mimic_vit_base", "DeiT-B (timm deit_base_patch16_224", "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth"),
    ("mimic_resnet50", "torchvision resnet50 IMAGENET1K_V2", "https://download.pytorch.org/models/resnet50-11ad3fa6.pth"),
])
def test_reference_configs_refuse_to_start_without_initial_weights(name: str, weights: str, url: str, tmp_path: Path,
                                                                    capsys, monkeypatch) -> None:
    # Issue 18 §2: a reference config silently trained from scratch. It now exits 2 before reading
    # any data (data= names a folder that does not exist, which would be the error otherwise).
    monkeypatch.chdir(tmp_path)
    base = ["--config", name, f"data={tmp_path / 'absent'}", f"out={tmp_path / 'run'}"]
    assert pretrain_main(base) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "image_init is not set" in err and weights in err and url in err
    assert "text_model is not set" in err and "Bio_ClinicalBERT" in err
    assert pretrain_main([*base, "image_init=random"]) == 2
    err = capsys.readouterr().err
    assert "image_init" not in err and "text_model is not set" in err
    assert not (tmp_path / "run").exists()  # nothing written
    assert pretrain_main([*base, "image_init=random", "text_model=small"]) == 2  # now it reads the data
    assert "absent/manifest.json: not a prepared dataset" in capsys.readouterr().err
