"""Linear classification: frozen-backbone linear probes on CheXpert, RSNA and COVIDx.

``run_classification`` is the task adapter (``adapter.py``); the protocol lives as data in
``protocol.py``; features are cached by ``features.py``. Each dataset's classes and headline
metric are its scoring scheme's (``benchmark/scoring/classification.py``).
"""

from benchmark.scoring.classification import SCHEMES
from tasks.classification.protocol import BOARD_OVERRIDES, COST, MODES, PROTOCOL, TASK_VERSION
from tasks.registry import TASKS, TaskDataset, TaskInfo

TASKS.add("classification", TaskInfo(
    name="classification",
    title="Linear classification (frozen encoder, linear head)",
    version=TASK_VERSION,
    datasets={name: TaskDataset(PROTOCOL.partition) for name in SCHEMES.names()},
    heads=("linear",),
    default_heads={"*": "linear"},
    modes=MODES,
    default_mode="cached",
    adapter="tasks.classification.adapter:run_classification",
    scorer="classification",
    cost=COST,
    override_keys=BOARD_OVERRIDES,
    smoke={"max_epochs": 1, "batch_size": 8, "encode_batch_size": 16},
    encoder_input="tasks.classification.adapter:encoder_input_size",
))
