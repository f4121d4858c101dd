"""Configs as data: every shipped file parses, overrides are typed, mistakes are named."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.backbones import ARCHITECTURES
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
