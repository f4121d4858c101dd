"""How a backbone wants its pixels: a property of the model, recorded with every run.

Each architecture source reads it from the model's own configuration (timm's pretrained
config, a Hugging Face image-processor config, open_clip's preprocess config,
torchxrayvision's [-1024, 1024] range). The MGCA backbones declare the MGCA protocol's
mean = std = 0.5 (PROTOCOL.md section 2): that normalisation is theirs, not a global constant.
Tasks apply it to the protocol's crops; where and how the crop is taken stays the task's
protocol (the linear probe's 224-of-256 centre crop, say).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


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

    def __post_init__(self) -> None:
        problems = []
        if self.input_size < 1:
            problems.append(f"input size {self.input_size}")
        if self.channels not in (1, 3):
            problems.append(f"{self.channels} channels (1 or 3 are supported)")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            problems.append(f"mean {self.mean} / std {self.std} for {self.channels} channel(s)")
        if any(s <= 0 for s in self.std):
            problems.append(f"std {self.std} not positive")
        if not self.value_range[0] < self.value_range[1]:
            problems.append(f"value range {self.value_range}")
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


MGCA_PREPROCESSING = Preprocessing(
    input_size=224, channels=3, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
    source="MGCA protocol: mean = std = 0.5 on [0, 1] (PROTOCOL.md section 2)",
)


def protocol_preprocessing(model: Preprocessing) -> Preprocessing:
    """The MGCA protocol's normalisation for any backbone (``--preprocess protocol``).

    Input size and channel count stay the model's: a 1-channel model cannot take three.
    """
    return replace(
        model, value_range=(0.0, 1.0), mean=(0.5,) * model.channels, std=(0.5,) * model.channels,
        source=f"MGCA protocol normalisation (mean = std = 0.5) instead of the model's own ({model.source})",
    )
