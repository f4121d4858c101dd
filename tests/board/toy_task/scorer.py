"""The toy task's scorer, registered as ``toy``: the board pins it for the toy (its protocol.json
entry), the runner scores the toy's files with it and names it in every record, and the board
re-reads, compares and pins those records through it, by this name alone.

The toy writes the files of the RSNA classification scheme (``id,Target``: one binary class, scored
by its AUROC), so its scorer is the classification scorer's code under the toy's own name; a task
with files of its own would implement ``benchmark.scoring.TaskScorer`` here.
"""

from benchmark.scoring import SCORERS
from benchmark.scoring.classification import ClassificationScorer
from toy_task.fixtures import TOY_SCORER

SCORERS.add(TOY_SCORER, ClassificationScorer())
