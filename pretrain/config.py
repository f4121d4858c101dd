"""One pretraining run's settings, as data: a TOML file under ``pretrain/configs/`` plus ``key=value``
overrides on the command line.

Defaults are the reference's (PROTOCOL.md 11.4-11.7, ``mgca_module.py`` CLI values); a config
file only states what differs. Unknown keys and values of the wrong type are errors that name
the file and the key; so are values out of their range (:data:`RANGES`), settings that do not
fit together, and files or folders named by a setting that are not there (:func:`load_config`).

Initial weights are data too: ``reference_weights`` names the weights the reference recipe starts
from (:data:`REFERENCE_IMAGE_WEIGHTS`); a config that names them does not start until
``image_init`` and ``text_model`` say which local files to use, or that it trains from scratch
(:func:`require_initialisation`).
"""

from __future__ import annotations

import difflib
import math
import tomllib
import typing
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Callable, Literal

CONFIG_DIR = Path(__file__).parent / "configs"
Precision = Literal["auto", "fp32", "bf16", "fp16"]


class ConfigError(ValueError):
    """A config file or override cannot be used; the message names it and the fix."""


@dataclass(frozen=True)
class ReferenceWeights:
    """Initial weights of the reference recipe: what they are and where the reference takes them from."""

    arch: str  # the architecture (backbone registry short name) they initialise
    weights: str
    url: str
    loaded_by: str  # the reference's code that loads them

    @property
    def local_name(self) -> str:
        """What the user passes: the downloaded file (or folder)."""
        return "/path/to/" + self.url.rstrip("/").rsplit("/", 1)[-1]


# The reference never trains an encoder from scratch (PROTOCOL.md 11.4).
REFERENCE_IMAGE_WEIGHTS = {
    "deit_base_patch16_224": ReferenceWeights(
        "vit_base_patch16_224", "DeiT-B (timm deit_base_patch16_224, ImageNet-1k)",
        "https://dl.fbaipublicfiles.com/deit/deit_base_patch16_224-b5f2ef4d.pth",
        "mgca/models/backbones/encoder.py L82-86 (key 'model', strict=False: the head is left out)",
    ),
    "resnet50.IMAGENET1K_V2": ReferenceWeights(
        "resnet50", "torchvision resnet50 IMAGENET1K_V2 (ResNet50_Weights.DEFAULT)",
        "https://download.pytorch.org/models/resnet50-11ad3fa6.pth",
        "mgca/models/backbones/cnn_backbones.py L32-36 (fc dropped)",
    ),
}
REFERENCE_TEXT_WEIGHTS = ReferenceWeights(
    "bert", "Bio_ClinicalBERT (its first 6 layers)", "https://huggingface.co/emilyalsentzer/Bio_ClinicalBERT",
    "mgca/models/backbones/encoder.py L154-169 (BertModel.from_pretrained)",
)
RANDOM_INIT, SMALL_BERT = "random", "small"


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

    # Initial image weights: a local file (state dict, timm / torchvision checkpoint, safetensors,
    # read by the suite's safe loader, the encoder complete), or "random" (from scratch).
    image_init: str = ""
    # The reference's initial weights that this recipe needs (REFERENCE_IMAGE_WEIGHTS; also
    # Bio_ClinicalBERT): when set, image_init and text_model must be given; when empty, an empty
    # image_init means "random" and an empty text_model "small".
    reference_weights: str = ""

    # Text encoder: a local Bio_ClinicalBERT folder (first ``text_layers`` layers are used), or
    # "small" for a small BERT with a WordPiece vocabulary trained on the training reports.
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
    # fp32, as the reference trains (Lightning's default precision 32); auto: bf16 autocast on a GPU
    # that has it, else fp16 with loss scaling (faster, not the reference's arithmetic); fp32 on CPU.
    precision: Precision = "fp32"
    progress: bool = True

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = {field.name: field for field in fields(PretrainConfig)}
_TYPES = typing.get_type_hints(PretrainConfig)
Rule = tuple[Callable[[Any], bool], str]


def _between(low: float, high: float) -> Rule:
    return (lambda value: low <= value <= high), f"between {low} and {high}"


def _above(low: float, high: float) -> Rule:
    return (lambda value: low < value <= high), f"above {low} and at most {high}"


