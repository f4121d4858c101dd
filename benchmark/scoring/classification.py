"""Official classification metrics, the prediction/target file formats, and their validation.

File formats (CSV, UTF-8, one row per test image, comma-separated, header required)
-----------------------------------------------------------------------------------
Predictions (every dataset)::

    id,<class 1>,<class 2>,...
    patient64541_study1_view1_frontal,0.12,0.80,...

one column per class of the dataset (:data:`SCHEMES`; any column order, no other column),
holding a finite score per class: a probability (sigmoid for the multi-label/binary datasets,
softmax for COVIDx) or any real number where larger means more likely. AUROC uses only the
ranking; accuracy takes the class with the largest score.

Targets:

* CheXpert and RSNA (multi-label / binary): ``id,<class 1>,...`` with the same class columns
  as the predictions, each 0 or 1. CheXpert: ``Atelectasis, Cardiomegaly, Consolidation,
  Edema, Pleural Effusion`` (uncertain labels already mapped, PROTOCOL.md 3.3). RSNA: ``Target``.
* COVIDx (multi-class, one label per image): ``id,label`` with ``label`` the class index
  0 = normal, 1 = pneumonia, 2 = COVID-19 (the reference's mapping, PROTOCOL.md 5.2).
  Prediction columns are ``normal, pneumonia, COVID-19``.

Both files must hold exactly the same IDs (any order). A missing or extra ID, a wrong or
duplicated column, a duplicated ID, an empty/NaN/non-numeric score or an out-of-range target
is a :class:`PredictionFileError` naming the file, the row and the fix.

Metrics (PROTOCOL.md 8.5)
-------------------------
AUROC is scikit-learn's ``roc_auc_score`` per class; the macro value is their unweighted mean
(torchmetrics ``AUROC(average="macro")`` in the reference). A class whose test targets hold a
single value has no AUROC: its value is NaN, the macro value is NaN too (a mean over fewer
classes would be a different metric), and the result carries a warning naming the class.
COVIDx AUROC is one-vs-rest over its three classes. Accuracy is overall (micro) top-1
accuracy, the reference's metric; balanced accuracy is the mean per-class recall (defect B18);
macro-F1 is the mean per-class F1 of the top-1 class (zero-shot COVIDx, ``benchmark/scoring/zeroshot.py``).

Against chance (``benchmark/scoring/chance.py``): accuracy by the permutation test of independence
between the top-1 classes and the labels (chance: sum_k p_pred(k) * p_true(k)), the AUROC of a
one-class dataset (RSNA) by the Mann-Whitney U test against 0.5. A macro AUROC over several
classes has no test (the Mann-Whitney null is of one binary label); balanced accuracy and
macro-F1 declare no chance null.
"""

from __future__ import annotations

import csv
import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

from benchmark.data.csvfields import too_many_fields
from benchmark.data.datasets.chexpert import COMPETITION_TASKS
from benchmark.data.datasets.covidx import CLASSES as COVIDX_CLASSES
from benchmark.data.prepared import DataError
from benchmark.registry import Registry
from benchmark.scoring import SCORERS, MetricSpec, PerImageRun, TargetSet
from benchmark.scoring.bootstrap import BootstrapOptions, bootstrap_ci_weighted
from benchmark.scoring.chance import ChanceError, ChanceResult, accuracy_against_independence, auroc_against_half
from benchmark.scoring.report import ScoredMetric, ScoreReport

TargetFormat = Literal["multilabel", "multiclass"]
TrainAugmentation = Literal["moco2", "random_crop"]  # the probe's train transform (tasks/classification/transforms.py)
ID_COLUMN = "id"
LABEL_COLUMN = "label"  # multi-class targets


class PredictionFileError(DataError):
    """A prediction or target file does not follow the format in this module's docstring."""


@dataclass(frozen=True)
class MetricResult:
    value: float
    per_class: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


# (targets [n, C] in {0, 1}; one-hot for multi-class, scores [n, C], class names) -> result
MetricFunction = Callable[[np.ndarray, np.ndarray, Sequence[str]], MetricResult]
METRICS: Registry[MetricFunction] = Registry("classification metric")


