"""How a backbone wants its pixels: a property of the model, recorded with every run.

Each architecture source reads it from the model's own configuration (timm's pretrained
config, a Hugging Face image-processor config, open_clip's preprocess config,
torchxrayvision's [-1024, 1024] range). The MGCA backbones declare the MGCA protocol's
mean = std = 0.5 (PROTOCOL.md section 2): that normalisation is theirs, not a global constant.
Tasks apply it to the protocol's crops; where and how the crop is taken stays the task's
protocol (the linear probe's 224-of-256 centre crop, say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, get_args

import torch

from benchmark.limits import MAX_IMAGE_SIDE, is_finite_number, is_whole
from benchmark.quoting import quote, quote_some

# Who chose the normalisation: "model" (the backbone's own, the default) or "protocol" (the MGCA
# protocol's mean = std = 0.5 for every backbone, ``--preprocess protocol``).
PreprocessMode = Literal["model", "protocol"]
PREPROCESS_MODES: tuple[str, ...] = get_args(PreprocessMode)


class PreprocessingError(ValueError):
    """A model's preprocessing config is unusable; the message names the file."""


@dataclass(frozen=True)
class Preprocessing:
    """Input size, channels, intensity range and normalisation a backbone was trained with."""

    input_size: int  # side of the square input the model was trained at
    channels: int  # 1 (torchxrayvision) or 3 (the gray image repeated)
    mean: tuple[float, ...]  # one per channel, in the units of value_range
    std: tuple[float, ...]
    value_range: tuple[float, float] = (0.0, 1.0)  # uint8 0..255 is mapped linearly onto [low, high]
    # True: the model takes input_size only (position embeddings it cannot interpolate).
    fixed_size: bool = False
    source: str = ""  # where the values come from, for the record
    mode: PreprocessMode = "model"  # who chose these values (``--preprocess``), for the record

    def __post_init__(self) -> None:
        problems = []
        if not is_whole(self.input_size) or not 1 <= self.input_size <= MAX_IMAGE_SIDE:
            problems.append(f"input size {quote(self.input_size)} (a whole number from 1 to {MAX_IMAGE_SIDE})")
        if not is_whole(self.channels) or self.channels not in (1, 3):
            problems.append(f"{quote(self.channels)} channels (1 or 3 are supported)")
        numbers = {"mean": self.mean, "std": self.std, "value range": self.value_range}
        for name, value in numbers.items():  # a string mean ("abc") would otherwise pass as three "channels"
            if not (isinstance(value, tuple) and all(is_finite_number(v) for v in value)):
                problems.append(f"{name} {quote_some(value) if isinstance(value, tuple) else quote(value)} "
                                "is not a list of finite numbers")
        if problems:
            raise PreprocessingError(f"invalid preprocessing ({self.source or 'no source'}): {'; '.join(problems)}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            problems.append(f"mean {self.mean} / std {self.std} for {self.channels} channel(s)")
        if any(s <= 0 for s in self.std):
            problems.append(f"std {self.std} not positive")
        if len(self.value_range) != 2 or not self.value_range[0] < self.value_range[1]:
            problems.append(f"value range {self.value_range}")
        if self.mode not in PREPROCESS_MODES:
            problems.append(f"mode {self.mode!r} (one of {PREPROCESS_MODES})")
        if problems:
            raise PreprocessingError(f"invalid preprocessing ({self.source or 'no source'}): {'; '.join(problems)}")

    def unit_range_normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """(mean, std) that give this normalisation when applied to pixels scaled to [0, 1].

        ``(low + (high - low) * x - mean) / std == (x - (mean - low) / (high - low)) / (std / (high - low))``
        """
        low, high = self.value_range
        span = high - low
        return tuple((m - low) / span for m in self.mean), tuple(s / span for s in self.std)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (lists, not tuples), as run records and cache keys store it."""
        return {key: list(value) if isinstance(value, tuple) else value for key, value in asdict(self).items()}

    def pixels(self) -> dict[str, Any]:
        """What decides the encoder's input pixels (no ``source``/``mode`` wording): for cache keys and comparisons."""
        return {key: value for key, value in self.to_dict().items() if key not in ("source", "mode")}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocessing:
        """Inverse of :meth:`to_dict` (configs carry it as data, e.g. mmengine's model config)."""
        names = {item.name for item in fields(cls)}
        return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in data.items() if key in names})


def normalise(images: torch.Tensor, preprocessing: Preprocessing) -> torch.Tensor:
    """Pixels 0..255 ``[..., 3, H, W]`` (uint8, or float holding those values; the gray image
    repeated) -> the encoder's input ``[..., channels, H, W]``: scaled to [0, 1], then normalised
    with the model's mean and std in its intensity range (:meth:`Preprocessing.unit_range_normalisation`),
    keeping the model's channel count. The one place every task turns pixels into encoder input.

    The arithmetic is torchvision's ``ToDtype(float32, scale=True)`` then ``Normalize``.
    """
    mean, std = preprocessing.unit_range_normalisation()
    x = images.to(torch.float32).mul_(1.0 / 255)
    x = x[..., : preprocessing.channels, :, :]
    shape = (-1, 1, 1)
    return x.sub(torch.tensor(mean, dtype=x.dtype, device=x.device).view(shape)).div_(
        torch.tensor(std, dtype=x.dtype, device=x.device).view(shape))


MGCA_PREPROCESSING = Preprocessing(
    input_size=224, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    source="MGCA protocol: mean = std = 0.5 on [0, 1] (PROTOCOL.md section 2)",
)


def protocol_preprocessing(model: Preprocessing) -> Preprocessing:
    """The MGCA protocol's normalisation for any backbone (``--preprocess protocol``).

    Input size and channel count stay the model's: a 1-channel model cannot take three.
    """
    return replace(
        model, value_range=(0.0, 1.0), mean=(0.5,) * model.channels, std=(0.5,) * model.channels, mode="protocol",
        source=f"MGCA protocol normalisation (mean = std = 0.5) instead of the model's own ({model.source})",
    )


PREPROCESSING_RULES: dict[str, Any] = {"model": lambda declared: declared, "protocol": protocol_preprocessing}


def resolve_preprocessing(declared: Preprocessing, mode: PreprocessMode = "model") -> Preprocessing:
    """What a run feeds the encoder under ``--preprocess mode``: the model's own, or the protocol's for all."""
    if mode not in PREPROCESSING_RULES:
        raise PreprocessingError(f"--preprocess {mode!r}: one of {PREPROCESS_MODES}")
    return PREPROCESSING_RULES[mode](declared)
