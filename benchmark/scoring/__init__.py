"""Scoring: metrics per task, seeded bootstrap intervals and paired comparisons.

Used by the task adapters (on their in-memory predictions) and by ``python -m benchmark score``
(on saved prediction files), so a run's metrics can always be recomputed from its files.
Each task registers a file scorer in :data:`SCORERS`; :func:`scorer` imports them on demand.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable

from benchmark.registry import Registry

# task -> score_files(predictions, targets, dataset, BootstrapOptions) -> JSON-ready dict
SCORERS: Registry[Callable[..., dict]] = Registry("scorer")


def scorer(task: str) -> Callable[..., dict]:
    """The file scorer of ``task``, after importing every module of this package."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
    return SCORERS.get(task)
