"""Image-text retrieval: the metrics (pure functions of a similarity matrix), the file formats, the scorer.

File formats
------------
Predictions: an NPZ file (``numpy.savez`` or ``numpy.savez_compressed``; plain arrays, nothing pickled)::

    image_ids    [n]     strings: the test images
    text_ids     [m]     strings: the texts they are compared with
    similarity   [n, m]  finite floats: how alike image i and text j are (larger: more alike)

The suite writes cosine similarities in the model's joint space (float32); any real-valued score
works, only each query's ordering of the candidates counts. A cross-encoder or any other model
that scores every (image, text) pair can write the same file.

Targets: a CSV file (UTF-8, header ``id,side,group``), one row per test image (``side`` =
``image``) and one per text (``side`` = ``text``)::

    id,side,group
    0a1b2c3d-...,image,50414267
    50414267,text,50414267

An image and a text are relevant to each other exactly when their ``group`` is the same: on
MIMIC-CXR a study's image and its report (reports with the same words share a group, see
``tasks/retrieval``); on CheXpert 5×200 an image and the sentences of its finding (the group is
the class name). IDs are unique per side; every image must have a relevant text, and on a dataset
scored text→image every text a relevant image. The targets hold no report text (MIMIC-CXR's
reports may not be redistributed): the IDs name them in the prepared dataset.

The ground truth a board pins (:meth:`RetrievalScorer.target_set`): the sha256 of every (side, ID,
group) row in sorted order; on a dataset whose groups are its classes (CheXpert 5×200, scheme
``classes``) the classification digest of the images' one-hot labels instead
(:func:`benchmark.scoring.classification.labels_digest`), so that a board pins one ground truth for
the split whichever task reads it (zero-shot classification scores the same images). The class of
each text is then protocol data of the task (its versioned text pool), as zero-shot prompts are.

Both files hold the same image IDs and the same text IDs (any order). A missing or extra ID, a
duplicated ID, a wrong shape, a non-finite similarity or a pickled array is a
:class:`RetrievalFileError` naming the file and the problem.

Metrics
-------
A query (an image; a text for text→image) ranks the candidates of the other side by similarity.
Its **rank** is 1 + the number of non-relevant candidates whose similarity is *at least* that of
its best relevant candidate: ties count against the model, so a model that gives every candidate
the same similarity ranks the relevant item last, never first (:func:`relevant_ranks`).

* ``i2t_recall_at_K`` / ``t2i_recall_at_K`` (K = 1, 5, 10): the fraction of queries whose rank is
  at most K (image→text, text→image; :func:`recall_at_k`);
* ``i2t_median_rank`` / ``t2i_median_rank``: the median rank (numpy's median: the mean of the two
  middle ranks for an even count; lower is better; :func:`median_rank`);
* ``precision_at_K`` (K = 1, 5, 10): per image, the fraction of its K most similar texts that are
  relevant (ties broken against the model), averaged over the images: GLoRIA's Precision@K for
  CheXpert 5×200 image→text retrieval (:func:`precision_at_k`).

Datasets (:data:`RETRIEVAL_SCHEMES`): MIMIC-CXR is scored both ways, headline image→report
Recall@5; CheXpert 5×200 image→text, headline Precision@5 (the reasons are in the scheme entries).

Against chance (``benchmark/scoring/chance.py``, ``python -m benchmark chance``): each metric is tested
against a random ranking of each query's candidates, with the query's own candidate and relevant
counts, on the ranks and top-K counts above (ties against the model, so a model that gives every
candidate the same similarity is never above chance): recall@K by the exact binomial or
Poisson-binomial test of the hits (``random_ranking_recall``), precision@K by the exact test of the
summed hypergeometric counts (``random_ranking_precision``), the median rank by a seeded Monte Carlo
test of the median of ranks drawn from their exact distributions (``random_ranking_rank``).

Intervals and paired tests resample the queries of a metric's direction (images for image→text,
texts for text→image) with the candidate gallery held fixed: every rank is computed once against
the whole test gallery and a resample reweights queries (:class:`~benchmark.scoring.PerImageRun`
over the query IDs), so the per-query statistics are computed once and every resample is a
weighted mean or weighted median.
"""

from __future__ import annotations

