"""The reference's learning-rate schedule: linear warm-up then one cosine cycle, stepped every
optimizer step (``CosineAnnealingWarmupRestarts`` with ``cycle_mult=1``, ``gamma=1``,
``warmup_steps=int(0.4 * total_steps)``; PROTOCOL.md 11.7).
"""

from __future__ import annotations

import math


def learning_rate(step: int, total_steps: int, warmup_steps: int, max_lr: float, min_lr: float) -> float:
    """The learning rate of optimizer step ``step`` (0-based): ``min_lr`` at step 0, rising
    linearly to ``max_lr`` at ``warmup_steps``, then a half cosine down to ``min_lr`` at ``total_steps``."""
    if step < warmup_steps:
        return min_lr + (max_lr - min_lr) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def warmup_steps(total_steps: int, warmup_fraction: float) -> int:
    return int(warmup_fraction * total_steps)
