"""Splitting a planned grid into N shards that N processes (machines, SLURM array tasks) run alone.

The partition is a pure function of the planned cells and their estimated costs, so every
process that plans the same grid computes the same shards and no coordinator or lock is needed:
shard K evaluates its cells, skips those already on the board, and the board's one-file-per-cell
records merge the shards by existing.

Two goals, in this order:

1. cells that share a feature cache stay together: a cache group is one backbone's cells of one
   task on one dataset partition in one mode (their validation and test features are encoded
   once; each fraction draw's training features once). A group is split only when it alone is
   worth more than one shard's share of the total cost (one detection dataset at 100 % can be);
   it is then split along its (fraction, draw) subgroups, which keep their training-feature cache,
   and a subgroup still larger than a share into single cells. Each extra part re-encodes the
   group's validation and test images once;
2. balance: the resulting units are assigned largest first to the least loaded shard (LPT
   scheduling), ties broken by shard number and by the units' keys, never by dictionary or
   file-system order. When a shard still carries more than 10 % above the mean, the split
   threshold is halved and the assignment redone, down to single cells if need be.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

from benchmark.records import CellIdentity


class ShardError(ValueError):
    """A shard specification that cannot be honoured (``--shard 0/3``, ``--jobs 0``)."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (1-based) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ShardError(f"--shard {self.index}/{self.count}: the number of shards must be at least 1")
        if not 1 <= self.index <= self.count:
            raise ShardError(f"--shard {self.index}/{self.count}: K must be between 1 and N={self.count} (shards are numbered from 1)")

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, slash, count = text.partition("/")
        if not (slash and index.strip().isdigit() and count.strip().isdigit()):
            raise ShardError(f"--shard {text!r}: expected K/N with integers 1 <= K <= N, e.g. 2/4")
        return cls(int(index), int(count))

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def cache_group(identity: CellIdentity) -> tuple[str, str, str, str, str]:
    """The cells sharing validation/test features: one backbone, task, dataset partition and mode."""
    return (identity.entry_key, identity.task, identity.dataset, identity.partition, identity.mode)


def _subgroup(identity: CellIdentity) -> tuple[int, int]:
    """Within a cache group, the cells sharing training features: one fraction draw."""
    return (identity.fraction, identity.draw)


def _sort_key(identity: CellIdentity) -> tuple[str, str]:
    return (identity.entry_key, identity.cell_key)


def _units(cells: Sequence[CellIdentity], cost: Callable[[CellIdentity], float], share: float) -> list[tuple[float, str, list[CellIdentity]]]:
    """Cache groups, split into subgroups and then single cells while a part exceeds ``share``."""

    def split(members: list[CellIdentity], key: Callable[[CellIdentity], Hashable] | None) -> list[list[CellIdentity]]:
        total = sum(cost(cell) for cell in members)
        if total <= share or len(members) == 1:
            return [members]
        if key is None:
            return [[cell] for cell in members]
        parts: dict[Hashable, list[CellIdentity]] = {}
        for cell in members:
            parts.setdefault(key(cell), []).append(cell)
        if len(parts) == 1:
            return split(members, None)
        return [piece for _, part in sorted(parts.items(), key=lambda item: str(item[0])) for piece in split(part, None)]

    groups: dict[tuple, list[CellIdentity]] = {}
    for cell in sorted(cells, key=_sort_key):
        groups.setdefault(cache_group(cell), []).append(cell)
    units = []
    for _, members in sorted(groups.items()):
        for part in split(members, _subgroup):
            units.append((sum(cost(cell) for cell in part), part[0].cell_key, part))
    return units


TOLERANCE = 0.10  # a shard may carry this much more than the mean before cache groups are split finer


def _assign(units: list[tuple[float, str, list[CellIdentity]]], count: int) -> tuple[list[list[CellIdentity]], list[float]]:
    """Largest unit first onto the least loaded shard (ties: lowest shard number, then unit key)."""
    shards: list[list[CellIdentity]] = [[] for _ in range(count)]
    loads = [0.0] * count
    for weight, _, members in sorted(units, key=lambda unit: (-unit[0], unit[1])):
        target = min(range(count), key=lambda k: (loads[k], k))
        shards[target].extend(members)
        loads[target] += weight
    return shards, loads


def partition(cells: Sequence[CellIdentity], count: int, cost: Callable[[CellIdentity], float]) -> list[list[CellIdentity]]:
    """``count`` shards (lists of cells) covering every cell exactly once; deterministic.

    Cache groups are split only where needed: first those above one shard's share of the cost;
    while the most loaded shard then carries more than ``1 + TOLERANCE`` times the mean, the
    threshold is halved (down to single cells)."""
    if count < 1:
        raise ShardError(f"cannot split a grid into {count} shards")
    if len(set(cells)) != len(cells):
        raise ShardError("the planned grid holds the same cell twice")
    mean = sum(cost(cell) for cell in cells) / count
    threshold = mean
    while True:
        units = _units(cells, cost, threshold)
        shards, loads = _assign(units, count)
        if max(loads) <= (1 + TOLERANCE) * mean or all(len(members) == 1 for *_, members in units):
            break
        threshold /= 2
    return [sorted(shard, key=_sort_key) for shard in shards]


def shard_cells(cells: Sequence[CellIdentity], shard: Shard, cost: Callable[[CellIdentity], float]) -> list[CellIdentity]:
    """The cells of ``shard``."""
    return partition(cells, shard.count, cost)[shard.index - 1]