import csv
import hashlib
import math
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from benchmark.data.csvfields import too_many_fields
from benchmark.data.prepared import DataError
from benchmark.data.datasets.chexpert import COMPETITION_TASKS
from benchmark.registry import Registry
from benchmark.scoring import SCORERS, MetricSpec, PerImageRun, TargetSet, unique_string_ids
from benchmark.scoring.bootstrap import BootstrapOptions, bootstrap_ci_weighted
from benchmark.scoring.chance import (
    ChanceResult,
    median_rank_against_random,
    precision_at_k_against_random,
    recall_at_k_against_random,
)
from benchmark.scoring.classification import labels_digest
from benchmark.scoring.report import ScoredMetric, ScoreReport

Direction = Literal["i2t", "t2i"]  # image queries against texts, text queries against images
Reduce = Literal["mean", "median"]
SIDES = ("image", "text")
TARGET_COLUMNS = ("id", "side", "group")
PREDICTION_ARRAYS = ("image_ids", "text_ids", "similarity")
KS = (1, 5, 10)


class RetrievalFileError(DataError):
    """A similarity or targets file does not follow the format in this module's docstring."""


# ------------------------------------------------------------------------------ metrics (pure)

def relevant_ranks(similarity: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """Per query (row), 1 + the number of non-relevant candidates scoring at least its best relevant
    candidate (ties count against the model). ``similarity`` [q, c] finite, ``relevant`` [q, c] bool
    with at least one relevant candidate per row."""
    similarity, relevant = np.asarray(similarity, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise ValueError(f"similarity {similarity.shape} and relevance {relevant.shape} must be the same [queries, candidates]")
    without = np.flatnonzero(~relevant.any(axis=1))
    if len(without):
        raise ValueError(f"query row {int(without[0])} has no relevant candidate ({len(without)} rows in all)")
    best = np.where(relevant, similarity, -np.inf).max(axis=1)
    return 1 + ((similarity >= best[:, None]) & ~relevant).sum(axis=1)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Fraction of queries whose relevant item ranks within the top ``k``."""
    return float(np.mean(np.asarray(ranks) <= k))


def median_rank(ranks: np.ndarray) -> float:
    """Median of the ranks (the mean of the two middle ones for an even count)."""
    return float(np.median(np.asarray(ranks, dtype=np.float64)))


def precision_at_k(similarity: np.ndarray, relevant: np.ndarray, k: int) -> np.ndarray:
    """Per query (row), the fraction of its ``k`` most similar candidates that are relevant; among
    candidates of equal similarity the non-relevant ones come first (ties count against the model)."""
    similarity, relevant = np.asarray(similarity, dtype=np.float64), np.asarray(relevant, dtype=bool)
    if similarity.shape != relevant.shape or similarity.ndim != 2:
        raise ValueError(f"similarity {similarity.shape} and relevance {relevant.shape} must be the same [queries, candidates]")
    if not 1 <= k <= similarity.shape[1]:
        raise ValueError(f"precision@{k} needs at least {k} candidates; there are {similarity.shape[1]}")
    order = np.lexsort((relevant, -similarity), axis=1)  # last key first: similarity descending, then non-relevant first
    return np.take_along_axis(relevant, order[:, :k], axis=1).mean(axis=1)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Mean of per-query ``values`` [n] under query multiplicities ``weights`` [R, n]: one value per row."""
    return weights @ np.asarray(values, dtype=np.float64) / weights.sum(axis=1)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """:func:`median_rank` of the multiset in which query i appears ``weights[r, i]`` times, per row r.

    With W queries in a resample and the values sorted, the median is the mean of the values at
    1-based positions floor((W+1)/2) and floor(W/2)+1 (the same position twice when W is odd); the
    value at position p is the first whose cumulative weight reaches p."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    cumulative = np.cumsum(weights[:, order], axis=1)
    total = cumulative[:, -1]
    sorted_values = values[order]

    def at(position: np.ndarray) -> np.ndarray:
        return sorted_values[np.minimum((cumulative < position[:, None]).sum(axis=1), len(values) - 1)]

    return (at(np.floor((total + 1) / 2)) + at(np.floor(total / 2) + 1)) / 2


REDUCERS: dict[str, tuple[Callable[[np.ndarray], float], Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "mean": (lambda values: float(np.mean(values)), weighted_mean),
    "median": (median_rank, weighted_median),
}


def recall_chance(similarity: np.ndarray, relevant: np.ndarray, k: int) -> ChanceResult:
    """Recall@``k`` of these queries against a random ranking of each one's candidates (exact, ``random_ranking_recall``)."""
    return recall_at_k_against_random(relevant_ranks(similarity, relevant) <= k, k, relevant.shape[1], relevant.sum(axis=1))


def precision_chance(similarity: np.ndarray, relevant: np.ndarray, k: int) -> ChanceResult:
    """Precision@``k`` of these queries against a random ranking (exact, ``random_ranking_precision``); the top-``k``
    counts are :func:`precision_at_k`'s, ties against the model."""
    found = np.rint(precision_at_k(similarity, relevant, k) * k).astype(np.int64)
    return precision_at_k_against_random(found, k, relevant.shape[1], relevant.sum(axis=1))


def median_rank_chance(similarity: np.ndarray, relevant: np.ndarray) -> ChanceResult:
    """The median rank of these queries against random rankings (Monte Carlo, ``random_ranking_rank``)."""
    return median_rank_against_random(relevant_ranks(similarity, relevant), relevant.shape[1], relevant.sum(axis=1))


@dataclass(frozen=True)
class RetrievalMetric:
    """A metric as a per-query statistic of the (query × candidate) similarity and relevance, reduced over queries."""

    spec: MetricSpec
    direction: Direction
    per_query: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (similarity [q, c], relevant [q, c]) -> [q]
    reduce: Reduce
    # (similarity [q, c], relevant [q, c]) -> the metric against the null spec.chance names (benchmark/scoring/chance.py)
    chance: Callable[[np.ndarray, np.ndarray], ChanceResult]


METRICS: Registry[RetrievalMetric] = Registry("retrieval metric")
ARROWS = {"i2t": "I→T", "t2i": "T→I"}
for _direction in ("i2t", "t2i"):
    for _k in KS:
        METRICS.add(f"{_direction}_recall_at_{_k}", RetrievalMetric(
            MetricSpec(f"{_direction}_recall_at_{_k}", f"{ARROWS[_direction]} R@{_k}", chance="random_ranking_recall"),
            _direction,
            lambda similarity, relevant, k=_k: (relevant_ranks(similarity, relevant) <= k).astype(np.float64), "mean",
            lambda similarity, relevant, k=_k: recall_chance(similarity, relevant, k)))
    METRICS.add(f"{_direction}_median_rank", RetrievalMetric(
        MetricSpec(f"{_direction}_median_rank", f"{ARROWS[_direction]} median rank", low=1.0, high=math.inf,
                   higher_is_better=False, scale=1.0, chance="random_ranking_rank"),
        _direction, lambda similarity, relevant: relevant_ranks(similarity, relevant).astype(np.float64), "median",
        median_rank_chance))
for _k in KS:
    METRICS.add(f"precision_at_{_k}", RetrievalMetric(
        MetricSpec(f"precision_at_{_k}", f"P@{_k}", chance="random_ranking_precision"), "i2t",
        lambda similarity, relevant, k=_k: precision_at_k(similarity, relevant, k), "mean",
        lambda similarity, relevant, k=_k: precision_chance(similarity, relevant, k)))


@dataclass(frozen=True)
class RetrievalScheme:
    """What one dataset's retrieval test set is scored on."""

    dataset: str
    primary: str  # a key of METRICS: the board's number
    secondary: tuple[str, ...]
    why: str  # why this headline
    # The groups are these classes (one per image): the images' labels are the split's ground truth, pinned
    # with the classification digest (module docstring). Empty: groups are free (MIMIC-CXR's report groups).
    classes: tuple[str, ...] = ()

    @property
    def metric_names(self) -> tuple[str, ...]:
        return (self.primary, *self.secondary)

    @property
    def directions(self) -> set[str]:
        return {METRICS.get(name).direction for name in self.metric_names}


RETRIEVAL_SCHEMES: Registry[RetrievalScheme] = Registry("retrieval dataset")
RETRIEVAL_SCHEMES.add("mimic", RetrievalScheme(
    "mimic", "i2t_recall_at_5",
    ("i2t_recall_at_1", "i2t_recall_at_10", "t2i_recall_at_1", "t2i_recall_at_5", "t2i_recall_at_10",
     "i2t_median_rank", "t2i_median_rank"),
    why="image→report is the use the reports serve (find the report of an image); on a gallery of thousands of "
        "reports Recall@1 sits near its floor for most models and Recall@10 is more lenient, so @5 separates them best"))
RETRIEVAL_SCHEMES.add("chexpert", RetrievalScheme(
    "chexpert", "precision_at_5", ("precision_at_1", "precision_at_10"),
    why="GLoRIA's first column for CheXpert 5x200 image→text retrieval; @1 hangs on one sentence, @10 spans a "
        "whole class of the text pool",
    classes=COMPETITION_TASKS))


# ------------------------------------------------------------------------------ files

def write_predictions(path: Path, image_ids: Sequence[str], text_ids: Sequence[str], similarity: np.ndarray) -> Path:
    """The prediction file: ``similarity`` [n, m] of ``image_ids`` against ``text_ids``, as given (float32 stays float32)."""
    np.savez_compressed(path, image_ids=np.asarray(list(image_ids), dtype=str), text_ids=np.asarray(list(text_ids), dtype=str),
                        similarity=np.asarray(similarity))
    return Path(path)


def write_targets(path: Path, image_ids: Sequence[str], image_groups: Sequence[str], text_ids: Sequence[str],
                  text_groups: Sequence[str]) -> Path:
    """The targets file: one row per image, then one per text, with its relevance group."""
    frame = pd.DataFrame({"id": [*image_ids, *text_ids], "side": ["image"] * len(image_ids) + ["text"] * len(text_ids),
                          "group": [*image_groups, *text_groups]})
    frame.to_csv(path, index=False)
    return Path(path)


@dataclass(frozen=True)
class Targets:
    image_ids: tuple[str, ...]
    image_groups: tuple[str, ...]
    text_ids: tuple[str, ...]
    text_groups: tuple[str, ...]

    @cached_property
    def digest(self) -> str:
        """sha256 of the relevance structure in sorted order (a scheme with ``classes`` pins :meth:`class_digest`)."""
        lines = sorted(f"{side}\t{item}\t{group}" for side, ids, groups in (("image", self.image_ids, self.image_groups),
                                                                          ("text", self.text_ids, self.text_groups))
                       for item, group in zip(ids, groups))
        return hashlib.sha256("".join(f"{line}\n" for line in lines).encode()).hexdigest()

    def class_digest(self, classes: tuple[str, ...], path: Path) -> str:
        """The classification digest of the images' one-hot labels over ``classes`` (their groups)."""
        unknown = sorted(set(self.image_groups) - set(classes))
        if unknown:
            raise RetrievalFileError(f"{path}: image group(s) {unknown} are not classes of this dataset {list(classes)}")
        column = {name: k for k, name in enumerate(classes)}
        one_hot = np.eye(len(classes), dtype=np.int64)[[column[group] for group in self.image_groups]]
        return labels_digest(pd.DataFrame(one_hot, index=pd.Index(self.image_ids), columns=list(classes)))

    @cached_property
    def relevant(self) -> np.ndarray:
        """[n images, m texts] bool: same group."""
        codes, _ = pd.factorize(pd.Series([*self.image_groups, *self.text_groups], dtype=object))
        images, texts = codes[:len(self.image_groups)], codes[len(self.image_groups):]
        return images[:, None] == texts[None, :]


def read_targets(path: Path, directions: set[str] | None = None) -> Targets:
    """The targets file, validated (columns, sides, unique IDs, a relevant item for every query of ``directions``)."""
    path = Path(path)
    if not path.is_file():
        raise RetrievalFileError(f"{path}: targets file not found")
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            columns = next(csv.reader(handle), [])
        ragged = too_many_fields(path)
        if ragged:
            raise RetrievalFileError(f"{path} {ragged}; write one value per column")
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, csv.Error) as error:
        raise RetrievalFileError(f"{path}: not a readable CSV targets file ({error})") from None
    if list(columns) != list(TARGET_COLUMNS):
        raise RetrievalFileError(f"{path}: the header is {','.join(columns)}; a retrieval targets file has {','.join(TARGET_COLUMNS)}")
    for column in TARGET_COLUMNS:
        empty = np.flatnonzero(frame[column].str.strip() == "")
        if len(empty):
            raise RetrievalFileError(f"{path}: empty {column} on line {int(empty[0]) + 2}")
    wrong = np.flatnonzero(~frame["side"].isin(SIDES))
    if len(wrong):
        raise RetrievalFileError(f"{path}: side {frame['side'].iloc[wrong[0]]!r} on line {int(wrong[0]) + 2}; one of {list(SIDES)}")
    parts = {side: frame[frame["side"] == side] for side in SIDES}
    for side, part in parts.items():
        if part.empty:
            raise RetrievalFileError(f"{path}: no {side} rows; a retrieval targets file lists the test images and the texts")
        repeated = part["id"][part["id"].duplicated()].tolist()
        if repeated:
            raise RetrievalFileError(f"{path}: {len(repeated)} duplicated {side} id(s), e.g. {repeated[:3]}")
    targets = Targets(tuple(parts["image"]["id"]), tuple(parts["image"]["group"]), tuple(parts["text"]["id"]),
                      tuple(parts["text"]["group"]))
    needs = {"i2t": ("image", targets.image_ids, targets.image_groups, set(targets.text_groups), "text"),
             "t2i": ("text", targets.text_ids, targets.text_groups, set(targets.image_groups), "image")}
    for direction in sorted(directions or ()):
        side, ids, groups, other, other_side = needs[direction]
        lonely = [item for item, group in zip(ids, groups) if group not in other]
        if lonely:
            raise RetrievalFileError(f"{path}: {len(lonely)} {side}(s) without a relevant {other_side} (no {other_side} "
                                     f"of the same group), e.g. {lonely[:3]}")
    return targets


def read_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """(image IDs, text IDs, similarity [n, m] as float64), validated."""
    path = Path(path)
    if not path.is_file():
        raise RetrievalFileError(f"{path}: predictions file not found")
    if not zipfile.is_zipfile(path):  # np.load would read on as a .npy or a pickle
        raise RetrievalFileError(f"{path}: not an NPZ predictions file (the zip of .npy arrays numpy.savez writes, "
                                 f"with {', '.join(PREDICTION_ARRAYS)})")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in PREDICTION_ARRAYS if key not in data.files]
            if missing:
                raise RetrievalFileError(f"{path}: no array(s) {missing} in this predictions file (it holds {sorted(data.files)})")
            image_ids = unique_string_ids(data["image_ids"], path, "image_ids", "image_id", RetrievalFileError)
            text_ids = unique_string_ids(data["text_ids"], path, "text_ids", "text_id", RetrievalFileError)
            similarity = data["similarity"]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:  # ValueError: a pickled (object) array
        raise RetrievalFileError(f"{path}: not a readable NPZ predictions file of plain arrays ({error})") from None
    if similarity.shape != (len(image_ids), len(text_ids)) or similarity.dtype.kind not in "fiu":
        raise RetrievalFileError(f"{path}: similarity must be a real [image_ids, text_ids] = [{len(image_ids)}, {len(text_ids)}] "
                                 f"array, got {similarity.dtype} {similarity.shape}")
    similarity = similarity.astype(np.float64)
    bad = np.argwhere(~np.isfinite(similarity))
    if len(bad):
        row, column = (int(i) for i in bad[0])
        raise RetrievalFileError(f"{path}: {len(bad)} non-finite similarity value(s), first for image {image_ids[row]!r} "
                                 f"and text {text_ids[column]!r}")
    return image_ids, text_ids, similarity


