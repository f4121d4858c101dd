"""What one grid cell costs, in encoder forward passes of one image: the unit of sharding and of
``run --dry-run``'s wall-time estimate (passes ÷ measured images per second).

A cell's work is (a) encoding images (in a cached mode once per cache entry: the validation
and test images once per cache group, each fraction draw's training images once; in the
reference mode every training image every epoch, and the validation images every epoch unless
the task caches them there too) and (b) training its head for at most
``max_epochs`` epochs (early stopping usually ends sooner, so estimates are upper bounds). The
head's cost per training sample is expressed relative to one encoder pass, as measured on the
reference device class (:func:`measured_head_cost`: a linear layer on cached features costs next
to nothing; a detector or a decoder on cached maps about as much as the encoder or more). The
numbers are each task's (``TaskInfo.cost``, from its protocol object).

Wall time on a named **device class** comes from measured speeds instead: ``device_costs/<name>.json``,
written by ``benchmarks/bench_costs.py`` on that device (encoder images/s per architecture and
input size; per (task, head, mode, architecture) training steps/s at the protocol's batch and the
head's forward images/s on stored features; with the machine, the date and the load average of
each measurement). ``run --dry-run --device-class NAME`` prints per-shard hours from it
(:func:`shard_seconds`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from benchmark.records import CellIdentity
from benchmark.registry import Registry, RegistryError

DEVICE_COSTS_DIR = Path(__file__).resolve().parent / "device_costs"
# The measured device class each task's declared ``head_cost`` comes from (:func:`measured_head_cost`).
REFERENCE_DEVICE_CLASS = "cpu-2core-x86_64"


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
    uncached_passes: int  # encoder passes outside any cache (the reference mode's training loop, its evaluation)
    uncached_eval_passes: int  # of which validation (every epoch) and test images (once)
    eval_samples: int  # images through the head's forward outside training: validation every epoch, test once
    # cache entries the cell reads, with their image counts; shared entries are counted once per plan
    cache_entries: dict[tuple, int]

    def cost(self, head_cost: float) -> float:
        """Encoder-pass equivalents, counting every cache entry as if this cell wrote it."""
        return sum(self.cache_entries.values()) + self.uncached_passes + head_cost * self.training_samples


def estimate(identity: CellIdentity, counts: SplitCounts, model: TaskCost, epochs: int) -> CellEstimate:
    """The work of ``identity`` given its split sizes, its task's cost and its epoch budget (``TaskInfo.epochs``)."""
    batches = max(1, math.floor(counts.train / model.batch_size)) if counts.train else 0  # drop_last, one partial batch at least
    group = (identity.entry_key, identity.task, identity.dataset, identity.partition)
    entries, uncached, uncached_eval = {}, 0, 0
    if identity.mode in CACHED_MODES:
        entries[(*group, f"train-{identity.fraction}pct-draw{identity.draw}")] = counts.train
    else:
        uncached = epochs * counts.train
    if identity.mode in CACHED_MODES or model.paper_caches_eval:
        entries.update({(*group, "val"): counts.val, (*group, "test"): counts.test})
    else:
        uncached_eval = epochs * counts.val + counts.test
    return CellEstimate(epochs=epochs, training_steps=epochs * batches, training_samples=epochs * counts.train,
                        uncached_passes=uncached + uncached_eval, uncached_eval_passes=uncached_eval,
                        eval_samples=epochs * counts.val + counts.test, cache_entries=entries)


@dataclass(frozen=True)
class CellRates:
    """Measured speeds of one (task, head, mode, architecture) on one device class."""

    encoder_images_per_second: float  # at the input size the task feeds this architecture
    training_samples_per_second: float  # steps/s x batch; in the reference mode the encoder and augmentation included
    eval_images_per_second: float  # the head's forward on stored features (validation, test)

    def seconds(self, work: CellEstimate, encoded_images: int) -> float:
        """Seconds of ``work`` when it encodes ``encoded_images`` images into the cache (shared entries once per plan)."""
        return ((encoded_images + work.uncached_eval_passes) / self.encoder_images_per_second
                + work.training_samples / self.training_samples_per_second + work.eval_samples / self.eval_images_per_second)


