"""Linear classification: frozen-backbone linear probes on CheXpert, RSNA and COVIDx.

``run_classification`` is the task adapter (``adapter.py``); the protocol lives as data in
``protocol.py``; features are cached by ``features.py``.
"""

from tasks.classification.adapter import run_classification
from tasks.classification.protocol import DATASET_PROBES, MODES, PROTOCOL, TASK_VERSION
from tasks.registry import TASKS, TaskInfo

TASKS.add("classification", TaskInfo(
    name="classification",
    title="Linear classification (frozen encoder, linear head)",
    datasets=tuple(DATASET_PROBES.names()),
    partition=PROTOCOL.partition,
    version=TASK_VERSION,
    modes=MODES,
    run=run_classification,
))

__all__ = ["run_classification"]