def _order(found: Sequence[str], wanted: Sequence[str], side: str, path: Path) -> np.ndarray:
    """Positions in ``found`` of the ``wanted`` IDs; missing or extra IDs are an error."""
    position = {item: row for row, item in enumerate(found)}
    missing = [item for item in wanted if item not in position]
    extra = sorted(set(found) - set(wanted))
    if missing or extra:
        problems = ([f"{len(missing)} test {side} id(s) missing, e.g. {missing[:3]}"] if missing else []) + (
            [f"{len(extra)} {side} id(s) not in the targets, e.g. {extra[:3]}"] if extra else [])
        raise RetrievalFileError(f"{path}: {'; '.join(problems)}; score exactly the targets' {side}s")
    return np.array([position[item] for item in wanted], dtype=np.int64)


def truth_digest(targets: Targets, scheme: RetrievalScheme, path: Path) -> str:
    """The digest a board pins and paired runs must share (module docstring)."""
    return targets.class_digest(scheme.classes, path) if scheme.classes else targets.digest


@dataclass(frozen=True)
class RetrievalProblem:
    """A prediction file aligned to its targets: similarity [n images, m texts] in the targets' order."""

    targets: Targets
    similarity: np.ndarray
    digest: str  # truth_digest of the targets

    def queries(self, direction: str) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
        """(query IDs, similarity [q, c], relevance [q, c]) of ``direction``."""
        if direction == "i2t":
            return self.targets.image_ids, self.similarity, self.targets.relevant
        return self.targets.text_ids, self.similarity.T, self.targets.relevant.T

    def per_query(self, metric: str) -> tuple[tuple[str, ...], np.ndarray]:
        """(query IDs, the metric's per-query statistic)."""
        definition = METRICS.get(metric)
        ids, similarity, relevant = self.queries(definition.direction)
        return ids, definition.per_query(similarity, relevant)


