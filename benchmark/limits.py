"""Sizes beyond which a setting is refused before anything is allocated (one home for each bound),
and the value-type tests those checks share.

They are far above what the protocol uses and far below what would exhaust a machine, so a
typo (an extra zero, a negative sign) is a one-line error instead of a long allocation.
"""

from __future__ import annotations

import math

# Side of a square image, in pixels: prepared images (``prepare --image-size``, 256 in the protocol)
# and a model's input size (224 to 518 for the backbones of the field). Chest X-ray files are at
# most about 4,000 pixels wide; one 4096 x 4096 float32 RGB input is 200 MB.
MAX_IMAGE_SIDE = 4096

# Bootstrap resamples (``score --n-resamples``): the resample indices are [resamples, test images]
# integers, 480 MB for 10,000 resamples of a 6,000-image test set; intervals do not move beyond that.
MAX_RESAMPLES = 10_000

# Layers (blocks) of a model config: the deepest vision transformers have 80. A config asking for
# 100,000 would spend minutes and gigabytes building Python modules, even on the meta device.
MAX_LAYERS = 1024


def is_whole(value: object) -> bool:
    """An int as JSON or TOML gives it (a bool is not a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_finite_number(value: object) -> bool:
    """An int or float that is neither a bool nor inf/nan."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
