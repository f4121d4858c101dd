"""``run --dry-run``: what a grid will cost before anything runs.

The plan counts, per task and dataset, the cells, those already on the board, the encoder
passes still needed (each feature-cache entry once, the reference mode's training loop in full),
the optimiser steps, the bytes the feature cache will grow by, and an estimated wall time per
shard: the shard's work in encoder passes (``benchmark/costs.py``) divided by a throughput
measured on this machine (a few batches through the backbone at the side each task feeds it,
``TaskInfo.encoder_input_size`` on the prepared images: the linear probe's ResNet-50 at 299 px,
B20; once per backbone and side) or given with ``--throughput``, or, with ``--device-class NAME``,
from speeds measured on that device class
(``benchmark/costs.py``: encoder, head training and head evaluation per task, head, mode and
architecture). Counts are exact (the same planner as the run); times and steps are upper
bounds (every head trains its maximum epochs; early stopping ends most sooner).

Without prepared data (``--from-splits``) the planner reads the split sizes that ship with the
package; without the checkpoint it plans with the architecture at random initialisation, so
"already done" cannot be known (the plan says so).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from benchmark.backbones import CheckpointNotFound, LoadedBackbone, build_backbone
from benchmark.board.store import Board
from benchmark.costs import TaskCost, device_classes, shard_seconds
from benchmark.datasources import DatasetSource, prepared_sources
from benchmark.grid.planning import PlannedCell, cell_costs, cell_estimate, plan_grid
from benchmark.grid.request import BackboneChoice, GridError, GridRequest, GridSummary, resolve_device
from benchmark.records import CellIdentity
from benchmark.sharding import partition

SpeedKey = tuple[str, int]  # (the backbone's entry key, the side of the images its encoder is fed)


@dataclass(frozen=True)
class Throughput:
    """Encoder forward passes per second of one backbone, and what its cached features weigh."""

    images_per_second: float
    measured: str  # how: "measured: 3 batches of 8 at 224 px on cpu" or "given with --throughput"
    global_bytes: int  # one image's pooled feature vector, float32
    map_values: int  # numbers in one image's feature maps (stored as the task's cache dtype)


def measure(loaded: LoadedBackbone, device: str, size: int, given: float | None = None, batch: int = 8,
            batches: int = 3) -> Throughput:
    """Time ``batches`` batches of random ``size``-pixel images through the frozen encoder (after one warm-up)."""
    channels = loaded.preprocessing.channels
    model = loaded.model.to(device)
    with torch.inference_mode():
        probe = model(torch.randn(1, channels, size, size, device=device))
        global_bytes = int(probe.global_features.shape[-1]) * 4
        map_values = int(sum(level[0].numel() for level in probe.feature_maps))
        if given is not None:
            return Throughput(given, "given with --throughput", global_bytes, map_values)
        images = torch.randn(batch, channels, size, size, device=device)
        model.global_features(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        started = time.perf_counter()
        for _ in range(batches):
            model.global_features(images)
        if device.startswith("cuda"):
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - started
    return Throughput(batch * batches / seconds, f"measured: {batches} batches of {batch} at {size} px on {device} "
                      f"({torch.get_num_threads()} CPU threads)", global_bytes, map_values)


@dataclass
class Row:
    cells: int = 0
    done: int = 0
    to_run: int = 0
    encoder_passes: int = 0
    training_steps: int = 0
    cache_bytes: int = 0


@dataclass
class Plan:
    board: str
    shards: int
    rows: dict[str, Row]  # "task/dataset" -> counts
    shard_seconds: list[float]
    shard_cells: list[int]
    throughput: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def total(self) -> Row:
        total = Row()
        for row in self.rows.values():
            for key, value in asdict(row).items():
                setattr(total, key, getattr(total, key) + value)
        return total

    def to_dict(self) -> dict[str, Any]:
        return {"board": self.board, "shards": self.shards, "rows": {k: asdict(v) for k, v in self.rows.items()},
                "total": asdict(self.total),
                "per_shard": [{"shard": f"{k + 1}/{self.shards}", "cells": n, "estimated_seconds": round(s, 1)}
                              for k, (n, s) in enumerate(zip(self.shard_cells, self.shard_seconds))],
                "throughput": self.throughput, "notes": self.notes}

    def lines(self) -> list[str]:
        header = f"{'task/dataset':<28}{'cells':>7}{'done':>7}{'to run':>8}{'encoder passes':>16}{'train steps':>13}{'cache':>11}"
        out = [f"dry run on board {self.board!r}: nothing is evaluated", header]
        for name, row in [*sorted(self.rows.items()), ("total", self.total)]:
            out.append(f"{name:<28}{row.cells:>7}{row.done:>7}{row.to_run:>8}{row.encoder_passes:>16,}"
                       f"{row.training_steps:>13,}{_bytes(row.cache_bytes):>11}")
        out.append(f"throughput: {self.throughput['images_per_second']:.1f} encoder images/s ({self.throughput['measured']})")
        for k, (cells, seconds) in enumerate(zip(self.shard_cells, self.shard_seconds), 1):
            out.append(f"shard {k}/{self.shards}: {cells} cells to run, about {_duration(seconds)} (upper bound)")
        out += [f"note: {note}" for note in self.notes]
        return out


def _bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return ""


def _duration(seconds: float) -> str:
    hours, rest = divmod(int(round(seconds)), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def _backbone_or_architecture(notes: list[str]) -> Callable[[BackboneChoice, Any], LoadedBackbone]:
    def load(choice: BackboneChoice, spec: Any) -> LoadedBackbone:
        try:
            return build_backbone(spec, choice.checkpoint)
        except CheckpointNotFound as error:
            notes.append(f"{spec.name}: {error}; planned with its architecture at random initialisation, so cells "
                         f"already on the board cannot be recognised (done counts are 0)")
            return build_backbone(replace(spec, weights="random", seed=0))

    return load


def dry_run(board: Board, request: GridRequest, shards: int, throughput: float | None = None,
            sources: Callable[[str], DatasetSource | None] | None = None, device_class: str | None = None) -> Plan:
    """The plan of ``request`` on ``board`` split into ``shards`` shards; nothing is written or run.
    Times: measured on this machine, from ``throughput``, or from the measured ``device_class``."""
    measured = device_classes().get(device_class) if device_class else None
    notes: list[str] = []
    summary = GridSummary()
    planned = plan_grid(board, replace(request, shard=None), summary, sources=sources,
                        backbones=_backbone_or_architecture(notes))
    if summary.not_prepared:
        notes.append(f"not prepared under {request.data_dir}, left out: {', '.join(summary.not_prepared)}")
    notes += [f"skipped: {reason}" for reason in summary.skipped]
    device = resolve_device(request.device)
    find = sources or prepared_sources(request.data_dir)
    cache_sizes: dict[str, int] = {}
    keys: dict[CellIdentity, SpeedKey] = {}
    speeds: dict[SpeedKey, Throughput] = {}
    for item in planned:
        identity = item.cell.identity
        if identity.dataset not in cache_sizes:
            cache_sizes[identity.dataset] = _source(find, identity.dataset).image_size
        size = item.cell.task.encoder_input_size(item.loaded, cache_sizes[identity.dataset], identity.head,
                                                 board.protocol.task(identity.task).overrides)
        key = keys[identity] = (identity.entry_key, size)
        if key not in speeds:
            given = throughput
            if measured:
                given = measured.encoder_images_per_second(item.loaded.spec.arch, size)
            speeds[key] = measure(item.loaded, device, size, given)
    todo = [item for item in planned if board.completed(item.cell.identity) is None]
    done = {item.cell.identity for item in planned} - {item.cell.identity for item in todo}
    rows: dict[str, Row] = defaultdict(Row)
    for item in planned:
        row = rows[f"{item.cell.identity.task}/{item.cell.identity.dataset}"]
        row.cells += 1
        row.done += item.cell.identity in done
    written: set[tuple] = set()
    for item in todo:
        identity = item.cell.identity
        row = rows[f"{identity.task}/{identity.dataset}"]
        work = cell_estimate(board, item.cell)
        row.to_run += 1
        row.training_steps += work.training_steps
        row.encoder_passes += work.uncached_passes
        for entry, images in work.cache_entries.items():
            if entry not in written:
                written.add(entry)
                row.encoder_passes += images
                row.cache_bytes += images * _bytes_per_image(item.cell.task.cost, speeds[keys[identity]])
    costs = cell_costs(board, [item.cell for item in planned])
    by_identity = {item.cell.identity: item for item in todo}
    shard_times, shard_cells = [], []
    for members in partition(list(costs), shards, costs.__getitem__):
        mine = [by_identity[cell] for cell in members if cell in by_identity]
        shard_cells.append(len(mine))
        if measured:
            shard_times.append(shard_seconds([(cell_estimate(board, item.cell), measured.rates(
                item.cell.identity.task, item.cell.identity.head, item.cell.identity.mode, item.loaded.spec.arch)) for item in mine]))
        else:
            shard_times.append(_shard_passes(board, mine, {cell: speeds[key] for cell, key in keys.items()}))
    first = next(iter(speeds.values()))
    how = measured.describe() if measured else first.measured
    if measured:
        notes.append(f"times from the speeds measured on {measured.name} at each task's protocol image size "
                     f"(data prepared smaller runs faster); head evaluation on validation every epoch included")
    elif throughput is None and len(speeds) > 1:
        notes += [f"throughput of {entry} at {size} px: {speed.images_per_second:.1f} encoder images/s ({speed.measured})"
                  for (entry, size), speed in list(speeds.items())[1:]]
    return Plan(board.name, shards, dict(rows), shard_times, shard_cells,
                {"images_per_second": round(first.images_per_second, 2), "measured": how, "device": device,
                 "encoders": [{"entry": entry, "input_size": size, "images_per_second": round(speed.images_per_second, 2)}
                              for (entry, size), speed in speeds.items()]}, notes)


def _source(find: Callable[[str], DatasetSource | None], dataset: str) -> DatasetSource:
    """The source planning read ``dataset``'s cells from (gone since: an error, not a guess at its image size)."""
    source = find(dataset)
    if source is None:
        raise GridError(f"{dataset}: its prepared folder disappeared while the grid was planned")
    return source


def _bytes_per_image(model: TaskCost, speed: Throughput) -> int:
    return speed.global_bytes if model.features == "global" else speed.map_values * model.cache_dtype_bytes


def _shard_passes(board: Board, items: list[PlannedCell], speeds: dict[CellIdentity, Throughput]) -> float:
    """Seconds of one shard: its own cache entries once, its uncached passes, its heads' training, each
    cell's at the speed of its encoder at the side its task feeds it."""
    seconds, entries = 0.0, set()
    for item in items:
        work = cell_estimate(board, item.cell)
        speed = speeds[item.cell.identity].images_per_second
        passes = work.uncached_passes + item.cell.task.cost.head_cost * work.training_samples
        for entry, images in work.cache_entries.items():
            if entry not in entries:
                entries.add(entry)
                passes += images
        seconds += passes / speed
    return seconds
