"""Semantic segmentation: a U-Net (ResNet) or SETR (ViT) decoder on a frozen encoder, SIIM and RSNA.

The adapter (``adapter.py``) trains the decoder on mmsegmentation and mmengine from the configs
in ``configs/``; ``benchmark/scoring/segmentation.py`` scores its files (Dice per image over the
test set). RSNA is segmented on its detection partition, the patients' boxes filled into masks
(PROTOCOL.md 4.6). Importing this package registers the task and nothing heavier: mmseg is
imported only in the process that runs a cell.
"""

from tasks.registry import TASKS, TaskDataset, TaskInfo
from tasks.segmentation.protocol import BOARD_OVERRIDES, COST, DEFAULT_MODE, MODES, TASK_VERSION

TASKS.add("segmentation", TaskInfo(
    name="segmentation",
    title="Semantic segmentation (frozen encoder, U-Net or SETR decoder)",
    version=TASK_VERSION,
    datasets={"siim": TaskDataset("segmentation"), "rsna": TaskDataset("detection")},
    heads=("unet", "setr"),
    # a pyramid backbone (ConvNeXt, Swin, DenseNet, ...) gives the U-Net its maps at strides 8-32
    default_heads={"resnet": "unet", "vit": "setr", "pyramid": "unet"},
    modes=MODES,
    default_mode=DEFAULT_MODE,
    adapter="tasks.segmentation.adapter:run_segmentation",
    scorer="segmentation",
    cost=COST,
    override_keys=tuple(BOARD_OVERRIDES),
    smoke={"max_epochs": 1, "batch_size": 4, "eval_batch_size": 4},
    large_artifacts=True,
    encoder_input="tasks.segmentation.protocol:encoder_input_size",  # the head's config and resolve_geometry, as run_cell
))
