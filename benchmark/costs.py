"""What one grid cell costs, in encoder forward passes of one image: the unit of sharding and of
``run --dry-run``'s wall-time estimate (passes ÷ measured images per second).

A cell's work is (a) encoding images (in a cached mode once per cache entry: the validation
and test images once per cache group, each fraction draw's training images once; in the
reference mode every training image every epoch, and the validation images every epoch unless
the task caches them there too) and (b) training its head for at most
``max_epochs`` epochs (early stopping usually ends sooner, so estimates are upper bounds). The
head's cost per training sample is expressed relative to one encoder pass (a linear layer on
cached features costs next to nothing; a detector or a decoder on cached maps about as much as
the encoder). The numbers are each task's (``TaskInfo.cost``, from its protocol object); this module
holds only the machinery.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from benchmark.records import CellIdentity


@dataclass(frozen=True)
class TaskCost:
    batch_size: int  # typical training batch of the reference protocol
    max_epochs: int  # the protocol's bound (a board's ``max_epochs`` override replaces it: TaskInfo.epochs)
    head_cost: float  # one training sample through the head (forward + backward), in encoder passes
    features: str  # what the cached mode stores per image: "global" (a vector) or "maps" (the pyramid)
    cache_dtype_bytes: int  # bytes per stored number
    # The reference mode still caches validation and test features (classification), or encodes the
    # validation images every epoch and the test images once (detection, segmentation).
    paper_caches_eval: bool = False


CACHED_MODES = frozenset({"cached"})  # modes that encode each image once and train on stored features


@dataclass(frozen=True)
class SplitCounts:
    """Image counts of one cell's splits: its training subset (fraction, draw), validation, test."""

    train: int
    val: int
    test: int


@dataclass(frozen=True)
class CellEstimate:
    """Upper-bound work of one cell (see the module docstring)."""

    epochs: int
    training_steps: int  # optimiser steps: epochs × batches per epoch
    training_samples: int  # epochs × training images
    uncached_passes: int  # encoder passes outside any cache (the reference mode's training loop)
    # cache entries the cell reads, with their image counts; shared entries are counted once per plan
    cache_entries: dict[tuple, int]

    def cost(self, head_cost: float) -> float:
        """Encoder-pass equivalents, counting every cache entry as if this cell wrote it."""
        return sum(self.cache_entries.values()) + self.uncached_passes + head_cost * self.training_samples


def estimate(identity: CellIdentity, counts: SplitCounts, model: TaskCost, epochs: int) -> CellEstimate:
    """The work of ``identity`` given its split sizes, its task's cost and its epoch budget (``TaskInfo.epochs``)."""
    batches = max(1, math.floor(counts.train / model.batch_size)) if counts.train else 0  # drop_last, one partial batch at least
    group = (identity.entry_key, identity.task, identity.dataset, identity.partition)
    entries, uncached = {}, 0
    if identity.mode in CACHED_MODES:
        entries[(*group, f"train-{identity.fraction}pct-draw{identity.draw}")] = counts.train
    else:
        uncached = epochs * counts.train
    if identity.mode in CACHED_MODES or model.paper_caches_eval:
        entries.update({(*group, "val"): counts.val, (*group, "test"): counts.test})
    else:
        uncached += epochs * counts.val + counts.test
    return CellEstimate(epochs=epochs, training_steps=epochs * batches, training_samples=epochs * counts.train,
                        uncached_passes=uncached, cache_entries=entries)
