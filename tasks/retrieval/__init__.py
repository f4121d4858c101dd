"""Image-text retrieval: a vision-language backbone's image embeddings against report and finding texts.

The backbone's text tower (``benchmark.backbones.text``) encodes the texts; the test images and
the texts are compared by cosine similarity in the model's joint space (``adapter.py``); nothing is
trained. MIMIC-CXR: image ↔ report on the official test split, one frontal image per study
(``protocol.py``); CheXpert 5×200: image → finding sentences of a versioned pool (``texts.py``).
The scorer (``benchmark/scoring/retrieval.py``) reports Recall@1/5/10 both ways and the median
rank on MIMIC-CXR (headline image→report Recall@5), Precision@1/5/10 on CheXpert 5×200
(headline Precision@5). A backbone without a text tower is skipped when the grid is planned
(``requires``).
"""

from benchmark.scoring.retrieval import RETRIEVAL_SCHEMES
from tasks.registry import TASKS, TaskDataset, TaskInfo
from tasks.retrieval.protocol import BOARD_OVERRIDES, COST, HEADS, MODES, PARTITIONS, TASK_VERSION

TASKS.add("retrieval", TaskInfo(
    name="retrieval",
    title="Image-text retrieval (image ↔ report, image → finding sentences)",
    version=TASK_VERSION,
    datasets={name: TaskDataset(PARTITIONS[name]) for name in RETRIEVAL_SCHEMES.names()},
    heads=HEADS,
    default_heads={"*": HEADS[0]},
    modes=MODES,
    default_mode=MODES[0],
    adapter="tasks.retrieval.adapter:run_retrieval",
    scorer="retrieval",
    cost=COST,
    override_keys=BOARD_OVERRIDES,
    # MIMIC-CXR's test split as an image x report similarity matrix: about 3,000 x 3,000 floats (36 MB)
    large_artifacts=True,
    smoke={"encode_batch_size": 8},
    requires="benchmark.backbones.text:text_tower_requirement",
    encoder_input="tasks.retrieval.protocol:encoder_input_size",  # the adapter's geometry (joint.backbone_geometry)
    seeded=False,  # nothing is trained: one seed per column (a board's tasks.retrieval.seeds)
))
