"""Zero-shot classification: a vision-language backbone's image embeddings against class prompts.

The backbone's text tower (``benchmark.backbones.text``) encodes each class's prompts
(``prompts.py``, versioned protocol data); each test image is scored by cosine similarity
(``adapter.py``); nothing is trained. The test images (``protocol.PARTITIONS``): RSNA's and
COVIDx's classification test splits, CheXpert's 5×200 hold-out. The scorer
(``benchmark/scoring/zeroshot.py``) reports AUROC on RSNA, accuracy and macro-F1 on COVIDx and
CheXpert 5×200. A backbone without a text tower is skipped when the grid is planned (``requires``).
"""

from benchmark.scoring.zeroshot import ZERO_SHOT_SCHEMES
from tasks.registry import TASKS, TaskDataset, TaskInfo
from tasks.zeroshot.protocol import BOARD_OVERRIDES, COST, HEADS, MODES, PARTITIONS, TASK_VERSION

TASKS.add("zeroshot", TaskInfo(
    name="zeroshot",
    title="Zero-shot classification (image-text similarity to class prompts)",
    version=TASK_VERSION,
    datasets={name: TaskDataset(PARTITIONS[name]) for name in ZERO_SHOT_SCHEMES.names()},
    heads=HEADS,
    default_heads={"*": HEADS[0]},
    modes=MODES,
    default_mode=MODES[0],
    adapter="tasks.zeroshot.adapter:run_zeroshot",
    scorer="zeroshot",
    cost=COST,
    override_keys=BOARD_OVERRIDES,
    smoke={"encode_batch_size": 8},
    requires="benchmark.backbones.text:text_tower_requirement",
    encoder_input="tasks.zeroshot.protocol:encoder_input_size",  # the adapter's geometry (joint.backbone_geometry)
    seeded=False,  # nothing is trained: one seed per column (a board's tasks.zeroshot.seeds)
))