def read_problem(predictions: Path, targets: Path, scheme: RetrievalScheme) -> RetrievalProblem:
    truth = read_targets(targets, scheme.directions)
    image_ids, text_ids, similarity = read_predictions(predictions)
    rows = _order(image_ids, truth.image_ids, "image", Path(predictions))
    columns = _order(text_ids, truth.text_ids, "text", Path(predictions))
    return RetrievalProblem(truth, similarity[np.ix_(rows, columns)], truth_digest(truth, scheme, Path(targets)))


def scheme_of(dataset: str | None) -> RetrievalScheme:
    if dataset is None:
        raise RetrievalFileError(f"retrieval files are scored per dataset: name one of {RETRIEVAL_SCHEMES.names()} (--dataset)")
    return RETRIEVAL_SCHEMES.get(dataset)


def precision_warnings(targets: Targets, metrics: Sequence[str]) -> list[str]:
    """A precision@K that some images cannot reach (their group has fewer than K texts) is said, not hidden."""
    counts = pd.Series(targets.text_groups).value_counts()
    notes = []
    for name in metrics:
        if name.startswith("precision_at_"):
            k = int(name.rsplit("_", 1)[1])
            short = sorted(group for group in set(targets.image_groups) if counts.get(group, 0) < k)
            if short:
                notes.append(f"{name}: group(s) {short} have fewer than {k} texts; their images cannot reach 1")
    return notes


