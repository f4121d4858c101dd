"""``chance``: an entry's columns against chance, and ``--expect-better`` as an exit status.

``--expect-better`` passes only when every column the selection names has runs of the entry whose
metric declares a chance null, with a value above chance and the adjusted p below alpha: each way
of failing has a test here (toy board: binary AUROC by the Mann-Whitney test; a demo-board copy
for a value below chance, a metric without a null, and a headline without a test whose runs report
a secondary metric with one, which is named; the demo board's retrieval columns, tested against a
random ranking).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import toy_task
from benchmark.board.store import Board, BoardEntry, copy_board_protocol, default_board
from benchmark.cli import main
from benchmark.records import CellIdentity, MetricValue, RunRecord
from benchmark.scoring import record_target_set
from benchmark.scoring import retrieval
from benchmark.scoring.classification import SCHEMES, write_predictions, write_targets
from benchmark.scoring.compare import holm

RESNET, VIT = "random_resnet18", "random_vit_tiny"


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both backbones at 10 % (two draws) and 100 %; the ResNet alone at 1 %."""
    root = tmp_path_factory.mktemp("chance")
    data = toy_task.write_toy_dataset(root / "data")
    board = toy_task.write_toy_board(root / "boards", draws=(0, 1))
    for backbones, fractions in ((f"{RESNET},{VIT}", "10,100"), (RESNET, "1")):
        assert main(["run", "--backbone", backbones, "--board", str(board), "--data", str(data), "--work-dir",
                     str(root / "work"), "--no-progress", "--fractions", fractions, "--in-process"]) == 0
    return board


def _table(output: str) -> dict[str, tuple[float, float, float, float]]:
    """column -> (value, chance, p, adjusted p) from the printed table."""
    rows = re.findall(r"^(\S+ \d+%)\s+\S+\s+([\d.]+)\s+([\d.]+)\s+Mann-Whitney U\s+(\S+)\s+(\S+)  ", output, re.M)
    return {column: tuple(map(float, numbers)) for column, *numbers in rows}


