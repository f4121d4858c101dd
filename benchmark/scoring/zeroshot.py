"""The zero-shot classification scorer: the classification files and metrics on zero-shot schemes.

A zero-shot run writes exactly the classification task's files (format:
``benchmark/scoring/classification.py``): one score column per class of the dataset's scheme
(here cosine similarities, any real number where larger means more likely) and the same targets,
so its ground truth has the digest a board pins for the dataset's classification test split.
Each dataset is scored as its classification scheme says, plus:

* RSNA: AUROC of pneumonia (headline), one binary column;
* COVIDx: accuracy (headline) and macro-F1 (mean per-class F1 of the top-1 class, the usual
  zero-shot report: accuracy alone rewards predicting the majority class), then balanced
  accuracy and one-vs-rest AUROC as the classification scheme reports them.

Bootstrap intervals and the per-image runs for paired tests come from the classification
machinery (:class:`~benchmark.scoring.classification.ClassificationScorer`), not a copy.
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.registry import Registry
from benchmark.scoring import SCORERS
from benchmark.scoring.classification import SCHEMES, ClassificationScheme, ClassificationScorer

ZERO_SHOT_SCHEMES: Registry[ClassificationScheme] = Registry("zero-shot dataset")
ZERO_SHOT_SCHEMES.add("rsna", SCHEMES.get("rsna"))
ZERO_SHOT_SCHEMES.add("covidx", replace(SCHEMES.get("covidx"), secondary=("macro_f1", "balanced_accuracy", "auroc")))

SCORERS.add("zeroshot", ClassificationScorer(task="zeroshot", schemes=ZERO_SHOT_SCHEMES))