class RetrievalScorer:
    """The scorer of similarity files (formats and metrics: this module's docstring)."""

    metrics = {name: metric.spec for name, metric in METRICS.items()}

    def headline(self, dataset: str) -> str:
        return RETRIEVAL_SCHEMES.get(dataset).primary

    def score_files(self, predictions: Path, targets: Path, dataset: str | None,
                    options: BootstrapOptions = BootstrapOptions()) -> ScoreReport:
        scheme = scheme_of(dataset)
        problem = read_problem(predictions, targets, scheme)
        metrics = {}
        for name in scheme.metric_names:
            _, values = problem.per_query(name)
            exact, weighted = REDUCERS[METRICS.get(name).reduce]
            interval = bootstrap_ci_weighted(lambda weights, v=values, f=weighted: f(v, weights), len(values), options)
            metrics[name] = ScoredMetric(replace(interval, value=exact(values)))
        return ScoreReport(task="retrieval", dataset=scheme.dataset, primary_metric=scheme.primary,
                           n_images=len(problem.targets.image_ids), metrics=metrics,
                           warnings=tuple(precision_warnings(problem.targets, scheme.metric_names)),
                           predictions=str(predictions), targets=str(targets))

    def per_image(self, predictions: Path, targets: Path, dataset: str | None, metric: str) -> PerImageRun:
        """Per-query statistics of ``metric``; its IDs are the queries of its direction (texts for text→image)."""
        scheme = scheme_of(dataset)
        if metric not in scheme.metric_names:
            raise RetrievalFileError(f"{dataset} is not scored on {metric!r}; its metrics are {list(scheme.metric_names)}")
        problem = read_problem(predictions, targets, scheme)
        ids, values = problem.per_query(metric)
        weighted = REDUCERS[METRICS.get(metric).reduce][1]
        return PerImageRun(tuple(ids), problem.digest, lambda weights: weighted(values, weights))

    def chance(self, predictions: Path, targets: Path, dataset: str | None, metric: str) -> ChanceResult:
        """``metric`` of these files against a random ranking of each query's candidates (module docstring)."""
        scheme = scheme_of(dataset)
        if metric not in scheme.metric_names:
            raise RetrievalFileError(f"{dataset} is not scored on {metric!r}; its metrics are {list(scheme.metric_names)}")
        definition = METRICS.get(metric)  # every retrieval metric declares a null and its test
        _, similarity, relevant = read_problem(predictions, targets, scheme).queries(definition.direction)
        return definition.chance(similarity, relevant)

    def target_set(self, targets: Path, dataset: str | None) -> TargetSet:
        scheme = scheme_of(dataset)
        return TargetSet(truth_digest(read_targets(targets, scheme.directions), scheme, Path(targets)))


SCORERS.add("retrieval", RetrievalScorer())
