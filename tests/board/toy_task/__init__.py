"""A tiny deterministic task family for the tests, and the proof that a task family is its package,
its scorer and a board entry, nothing else: this package (registered when imported; ``--plugins
toy_task`` in a CLI subprocess), its scorer (``scorer.py``, registered as ``toy`` in
``benchmark.scoring.SCORERS``) and the board entry ``fixtures.write_toy_board`` writes. No module
of the suite names the toy.

The task ``toy`` scores 0/1 labels of one binary class ``Target`` with scores that depend only on
(weights, head, fraction, draw, seed), so equal identities give equal files (``adapter.py``). It
declares two heads (``linear``, ``mlp``) and two modes (``cached``, ``paper``) and reads the
``classification`` partition of a prepared dataset ``rsna`` that ``fixtures.write_toy_dataset``
writes. ``write_toy_dataset`` and ``write_toy_board`` are importable from here for the tests.
"""

from benchmark.costs import TaskCost
from tasks.registry import TASKS, TaskDataset, TaskInfo
from toy_task import scorer  # noqa: F401 - registers the scorer "toy"
from toy_task.fixtures import TOY_DATASET, TOY_SCORER, TOY_TASK, write_toy_board, write_toy_dataset  # noqa: F401

TASKS.add(TOY_TASK, TaskInfo(
    name=TOY_TASK, title="toy", version=1, datasets={TOY_DATASET: TaskDataset("classification")},
    heads=("linear", "mlp"), default_heads={"*": "linear"}, modes=("cached", "paper"), default_mode="cached",
    adapter="toy_task.adapter:run_toy", scorer=TOY_SCORER,
    # the cost the planner shards toy cells by: a bound of 50 epochs, a head as dear as the encoder
    cost=TaskCost(batch_size=32, max_epochs=50, head_cost=1.0, features="maps", cache_dtype_bytes=4),
    override_keys=("max_epochs",),
))
