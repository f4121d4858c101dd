"""Object detection on frozen encoders: YOLOv3 and Faster R-CNN (mmdetection) on RSNA and Object-CXR.

``run_detection`` (``adapter.py``) is the task adapter, imported only in the process that runs a
cell; the protocol lives as data in ``protocol.py``, the detectors as mmengine configs in
``configs/``; the metrics are ``benchmark/scoring/detection.py``. Importing this package does not
import mmdet.
"""

from tasks.detection.protocol import BOARD_OVERRIDES, COST, DEFAULT_HEADS, HEAD_NAMES, MODES, PARTITION, TASK_VERSION
from tasks.registry import TASKS, TaskDataset, TaskInfo

TASKS.add("detection", TaskInfo(
    name="detection",
    title="Object detection (frozen encoder, trainable detector head)",
    version=TASK_VERSION,
    datasets={"rsna": TaskDataset(PARTITION), "object_cxr": TaskDataset(PARTITION)},
    heads=HEAD_NAMES,
    default_heads=DEFAULT_HEADS,
    modes=MODES,
    default_mode="paper",  # the cache does not pay at real geometry (adapter.py docstring)
    adapter="tasks.detection.adapter:run_detection",
    scorer="detection",
    cost=COST,
    override_keys=BOARD_OVERRIDES,
    smoke={"max_epochs": 1, "batch_size": 8, "eval_batch_size": 16, "encode_batch_size": 16},
    encoder_input="tasks.detection.protocol:encoder_input_size",  # resolve_geometry, as run_detection
))
