"""The zero-shot classification scorer: the classification files and metrics on zero-shot schemes.

A zero-shot run writes exactly the classification task's files (format:
``benchmark/scoring/classification.py``): one score column per class of the dataset's scheme
(here cosine similarities, any real number where larger means more likely) and the same targets,
so on RSNA and COVIDx its ground truth has the digest a board pins for the dataset's
classification test split.
Each dataset is scored as its classification scheme says, plus:

* RSNA: AUROC of pneumonia (headline), one binary column;
* COVIDx: accuracy (headline) and macro-F1 (mean per-class F1 of the top-1 class, the usual
  zero-shot report: accuracy alone rewards predicting the majority class), then balanced
  accuracy and one-vs-rest AUROC as the classification scheme reports them;
* CheXpert 5×200 (the hold-out partition ``holdout_5x200``, one finding per image): a
  multi-class scheme over the five competition findings, accuracy (headline) and macro-F1.
  Its targets are ``id,label`` with ``label`` the
  finding's index in ``Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion``
  (the classification task scores CheXpert's other test set multi-label).

Bootstrap intervals and the per-image runs for paired tests come from the classification
machinery (:class:`~benchmark.scoring.classification.ClassificationScorer`), not a copy.
"""

from __future__ import annotations

from dataclasses import replace

from benchmark.data.datasets.chexpert import COMPETITION_TASKS
from benchmark.registry import Registry
from benchmark.scoring import SCORERS
from benchmark.scoring.classification import SCHEMES, ClassificationScheme, ClassificationScorer

ZERO_SHOT_SCHEMES: Registry[ClassificationScheme] = Registry("zero-shot dataset")
ZERO_SHOT_SCHEMES.add("rsna", SCHEMES.get("rsna"))
ZERO_SHOT_SCHEMES.add("covidx", replace(SCHEMES.get("covidx"), secondary=("macro_f1", "balanced_accuracy", "auroc")))
# records.csv holds the five competition labels, one-hot on the hold-out (tasks/zeroshot reads them as the class index)
ZERO_SHOT_SCHEMES.add("chexpert", ClassificationScheme("chexpert", COMPETITION_TASKS, "multiclass", "accuracy", COMPETITION_TASKS,
                                                       secondary=("macro_f1",)))

SCORERS.add("zeroshot", ClassificationScorer(task="zeroshot", schemes=ZERO_SHOT_SCHEMES))
