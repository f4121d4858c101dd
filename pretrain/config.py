"""One pretraining run's settings, as data: a TOML file under ``pretrain/configs/`` plus ``key=value``
overrides on the command line.

Defaults are the reference's (PROTOCOL.md 11.4-11.7, ``mgca_module.py`` CLI values); a config
file only states what differs. Unknown keys and values of the wrong type are errors that name
the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

CONFIG_DIR = Path(__file__).parent / "configs"
Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ConfigError(ValueError):
    """A config file or override cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class PretrainConfig:
    # Data: a prepared MIMIC-CXR folder (``python -m benchmark prepare mimic``), partition ``pretraining``.
    data: str = "data/prepared/mimic"
    out: str = "runs/pretrain/mgca"  # run folder: last.ckpt, best.ckpt, tokenizer.json, log.jsonl
    export: str = ""  # also write the best checkpoint here (+ .safetensors of the image encoder)
    max_words: int = 112  # tokens per report, [CLS] and [SEP] included (pretrain_dataset.py L20)

    # Image encoder: an architecture of the backbone registry (timm / torchvision names).
    arch: str = "vit_base_patch16_224"
    # Crops upsampled to this size before the encoder (ResNet-50: 299, encoder.py L114-116); 0 = no upsampling.
    encoder_input_size: int = 0

    # Text encoder: a local Bio_ClinicalBERT folder (first ``text_layers`` layers are used), or empty
    # for a small BERT with a WordPiece vocabulary trained on the training reports.
    text_model: str = ""
    text_layers: int = 6
    text_hidden_size: int = 256
    text_heads: int = 4
    text_intermediate_size: int = 1024
    vocab_size: int = 8000

    # Heads and losses (encoder.py L17-54, mgca_module.py L82-264).
    emb_dim: int = 128
    projection_hidden: int = 2048
    num_prototypes: int = 500
    ita_temperature: float = 0.07
    cta_temperature: float = 0.1
    cpa_temperature: float = 0.2
    sinkhorn_epsilon: float = 0.05
    sinkhorn_iterations: int = 3
    lambda_ita: float = 1.0
    lambda_cta: float = 1.0
    lambda_cpa: float = 1.0
    freeze_prototypes_epochs: int = 1

    # Optimisation (mgca_module.py L391-453).
    epochs: int = 50
    batch_size: int = 72  # per process
    accumulate: int = 1
    lr: float = 2e-5
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.05
    warmup_fraction: float = 0.4
    min_lr: float = 1e-8
    early_stopping_patience: int = 5  # epochs without a lower validation loss; 0 = never stop early
    seed: int = 42
    num_workers: int = 4
    precision: Precision = "auto"  # auto: bf16 on a GPU that has it, else fp16; fp32 on CPU
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = {field.name: field for field in fields(PretrainConfig)}
_TYPES = typing.get_type_hints(PretrainConfig)


def _check(key: str, value: Any, where: str) -> Any:
    """``value`` as the type of field ``key``; a ConfigError naming ``where`` otherwise."""
    if key not in FIELDS:
        close = difflib.get_close_matches(key, FIELDS, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"{where}: unknown key {key!r}{hint}")
    expected = _TYPES[key]
    if typing.get_origin(expected) is Literal:
        if value not in typing.get_args(expected):
            raise ConfigError(f"{where}: {key} = {value!r}: choose one of {typing.get_args(expected)}")
        return value
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} = {value!r} is not a {expected.__name__}")
    return value


def _parse_override(item: str) -> tuple[str, Any]:
    """``key=value``: the value read as a TOML value (numbers, true/false, quoted strings), else a bare string."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {item!r}: expected key=value")
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key.strip(), value


def config_path(name: str) -> Path:
    """A config file by path, or by name under ``pretrain/configs/`` (``demo`` → ``configs/demo.toml``)."""
    path = Path(name)
    if path.is_file():
        return path
    named = CONFIG_DIR / f"{name}.toml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))
    raise ConfigError(f"{name}: no such config file, and not one of the shipped configs {known}")


def load_config(name: str, overrides: list[str] | tuple[str, ...] = ()) -> PretrainConfig:
    """The config file ``name`` (path or shipped name) with ``key=value`` overrides applied."""
    path = config_path(name)
    try:
        values = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    settings = {key: _check(key, value, str(path)) for key, value in values.items()}
    for item in overrides:
        key, value = _parse_override(item)
        settings[key] = _check(key, value, f"override {item!r}")
    return PretrainConfig(**settings)


def config_from_dict(values: dict[str, Any], where: str) -> PretrainConfig:
    """A config stored in a checkpoint, checked like a file."""
    return PretrainConfig(**{key: _check(key, value, where) for key, value in values.items()})


__all__ = ["ConfigError", "PretrainConfig", "config_from_dict", "config_path", "load_config"]