@dataclass(frozen=True)
class DeviceClass:
    """One ``device_costs/<name>.json`` table (``benchmarks/bench_costs.py`` writes it)."""

    name: str
    machine: str
    date: str
    encoders: list[dict[str, Any]]
    heads: list[dict[str, Any]]

    @classmethod
    def read(cls, path: Path) -> DeviceClass:
        table = json.loads(path.read_text())
        return cls(table["device_class"], table["machine"], table["date"], table["encoders"], table["heads"])

    def describe(self) -> str:
        loads = [row["load_average"][0] for row in [*self.encoders, *self.heads]]
        return (f"device class {self.name}: {self.machine}, measured {self.date[:10]} "
                f"(1-min load average {min(loads):.1f}-{max(loads):.1f} during the measurements)")

    def encoder_images_per_second(self, arch: str, input_size: int) -> float:
        for row in self.encoders:
            if row["arch"] == arch and row["input_size"] == input_size:
                return float(row["images_per_second"])
        measured = sorted(f"{row['arch']}@{row['input_size']}" for row in self.encoders)
        raise RegistryError(f"{self.describe()} has no encoder speed of {arch} at {input_size} px (measured: {', '.join(measured)}); "
                            f"run benchmarks/bench_costs.py with that backbone on that device, or plan without --device-class")

    def rates(self, task: str, head: str, mode: str, arch: str) -> CellRates:
        """The speeds of a cell of (task, head, mode) on ``arch`` at the size the task feeds it (``protocol_size``)."""
        rows = {row["mode"]: row for row in self.heads
                if (row["task"], row["head"], row["arch"]) == (task, head, arch) and row["protocol_size"]}
        if mode not in rows or not any("eval_images_per_second" in row for row in rows.values()):
            measured = sorted({f"{row['task']}/{row['head']}/{row['mode']} on {row['arch']}" for row in self.heads})
            raise RegistryError(f"{self.describe()} has no measured {task}/{head}/{mode} on {arch} "
                                f"(measured: {', '.join(measured)}); run benchmarks/bench_costs.py for it, or plan without --device-class")
        row = rows[mode]
        evaluated = next(row["eval_images_per_second"] for row in rows.values() if "eval_images_per_second" in row)
        return CellRates(self.encoder_images_per_second(arch, row["input_size"]), row["steps_per_second"] * row["batch"], evaluated)


@cache
def device_classes() -> Registry[DeviceClass]:
    """Every measured device class shipped in ``device_costs/``."""
    classes: Registry[DeviceClass] = Registry("device class")
    for path in sorted(DEVICE_COSTS_DIR.glob("*.json")):
        measured = DeviceClass.read(path)
        classes.add(measured.name, measured)
    return classes


def measured_head_cost(task: str, device_class: str = REFERENCE_DEVICE_CLASS) -> float:
    """A task's ``TaskCost.head_cost`` from measurements: one training sample through its costliest head
    on stored features, in encoder passes of the same architecture at the same size on ``device_class``."""
    measured = device_classes().get(device_class)
    ratios = [measured.encoder_images_per_second(row["arch"], row["input_size"]) / (row["steps_per_second"] * row["batch"])
              for row in measured.heads if row["task"] == task and row["mode"] in CACHED_MODES and row["protocol_size"]]
    if not ratios:
        raise RegistryError(f"{measured.describe()} has no cached-mode row of task {task!r}: run benchmarks/bench_costs.py for it")
    return max(ratios)


def shard_seconds(cells: list[tuple[CellEstimate, CellRates]]) -> float:
    """Seconds of one shard's cells on a device class: each cache entry encoded once, by the first cell that reads it."""
    seconds, written = 0.0, set()
    for work, rates in cells:
        new = sum(images for entry, images in work.cache_entries.items() if entry not in written)
        written.update(work.cache_entries)
        seconds += rates.seconds(work, new)
    return seconds