@dataclass(frozen=True)
class ClassificationScheme:
    """A classification dataset's one declaration: what its test set is scored on (classes, target
    format, metrics) and how the linear probe reads and augments it (tasks/classification)."""

    dataset: str
    classes: tuple[str, ...]
    target_format: TargetFormat  # multilabel: BCE per class; multiclass: cross-entropy (the probe's loss)
    primary: str  # a key of METRICS: the leaderboard number
    label_columns: tuple[str, ...]  # columns of the prepared records.csv holding the labels
    train_augmentation: TrainAugmentation = "random_crop"  # the reference's train transform
    secondary: tuple[str, ...] = ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.primary, *self.secondary)


SCHEMES: Registry[ClassificationScheme] = Registry("classification dataset")


def binary_auroc(targets: np.ndarray, scores: np.ndarray) -> float:
    """AUROC of one class; NaN when ``targets`` hold a single value (AUROC undefined)."""
    if np.unique(targets).size < 2:
        return float("nan")
    return float(roc_auc_score(targets, scores))


@METRICS.register("auroc")
def macro_auroc(targets: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> MetricResult:
    """Unweighted mean of the per-class AUROCs (one-vs-rest for one-hot targets)."""
    per_class = {name: binary_auroc(targets[:, k], scores[:, k]) for k, name in enumerate(classes)}
    undefined = [name for name, value in per_class.items() if np.isnan(value)]
    if undefined:
        return MetricResult(float("nan"), per_class, (
            f"AUROC undefined for {', '.join(undefined)}: the test targets hold a single value for "
            f"{'this class' if len(undefined) == 1 else 'these classes'}, so the macro AUROC is NaN",
        ))
    return MetricResult(float(np.mean(list(per_class.values()))), per_class)


@METRICS.register("accuracy")
def accuracy(targets: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> MetricResult:
    """Overall top-1 accuracy (the reference's micro accuracy)."""
    del classes
    return MetricResult(float(np.mean(targets.argmax(1) == scores.argmax(1))))


@METRICS.register("balanced_accuracy")
def balanced_accuracy(targets: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> MetricResult:
    """Mean recall over the classes present in the targets (scikit-learn)."""
    truth, predicted = targets.argmax(1), scores.argmax(1)
    absent = [name for k, name in enumerate(classes) if not (truth == k).any()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the absent classes are reported below instead
        value = float(balanced_accuracy_score(truth, predicted))
    notes = (f"balanced accuracy leaves out {', '.join(absent)}: no test image of that class",) if absent else ()
    recalls = {name: float(np.mean(predicted[truth == k] == k)) for k, name in enumerate(classes) if name not in absent}
    return MetricResult(value, recalls, notes)


@METRICS.register("macro_f1")
def macro_f1(targets: np.ndarray, scores: np.ndarray, classes: Sequence[str]) -> MetricResult:
    """Unweighted mean of the per-class F1 of the top-1 prediction over every class (scikit-learn's
    ``f1_score(average="macro")``; a class neither present nor predicted has F1 0)."""
    truth, predicted = targets.argmax(1), scores.argmax(1)
    labels = list(range(len(classes)))
    per_class = f1_score(truth, predicted, labels=labels, average=None, zero_division=0.0)
    return MetricResult(float(np.mean(per_class)), {name: float(value) for name, value in zip(classes, per_class)})


# ------------------------------------------------------------------ metrics on weighted resamples
# The same metrics on image multiplicities ``weights[R, n]`` (R bootstrap resamples at once):
# a resample that draws image i k times is the test set with weight k on image i. Equal to the
# functions above on the resampled rows; paired comparisons use them to stay fast at real sizes.

# (targets [n, C], scores [n, C], weights [R, n]) -> metric per resample [R]
WeightedMetricFunction = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
WEIGHTED_METRICS: Registry[WeightedMetricFunction] = Registry("weighted classification metric")


def weighted_binary_auroc(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC of one class per resample (ties count half); NaN where a resample lacks a class.

    For each positive, the negative weight strictly below its score plus half the negative weight
    at its score (cumulative sums over the negatives in score order, read at searchsorted
    positions), times the positive's weight, summed, over W+ · W-.
    """
    positive = targets.astype(bool)
    negative_order = np.argsort(scores[~positive], kind="stable")
    negative_scores = scores[~positive][negative_order]
    positive_scores = scores[positive]
    below_index = np.searchsorted(negative_scores, positive_scores, side="left")
    up_to_index = np.searchsorted(negative_scores, positive_scores, side="right")
    negative_weights = weights[:, ~positive][:, negative_order]
    cumulative = np.zeros((len(weights), len(negative_scores) + 1))
    np.cumsum(negative_weights, axis=1, out=cumulative[:, 1:])
    below, up_to = cumulative[:, below_index], cumulative[:, up_to_index]
    positive_weights = weights[:, positive]
    numerator = (positive_weights * (below + up_to)).sum(axis=1) / 2
    total_positive, total_negative = positive_weights.sum(axis=1), cumulative[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where((total_positive > 0) & (total_negative > 0), numerator / (total_positive * total_negative), np.nan)


@WEIGHTED_METRICS.register("auroc")
def weighted_macro_auroc(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    return np.mean([weighted_binary_auroc(targets[:, k], scores[:, k], weights) for k in range(targets.shape[1])], axis=0)


@WEIGHTED_METRICS.register("accuracy")
def weighted_accuracy(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    correct = (targets.argmax(1) == scores.argmax(1)).astype(np.float64)
    return weights @ correct / weights.sum(axis=1)


@WEIGHTED_METRICS.register("balanced_accuracy")
def weighted_balanced_accuracy(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    truth, correct = targets.argmax(1), targets.argmax(1) == scores.argmax(1)
    members = np.stack([truth == k for k in range(targets.shape[1])], axis=1).astype(np.float64)  # [n, C]
    counts, hits = weights @ members, weights @ (members * correct[:, None])
    with np.errstate(invalid="ignore", divide="ignore"):
        recalls = np.where(counts > 0, hits / counts, np.nan)
    return np.nanmean(recalls, axis=1)


@WEIGHTED_METRICS.register("macro_f1")
def weighted_macro_f1(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """F1 per class = 2·TP / (2·TP + FP + FN) on the weighted counts (0 where the class is neither
    present nor predicted, as scikit-learn's zero_division=0), averaged over the classes."""
    n_classes = targets.shape[1]
    truth, predicted = targets.argmax(1), scores.argmax(1)
    actual = np.stack([truth == k for k in range(n_classes)], axis=1).astype(np.float64)  # [n, C]
    chosen = np.stack([predicted == k for k in range(n_classes)], axis=1).astype(np.float64)
    true_positives, actual_counts, chosen_counts = weights @ (actual * chosen), weights @ actual, weights @ chosen
    denominator = actual_counts + chosen_counts  # 2·TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(denominator > 0, 2 * true_positives / denominator, 0.0)
    return per_class.mean(axis=1)


SCHEMES.add("chexpert", ClassificationScheme("chexpert", COMPETITION_TASKS, "multilabel", "auroc", COMPETITION_TASKS, "moco2"))
SCHEMES.add("rsna", ClassificationScheme("rsna", ("Target",), "multilabel", "auroc", ("target",)))  # column "target"
SCHEMES.add("covidx", ClassificationScheme(
    "covidx", tuple(sorted(COVIDX_CLASSES, key=COVIDX_CLASSES.get)), "multiclass", "accuracy", ("label",),
    secondary=("balanced_accuracy", "auroc"),
))


def compute_metrics(targets: np.ndarray, scores: np.ndarray, scheme: ClassificationScheme) -> dict[str, MetricResult]:
    """Every metric of ``scheme`` on label-matrix ``targets`` and ``scores`` (both [n, C])."""
    check_arrays(targets, scores, scheme)
    return {name: METRICS.get(name)(targets, scores, scheme.classes) for name in scheme.metric_names}


def flat_metrics(results: dict[str, MetricResult]) -> dict[str, float]:
    """``{"auroc": ..., "auroc[Edema]": ...}``: the run record's metric dictionary.

    Bracketed entries are each metric's per-class components: the class AUROC for ``auroc``,
    the class recall for ``balanced_accuracy``.
    """
    flat: dict[str, float] = {}
    for name, result in results.items():
        flat[name] = result.value
        flat.update({f"{name}[{cls}]": value for cls, value in result.per_class.items()})
    return flat


def check_arrays(targets: np.ndarray, scores: np.ndarray, scheme: ClassificationScheme) -> None:
    expected = (len(targets), len(scheme.classes))
    if targets.shape != expected or scores.shape != expected:
        raise ValueError(f"{scheme.dataset}: targets {targets.shape} and scores {scores.shape} must both be {expected}")


def labels_to_matrix(labels: np.ndarray, scheme: ClassificationScheme) -> np.ndarray:
    """Class indices (multi-class) or a 0/1 matrix (multi-label) → the [n, C] label matrix."""
    if scheme.target_format == "multiclass":
        return np.eye(len(scheme.classes), dtype=np.int64)[np.asarray(labels, dtype=np.int64).reshape(-1)]
    return np.asarray(labels, dtype=np.int64).reshape(len(labels), len(scheme.classes))


# ------------------------------------------------------------------------------------- files

def write_predictions(path: Path, ids: Sequence[str], scores: np.ndarray, scheme: ClassificationScheme) -> Path:
    """Write ``scores`` [n, C] in the prediction format (see module docstring)."""
    frame = pd.DataFrame(np.asarray(scores, dtype=np.float64), columns=list(scheme.classes))
    frame.insert(0, ID_COLUMN, list(ids))
    frame.to_csv(path, index=False)  # shortest round-trip repr: re-scoring the file gives the same numbers
    return path


def write_targets(path: Path, ids: Sequence[str], targets: np.ndarray, scheme: ClassificationScheme) -> Path:
    """Write the label matrix ``targets`` in the dataset's target format (see module docstring)."""
    if scheme.target_format == "multiclass":
        frame = pd.DataFrame({LABEL_COLUMN: np.asarray(targets).argmax(1)})
    else:
        frame = pd.DataFrame(np.asarray(targets, dtype=np.int64), columns=list(scheme.classes))
    frame.insert(0, ID_COLUMN, list(ids))
    frame.to_csv(path, index=False)
    return path


def _read_csv(path: Path, expected_columns: Sequence[str], what: str) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise PredictionFileError(f"{path}: {what} file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            columns = next(csv.reader(handle), [])
        ragged = too_many_fields(path)
        if ragged:  # before pandas, which would take the ids as an index and report "empty id"
            raise PredictionFileError(f"{path} {ragged}; write one value per column")
        frame = pd.read_csv(path, dtype={ID_COLUMN: str}, keep_default_na=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as error:
        raise PredictionFileError(f"{path}: not a readable CSV {what} file ({error})") from None
    duplicated = sorted({name for name in columns if columns.count(name) > 1})
    if duplicated:
        raise PredictionFileError(f"{path}: duplicated column(s) {duplicated}")
    wanted = [ID_COLUMN, *expected_columns]
    if set(columns) != set(wanted):
        missing = [name for name in wanted if name not in columns]
        extra = [name for name in columns if name not in wanted]
        raise PredictionFileError(
            f"{path}: wrong columns for a {what} file: missing {missing}, unexpected {extra}; "
            f"the header must be {','.join(wanted)}"
        )
    if frame[ID_COLUMN].isna().any():
        row = int(np.flatnonzero(frame[ID_COLUMN].isna())[0]) + 2
        raise PredictionFileError(f"{path}: empty id on line {row}")
    repeated = frame[ID_COLUMN][frame[ID_COLUMN].duplicated()].tolist()
    if repeated:
        raise PredictionFileError(f"{path}: {len(repeated)} duplicated id(s), e.g. {repeated[:3]}")
    return frame.set_index(ID_COLUMN)[list(expected_columns)]


def _numeric(frame: pd.DataFrame, path: Path, what: str) -> np.ndarray:
    values = frame.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        raise PredictionFileError(
            f"{path}: {int(bad.sum())} empty, NaN, infinite or non-numeric {what} value(s), first at line "
            f"{row + 2} (id {frame.index[row]!r}), column {frame.columns[column]!r}"
        )
    return values


def read_predictions(path: Path, scheme: ClassificationScheme) -> pd.DataFrame:
    """Scores indexed by id, columns in ``scheme.classes`` order; validated."""
    frame = _read_csv(path, scheme.classes, "predictions")
    return pd.DataFrame(_numeric(frame, Path(path), "score"), index=frame.index, columns=list(scheme.classes))


def read_targets(path: Path, scheme: ClassificationScheme) -> pd.DataFrame:
    """0/1 label matrix indexed by id, columns in ``scheme.classes`` order; validated."""
    multiclass = scheme.target_format == "multiclass"
    frame = _read_csv(path, [LABEL_COLUMN] if multiclass else scheme.classes, "targets")
    values = _numeric(frame, Path(path), "target")
    allowed = np.arange(len(scheme.classes)) if multiclass else np.array([0, 1])
    bad = ~np.isin(values, allowed)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        raise PredictionFileError(
            f"{path}: target on line {row + 2} (id {frame.index[row]!r}) is {values[bad][0]:g}; "
            f"allowed values are {allowed.tolist()}"
        )
    return pd.DataFrame(labels_to_matrix(values, scheme), index=frame.index, columns=list(scheme.classes))


def align(predictions: pd.DataFrame, targets: pd.DataFrame, predictions_path: Path) -> pd.DataFrame:
    """Predictions reordered to the targets' IDs; missing or extra IDs are an error."""
    missing = targets.index.difference(predictions.index, sort=False)
    extra = predictions.index.difference(targets.index, sort=False)
    if len(missing) or len(extra):
        problems = []
        if len(missing):
            problems.append(f"{len(missing)} test id(s) missing, e.g. {list(missing[:3])}")
        if len(extra):
            problems.append(f"{len(extra)} id(s) not in the test set, e.g. {list(extra[:3])}")
        raise PredictionFileError(f"{predictions_path}: {'; '.join(problems)}; predict exactly the test set's IDs")
    return predictions.loc[targets.index]


def score_arrays(
    targets: np.ndarray, scores: np.ndarray, scheme: ClassificationScheme, options: BootstrapOptions = BootstrapOptions()
) -> tuple[dict[str, ScoredMetric], list[str]]:
    """Official metrics of one test set with seeded bootstrap intervals, and the warnings about them."""
    results = compute_metrics(targets, scores, scheme)
    metrics = {}
    for name, result in results.items():
        function = WEIGHTED_METRICS.get(name)
        interval = bootstrap_ci_weighted(lambda weights, f=function: f(targets, scores, weights), len(targets), options)
        metrics[name] = ScoredMetric(replace(interval, value=result.value), result.per_class)
    notes = [note for result in results.values() for note in result.warnings]
    for name, metric in metrics.items():
        left_out = metric.interval.n_resamples - metric.interval.n_valid
        if left_out:
            notes.append(f"{name}: undefined on {left_out} of {metric.interval.n_resamples} bootstrap resamples (left out)")
    return metrics, notes


def scheme_of(dataset: str | None, schemes: Registry[ClassificationScheme] = SCHEMES) -> ClassificationScheme:
    if dataset is None:
        raise PredictionFileError(f"classification files are scored per dataset: name one of {schemes.names()} (--dataset)")
    return schemes.get(dataset)


def read_scored_files(predictions: Path, targets: Path, scheme: ClassificationScheme) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validated targets and the predictions aligned to their row order."""
    target_frame = read_targets(targets, scheme)
    if target_frame.empty:
        raise PredictionFileError(f"{targets}: the targets file has no rows (a header only); nothing to score")
    return target_frame, align(read_predictions(predictions, scheme), target_frame, Path(predictions))


class ClassificationScorer:
    """A scorer of class-score files (formats and metrics: this module's docstring) on ``schemes``: the
    classification task's (:data:`SCHEMES`), or another task's that writes the same files (zero-shot)."""

    metrics = {"auroc": MetricSpec("auroc", "AUROC", chance="mann_whitney"),
               "accuracy": MetricSpec("accuracy", "ACC", chance="independence"),
               "balanced_accuracy": MetricSpec("balanced_accuracy", "balanced ACC"),
               "macro_f1": MetricSpec("macro_f1", "macro-F1")}

    def __init__(self, task: str = "classification", schemes: Registry[ClassificationScheme] = SCHEMES) -> None:
        self.task, self.schemes = task, schemes

    def headline(self, dataset: str) -> str:
        return self.schemes.get(dataset).primary

    def score_files(self, predictions: Path, targets: Path, dataset: str | None,
                    options: BootstrapOptions = BootstrapOptions()) -> ScoreReport:
        scheme = scheme_of(dataset, self.schemes)
        target_frame, prediction_frame = read_scored_files(predictions, targets, scheme)
        metrics, notes = score_arrays(target_frame.to_numpy(), prediction_frame.to_numpy(), scheme, options)
        return ScoreReport(task=self.task, dataset=scheme.dataset, primary_metric=scheme.primary,
                           n_images=len(target_frame), metrics=metrics, warnings=tuple(notes),
                           predictions=str(predictions), targets=str(targets))

    def per_image(self, predictions: Path, targets: Path, dataset: str | None, metric: str) -> PerImageRun:
        scheme = scheme_of(dataset, self.schemes)
        if metric not in scheme.metric_names:
            raise PredictionFileError(f"{dataset} is not scored on {metric!r}; its metrics are {list(scheme.metric_names)}")
        target_frame, prediction_frame = read_scored_files(predictions, targets, scheme)
        labels, scores = target_frame.to_numpy(), prediction_frame.to_numpy()
        function = WEIGHTED_METRICS.get(metric)
        binary = (labels[:, 0], scores[:, 0]) if metric == "auroc" and len(scheme.classes) == 1 else None
        return PerImageRun(tuple(target_frame.index), labels_digest(target_frame),
                           lambda weights: function(labels, scores, weights), binary)

    def chance(self, predictions: Path, targets: Path, dataset: str | None, metric: str) -> ChanceResult:
        """``metric`` of these files against chance (module docstring); :data:`CHANCE_TESTS` says how."""
        scheme = scheme_of(dataset, self.schemes)
        if metric not in scheme.metric_names:
            raise PredictionFileError(f"{dataset} is not scored on {metric!r}; its metrics are {list(scheme.metric_names)}")
        if metric not in CHANCE_TESTS.names():
            raise ChanceError(f"{metric!r} has no chance test; those of classification files: {CHANCE_TESTS.names()}")
        target_frame, prediction_frame = read_scored_files(predictions, targets, scheme)
        return CHANCE_TESTS.get(metric)(target_frame.to_numpy(), prediction_frame.to_numpy(), scheme)

    def target_set(self, targets: Path, dataset: str | None) -> TargetSet:
        frame = read_targets(targets, scheme_of(dataset, self.schemes))
        if frame.empty:
            raise PredictionFileError(f"{targets}: the targets file has no rows (a header only)")
        return TargetSet(labels_digest(frame))


# (label matrix [n, C], scores [n, C], scheme) -> the metric against chance (benchmark/scoring/chance.py)
ChanceTest = Callable[[np.ndarray, np.ndarray, ClassificationScheme], ChanceResult]
CHANCE_TESTS: Registry[ChanceTest] = Registry("classification chance test")


@CHANCE_TESTS.register("accuracy")
def accuracy_chance(targets: np.ndarray, scores: np.ndarray, scheme: ClassificationScheme) -> ChanceResult:
    """Top-1 accuracy against top-1 classes independent of the labels: permutation test (one label per image)."""
    return accuracy_against_independence(targets.argmax(1), scores.argmax(1), scheme.classes)


@CHANCE_TESTS.register("auroc")
def auroc_chance(targets: np.ndarray, scores: np.ndarray, scheme: ClassificationScheme) -> ChanceResult:
    """The AUROC of a one-class scheme against 0.5: Mann-Whitney U."""
    if len(scheme.classes) != 1:
        raise ChanceError(f"{scheme.dataset}: a macro AUROC over {len(scheme.classes)} classes has no chance test here "
                          f"(the Mann-Whitney test is of one binary label's AUROC)")
    return auroc_against_half(targets[:, 0], scores[:, 0])


def labels_digest(target_frame: pd.DataFrame) -> str:
    """sha256 of the label matrix in sorted-id order: runs scored on other labels never pair."""
    ordered = target_frame.sort_index()
    return hashlib.sha256(("\n".join(ordered.index) + "\n").encode() + ordered.to_numpy().tobytes()).hexdigest()


SCORERS.add("classification", ClassificationScorer())