def test_each_column_is_tested_and_corrected_and_expect_better_passes(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chance", RESNET, "--board", str(board), "--expect-better"]) == 0
    output = capsys.readouterr().out
    table = _table(output)
    assert list(table) == ["toy/rsna 1%", "toy/rsna 10%", "toy/rsna 100%"], output
    assert all(chance == 50.0 and value > 50.0 for value, chance, _, _ in table.values())
    p_values = [p for _, _, p, _ in table.values()]
    assert [adjusted for *_, adjusted in table.values()] == pytest.approx(holm(p_values), rel=2e-3)  # printed to 3 digits
    assert "holm correction over 3 columns" in output and "(n=2 runs)" in output  # 1 % and 10 %: two draws
    assert "beats chance on all 3 columns selected" in output


def test_a_column_without_runs_fails_expect_better_and_is_named(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chance", VIT, "--board", str(board), "--expect-better"]) == 1
    output = capsys.readouterr().out
    assert list(_table(output)) == ["toy/rsna 10%", "toy/rsna 100%"]
    assert "does not beat chance on 1 of the 3 columns selected" in output and "  toy/rsna 1%: missing: the entry has no runs" in output
    assert main(["chance", VIT, "--board", str(board), "--fractions", "10,100", "--expect-better"]) == 0
    capsys.readouterr()


def test_an_adjusted_p_above_alpha_fails_expect_better(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["chance", VIT, "--board", str(board), "--fractions", "10,100"])
    adjusted = {column: p for column, (*_, p) in _table(capsys.readouterr().out).items()}
    alpha = min(adjusted.values()) / 2
    assert main(["chance", VIT, "--board", str(board), "--fractions", "10,100", "--expect-better", "--alpha", f"{alpha:g}"]) == 1
    output = capsys.readouterr().out
    assert all(f"{column}: adjusted p {p:.3g} is not below alpha {alpha:g}" in output for column, p in adjusted.items()), output


def test_an_unknown_entry_or_selection_is_one_error_line(board: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for arguments, message in ((["nope"], "entry 'nope' is not on this board"),
                               ([RESNET, "--tasks", "retrieval"], "task 'retrieval' is not on board 'toy-board'")):
        assert main(["chance", *arguments, "--board", str(board)]) == 2
        error = capsys.readouterr().err.strip()
        assert error.count("\n") == 0 and message in error, error


def _add_run(board: Board, name: str, sha: str, dataset: str, targets: np.ndarray, scores: np.ndarray,
             headline: str = "auroc", metrics: tuple[str, ...] = ("auroc",)) -> None:
    """One classification run record at 1 %, draw 0, with the given targets and scores (files in the
    dataset's formats) and ``metrics`` reported, ``headline`` the one the board shows."""
    identity = CellIdentity(board.name, name, sha, "classification", dataset, "classification", "linear", 1, 0, 0, "cached")
    work = board.root.parent / "work"
    work.mkdir(exist_ok=True)
    scheme, ids = SCHEMES.get(dataset), [f"p{k:03d}" for k in range(len(targets))]
    write_predictions(work / "p.csv", ids, scores, scheme)
    write_targets(work / "t.csv", ids, targets, scheme)
    board.add(RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, scorer="classification",
        metrics={metric: MetricValue(0.5, bootstrap_se=0.03) for metric in metrics}, headline_metric=headline,
        predictions=board.store_artifact(identity, "predictions", work / "p.csv"),
        targets=board.store_artifact(identity, "targets", work / "t.csv"),
        target_set=record_target_set("classification", work / "t.csv", dataset, "classification"),
        timings={"total": 1.0}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={},
        provenance={"code": {"commit": "abc", "dirty": False}}, created="2026-01-01T00:00:00+00:00",
    ))


@pytest.fixture
def demo_copy(tmp_path: Path) -> tuple[Board, str]:
    """A copy of the demo board's protocol with one entry, "reversed", and no runs."""
    board = copy_board_protocol(Board(default_board(demo=True)), tmp_path / "boards" / "chance-test", "chance-test")
    sha = "d" * 64
    board.register_entry(BoardEntry("reversed", sha, "resnet18", "reference", [], "test entry", "random", "2026-01-01"))
    return board, sha


def test_below_chance_and_no_declared_null_fail_expect_better(demo_copy: tuple[Board, str], capsys: pytest.CaptureFixture[str]) -> None:
    board, sha = demo_copy
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 40)
    _add_run(board, "reversed", sha, "rsna", y[:, None], (-(y - 0.5) + rng.normal(size=80))[:, None])
    labels = np.eye(5, dtype=int)[np.arange(80) % 5]
    _add_run(board, "reversed", sha, "chexpert", labels, labels + rng.normal(size=(80, 5)))
    assert main(["chance", "reversed", "--board", str(board.root), "--tasks", "classification", "--datasets", "rsna,chexpert",
                 "--fractions", "1", "--expect-better"]) == 1
    output = capsys.readouterr().out
    assert "  classification/rsna 1%: not above chance" in output, output
    assert ("classification/chexpert 1%: no chance test of the headline auroc: chexpert: a macro AUROC over 5 classes"
            in output), output
    assert "its runs also report" not in output  # CheXpert reports no other metric
    assert "does not beat chance on 2 of the 2 columns selected" in output


def test_a_headline_without_a_test_names_the_secondary_metric_that_has_one(demo_copy: tuple[Board, str],
                                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """No shipped scheme has a headline without a chance test beside a secondary metric with one; a COVIDx
    record whose headline is balanced accuracy (no declared null) stands in: its accuracy has a test, its
    3-class macro AUROC has none."""
    board, sha = demo_copy
    labels = np.eye(3, dtype=int)[np.arange(60) % 3]
    _add_run(board, "reversed", sha, "covidx", labels, labels + 0.1, headline="balanced_accuracy",
             metrics=("balanced_accuracy", "accuracy", "auroc"))
    assert main(["chance", "reversed", "--board", str(board.root), "--tasks", "classification", "--datasets", "covidx",
                 "--fractions", "1", "--expect-better"]) == 1
    output = capsys.readouterr().out
    assert ("classification/covidx 1%: no chance test of the headline balanced_accuracy: scorer 'classification' declares "
            "no chance null for 'balanced_accuracy' (MetricSpec.chance); its runs also report accuracy, which has a chance "
            "test (not run: this verb tests the headline balanced_accuracy, the number the board shows)") in output, output
    assert "holm correction over 0 columns" in output and "does not beat chance on 1 of the 1 columns selected" in output


def _add_retrieval_run(board: Board, name: str, sha: str, dataset: str, partition: str, image_groups: list[str],
                       text_groups: list[str], similarity: np.ndarray) -> None:
    """One retrieval run record (files in the scorer's formats) of ``similarity`` between images and texts of the
    given relevance groups."""
    identity = CellIdentity(board.name, name, sha, "retrieval", dataset, partition, "similarity", 100, 0, 0, "direct")
    work = board.root.parent / "work" / dataset
    work.mkdir(parents=True)
    images, texts = [f"i{k:03d}" for k in range(len(image_groups))], [f"t{k:03d}" for k in range(len(text_groups))]
    predictions = retrieval.write_predictions(work / "p.npz", images, texts, similarity)
    targets = retrieval.write_targets(work / "t.csv", images, image_groups, texts, text_groups)
    headline = retrieval.RETRIEVAL_SCHEMES.get(dataset).primary
    board.add(RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, scorer="retrieval",
        metrics={headline: MetricValue(0.5, bootstrap_se=0.03)}, headline_metric=headline,
        predictions=board.store_artifact(identity, "predictions", predictions, large=True),
        targets=board.store_artifact(identity, "targets", targets),
        target_set=record_target_set("retrieval", targets, dataset, partition),
        timings={"total": 1.0}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={},
        provenance={"code": {"commit": "abc", "dirty": False}}, created="2026-01-01T00:00:00+00:00",
    ))


def test_both_retrieval_columns_are_tested_against_a_random_ranking(demo_copy: tuple[Board, str], tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """MIMIC-CXR image->report R@5 by the exact binomial test, CheXpert 5x200 P@5 by the exact hypergeometric sum."""
    monkeypatch.setenv("MGCA_BENCH_ARTIFACTS", str(tmp_path / "artifacts"))
    board, sha = demo_copy
    rng = np.random.default_rng(0)
    studies = [f"s{k}" for k in range(40)]  # each study's image against its own report among 40: R@5 chance 5/40
    _add_retrieval_run(board, "reversed", sha, "mimic", "pretraining", studies, studies, np.eye(40) + rng.normal(0, 0.3, (40, 40)))
    classes = list(retrieval.RETRIEVAL_SCHEMES.get("chexpert").classes)
    images, texts = [c for c in classes for _ in range(4)], [c for c in classes for _ in range(12)]
    relevant = np.array(images)[:, None] == np.array(texts)[None, :]
    _add_retrieval_run(board, "reversed", sha, "chexpert", "holdout_5x200", images, texts, relevant + rng.normal(0, 0.5, relevant.shape))
    assert main(["chance", "reversed", "--board", str(board.root), "--tasks", "retrieval", "--expect-better"]) == 0
    output = capsys.readouterr().out
    rows = dict(re.findall(r"^(retrieval/\S+ 100%)\s+(\S+)\s+[\d.]+\s+[\d.]+\s+exact .*$", output, re.M))
    assert rows == {"retrieval/mimic 100%": "i2t_recall_at_5", "retrieval/chexpert 100%": "precision_at_5"}, output
    assert "K=5, 40 candidates, 1 relevant" in output and "K=5, 60 candidates, 12 relevant" in output
    assert "beats chance on all 2 columns selected" in output