# The range of every number (float fields must also be finite) and the closed vocabularies. Upper bounds keep a typo from
# allocating the machine away: far above any real setting, far below what would not fit.
RANGES: dict[str, Rule] = {
    "max_words": _between(3, 512),  # [CLS] word [SEP]; BERT has 512 positions
    "encoder_input_size": (lambda value: value == 0 or 32 <= value <= 2048, "0 (no upsampling) or between 32 and 2048"),
    "text_layers": _between(1, 48),
    "text_hidden_size": _between(2, 8192),
    "text_heads": _between(1, 128),
    "text_intermediate_size": _between(1, 32768),
    "vocab_size": _between(100, 1_000_000),
    "emb_dim": _between(2, 8192),
    "projection_hidden": _between(1, 65536),
    "num_prototypes": _between(2, 100_000),  # one prototype makes CPA constant
    "ita_temperature": _above(0, 100),
    "cta_temperature": _above(0, 100),
    "cpa_temperature": _above(0, 100),
    "sinkhorn_epsilon": _above(0, 100),
    "sinkhorn_iterations": _between(1, 1000),
    "lambda_ita": _between(0, 1000),
    "lambda_cta": _between(0, 1000),
    "lambda_cpa": _between(0, 1000),
    "freeze_prototypes_epochs": _between(0, 100_000),
    "epochs": _between(1, 100_000),
    "batch_size": _between(2, 65536),  # in-batch negatives and training BatchNorm need two pairs
    "accumulate": _between(1, 65536),
    "lr": _above(0, 10),
    "beta1": (lambda value: 0 <= value < 1, "in [0, 1)"),
    "beta2": (lambda value: 0 <= value < 1, "in [0, 1)"),
    "weight_decay": _between(0, 100),
    "warmup_fraction": _between(0, 1),
    "min_lr": _between(0, 10),
    "early_stopping_patience": _between(0, 100_000),
    "seed": _between(0, 2**32 - 1),
    "num_workers": _between(0, 256),
    "reference_weights": (lambda value: value in ("", *REFERENCE_IMAGE_WEIGHTS), f"'' or one of {sorted(REFERENCE_IMAGE_WEIGHTS)}"),
}


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
        value = float(value)
    if expected is bool and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} = {value!r} is not a {expected.__name__}")
    if expected is float and not math.isfinite(value):
        raise ConfigError(f"{where}: {key} = {value!r} is not a finite number")
    if key in RANGES and not RANGES[key][0](value):
        raise ConfigError(f"{where}: {key} = {value!r} is out of range: it must be {RANGES[key][1]}")
    return value


def _check_together(config: PretrainConfig, where: str) -> None:
    """What one key alone cannot say: keys that must fit each other, and the files and folders named."""
    from benchmark.backbones import ARCHITECTURES
    from benchmark.registry import RegistryError

    if config.text_hidden_size % config.text_heads:
        raise ConfigError(f"{where}: text_heads = {config.text_heads} does not divide text_hidden_size = "
                          f"{config.text_hidden_size}")
    if config.min_lr > config.lr:
        raise ConfigError(f"{where}: min_lr = {config.min_lr:g} is above lr = {config.lr:g}")
    try:
        ARCHITECTURES.get(config.arch)
    except RegistryError as error:
        raise ConfigError(f"{where}: arch = {config.arch!r}: pretraining builds the backbone registry's short names; "
                          f"{error}") from None
    reference = REFERENCE_IMAGE_WEIGHTS.get(config.reference_weights)
    if reference and reference.arch != config.arch:
        raise ConfigError(f"{where}: reference_weights = {config.reference_weights!r} initialise {reference.arch}, "
                          f"not arch = {config.arch!r}")
    for key in ("data", "out"):
        if not getattr(config, key).strip():
            raise ConfigError(f"{where}: {key} is empty; name a folder")
    if Path(config.out).exists() and not Path(config.out).is_dir():
        raise ConfigError(f"{where}: out = {config.out!r} is a file; name a folder (the run folder)")
    if config.export and (Path(config.export).suffix != ".ckpt" or Path(config.export).is_dir()):
        raise ConfigError(f"{where}: export = {config.export!r}: name a .ckpt file (or \"\" for no export)")
    if config.image_init not in ("", RANDOM_INIT) and not Path(config.image_init).is_file():
        raise ConfigError(f"{where}: image_init = {config.image_init!r} is not a file; name a checkpoint file "
                          f"(state dict, timm / torchvision checkpoint, .safetensors) or {RANDOM_INIT!r}")
    if config.text_model not in ("", SMALL_BERT) and not Path(config.text_model).is_dir():
        raise ConfigError(f"{where}: text_model = {config.text_model!r} is not a folder; name a local BERT folder "
                          f"(Bio_ClinicalBERT: config.json, vocab.txt, weights) or {SMALL_BERT!r}")


def require_initialisation(config: PretrainConfig) -> None:
    """Refuse to start a recipe that names the reference's initial weights before they are chosen."""
    reference = REFERENCE_IMAGE_WEIGHTS.get(config.reference_weights)
    if reference is None:
        return
    missing = []
    for key, default, what, weights in (("image_init", RANDOM_INIT, config.arch, reference),
                                         ("text_model", SMALL_BERT, "BERT", REFERENCE_TEXT_WEIGHTS)):
        if not getattr(config, key):
            missing.append(f"{key} is not set: the reference starts {what} from {weights.weights}, {weights.url}, loaded "
                           f"by {weights.loaded_by}; pass {key}={weights.local_name}, or {key}={default} to train it "
                           "from scratch")
    if missing:
        raise ConfigError(f"reference_weights = {config.reference_weights!r}: this config needs the reference's initial "
                          "weights, and nothing is downloaded. " + " ".join(f"{item}." for item in missing))


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
    config = PretrainConfig(**settings)
    _check_together(config, f"{path}{' with its overrides' if overrides else ''}")
    return config


def config_from_dict(values: dict[str, Any], where: str) -> PretrainConfig:
    """A config stored in a checkpoint, checked like a file."""
    return PretrainConfig(**{key: _check(key, value, where) for key, value in values.items()})


def image_init_source(config: PretrainConfig) -> str:
    """The image encoder's initial weights: a file path or ``random``."""
    return config.image_init or RANDOM_INIT


def text_model_source(config: PretrainConfig) -> str:
    """The text encoder's initial weights: a folder or ``small`` (a small BERT from scratch)."""
    return config.text_model or SMALL_BERT


__all__ = ["ConfigError", "PretrainConfig", "REFERENCE_IMAGE_WEIGHTS", "REFERENCE_TEXT_WEIGHTS", "config_from_dict",
           "config_path", "image_init_source", "load_config", "require_initialisation", "text_model_source"]
