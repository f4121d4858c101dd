"""Chance in the rendered board: Table 3's chance line (``PublishedTable.chance``) and the dot-and-whisker plots of
the tasks a board plans at one label fraction only.

The board is a copy of the demo board's protocol (zero-shot and retrieval at a nominal 100 %, classification at
1/10/100 %) with hand-written zero-shot runs: ``clip_like`` predicts COVIDx and RSNA well, ``blind`` ignores the
images, ``f1_headline`` reports macro-F1 as its COVIDx headline (a metric that declares no chance null: the stand-in
``test_chance_command`` uses for a headline without a test), ``gone`` loses its prediction file after the board is
read. ``clip_like`` also has one RSNA linear-classification run (Table 1 declares no chance: no line there).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.board import compare, render
from benchmark.board.compare import chance_of_cell
from benchmark.board.render import (CHANCE_LABEL, BoardView, board_tables, build_table, chance_text,
                                    data_efficiency_figures, render_board, to_html, to_latex, to_markdown)
from benchmark.board.store import Board, BoardEntry, copy_board_protocol, default_board
from benchmark.published import TABLE_1, TABLE_3
from benchmark.records import CellIdentity, MetricValue, RunRecord
from benchmark.scoring import record_target_set
from benchmark.scoring.chance import p_text
from benchmark.scoring.classification import SCHEMES, write_predictions, write_targets

N = 90  # test images: COVIDx 30 per class, RSNA half positive
SHAS = {"clip_like": "a" * 64, "blind": "b" * 64, "f1_headline": "c" * 64, "gone": "d" * 64}


def _add_run(board: Board, name: str, task: str, dataset: str, targets: np.ndarray, scores: np.ndarray, value: float,
             headline: str, fraction: int = 100, mode: str = "direct", head: str = "prompts") -> None:
    """One run record of ``name`` with files in the classification formats (which zero-shot shares)."""
    identity = CellIdentity(board.name, name, SHAS[name], task, dataset, "classification", head, fraction, 0, 0, mode)
    work = board.root.parent / "work" / f"{name}-{task}-{dataset}"
    work.mkdir(parents=True)
    scheme, ids = SCHEMES.get(dataset), [f"p{k:03d}" for k in range(len(targets))]
    write_predictions(work / "p.csv", ids, scores, scheme)
    write_targets(work / "t.csv", ids, targets, scheme)
    board.add(RunRecord(
        identity=identity, protocol_version=board.protocol.protocol_version, scorer=task,
        metrics={headline: MetricValue(value, bootstrap_se=0.03)}, headline_metric=headline,
        predictions=board.store_artifact(identity, "predictions", work / "p.csv"),
        targets=board.store_artifact(identity, "targets", work / "t.csv"),
        target_set=record_target_set(task, work / "t.csv", dataset, "classification"),
        timings={"total": 1.0}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={},
        provenance={"code": {"commit": "abc", "dirty": False}}, created="2026-01-01T00:00:00+00:00",
    ))


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Board:
    board = copy_board_protocol(Board(default_board(demo=True)), tmp_path_factory.mktemp("boards") / "chance-render",
                                "chance-render")
    for name, sha in SHAS.items():
        board.register_entry(BoardEntry(name, sha, "resnet18", "reference", [], "test entry", "random", "2026-01-01"))
    rng = np.random.default_rng(7)
    covidx = np.eye(3, dtype=int)[np.arange(N) % 3]
    rsna = np.tile([0, 1], N // 2)[:, None]
    for name, skill in (("clip_like", 1.5), ("blind", 0.0), ("gone", 1.0)):
        scores = covidx * skill + rng.normal(size=covidx.shape)
        accuracy = float(np.mean(scores.argmax(1) == covidx.argmax(1)))
        _add_run(board, name, "zeroshot", "covidx", covidx, scores, accuracy, "accuracy")
        scores = rsna * skill + rng.normal(size=rsna.shape)
        _add_run(board, name, "zeroshot", "rsna", rsna, scores, roc_auc_score(rsna[:, 0], scores[:, 0]), "auroc")
    _add_run(board, "f1_headline", "zeroshot", "covidx", covidx, covidx + rng.normal(size=covidx.shape), 0.6, "macro_f1")
    scores = rsna * 2.0 + rng.normal(size=rsna.shape)
    _add_run(board, "clip_like", "classification", "rsna", rsna, scores, roc_auc_score(rsna[:, 0], scores[:, 0]), "auroc",
             mode="cached", head="linear")
    return board


@pytest.fixture
def view(board: Board) -> BoardView:
    """The board as rendering reads it, with ``gone``'s zero-shot prediction files removed after the read (a copy kept
    to put back): its runs are shown, but nothing can test them against chance."""
    view = BoardView.load(board)
    compare._chance.cache_clear()  # a test run earlier may have tested gone's files while they were there
    moved = []
    for record in view.records:
        if record.identity.entry_key.startswith("gone@"):
            path = board.artifact_file(record.predictions)
            moved.append((path, path.read_bytes()))
            path.unlink()
    yield view
    for path, content in moved:
        path.write_bytes(content)


def _cell(view: BoardView, entry: str, task: str, dataset: str):
    [cell] = [c for c in view.cells if c.entry.startswith(f"{entry}@") and (c.task, c.dataset) == (task, dataset)]
    return cell


def _table3(board: Board):
    return {spec.table.key: spec for spec in board_tables(board.protocol)}["table3"]


def test_table_3_declares_chance_and_table_1_does_not() -> None:
    assert TABLE_3.chance and not TABLE_1.chance


def test_table_3_carries_the_chance_level_and_p_that_chance_of_cell_gives(board: Board, view: BoardView) -> None:
    spec = _table3(board)
    model = build_table(view, spec)
    markdown = to_markdown(model)
    covidx = view.board.protocol.metric("zeroshot", "covidx")
    for entry in ("clip_like", "blind"):
        cell = _cell(view, entry, "zeroshot", "covidx")
        result = chance_of_cell(board, view.records, cell)
        # the chance level is sum_k q_k pi_k of the entry's own predictions (classes balanced here: 1/3)
        assert result.chance == pytest.approx(1 / 3)
        line = f"chance {100 * result.chance:.1f} · p {p_text(result.p_value)}"
        assert chance_text(covidx, result) == line == "chance 33.3 · p " + p_text(result.p_value)
        row = re.search(rf"^\| {entry} \| this board \|.*$", markdown, re.M).group(0)
        assert f"{100 * cell.mean:.1f}" in row and f"[{100 * cell.ci_low:.1f}, {100 * cell.ci_high:.1f}] n=1; {line} |" in row, row
    strong = chance_of_cell(board, view.records, _cell(view, "clip_like", "zeroshot", "covidx"))
    assert strong.p_value == pytest.approx(1 / 20001)  # no permutation of 20,000 as accurate: the smallest p
    rsna = chance_of_cell(board, view.records, _cell(view, "clip_like", "zeroshot", "rsna"))
    assert rsna.chance == 0.5 and f"; chance 50.0 · p {p_text(rsna.p_value)}" in markdown
    assert "chance C · p P with a board number" in markdown and "not adjusted for the table's several columns" in markdown
    assert "`python -m benchmark chance ENTRY` gives the p-values adjusted over an entry's columns (holm correction)" in markdown

    # the same line in LaTeX (under the number) and HTML (a second grey line, as the interval)
    tex, page = to_latex(model), to_html(model)
    assert rf"{{\scriptsize chance 33.3 $\cdot$ p {p_text(strong.p_value)}}}\end{{tabular}}" in tex
    assert f'<span class="ci chance">chance 33.3 · p {p_text(strong.p_value)}</span>' in page


def test_no_chance_line_without_a_null_without_files_or_in_a_table_that_does_not_declare_it(
        board: Board, view: BoardView) -> None:
    model = build_table(view, _table3(board))
    rows = {row.label: row for row in model.rows}
    headers = [column.header for column in model.spec.columns]
    covidx, rsna = headers.index("COVIDx zero-shot ACC 100%"), headers.index("RSNA zero-shot AUROC 100%")
    assert rows["clip_like"].cells[covidx].chance and rows["clip_like"].cells[rsna].chance
    # macro-F1 declares no chance null: the number and its interval, nothing more (and the render did not fail)
    f1 = rows["f1_headline"].cells[covidx]
    assert f1.text and f1.detail and f1.chance == ""
    # the runs' files cannot be read: nothing more either
    assert rows["gone"].cells[covidx].text and rows["gone"].cells[covidx].chance == "" == rows["gone"].cells[rsna].chance
    assert re.search(r"^\| f1_headline \| this board \|  \|  \| [\d.]+\S* \[[\d.]+, [\d.]+\] n=1 \|  \|  \|$",
                     to_markdown(model), re.M)
    # Table 1 declares no chance: an RSNA AUROC (a metric with a null) shows none
    table1 = build_table(view, {spec.table.key: spec for spec in board_tables(board.protocol)}["table1"])
    assert any(cell.text for row in table1.rows if row.kind == "board" for cell in row.cells)
    assert not any(cell.chance for row in table1.rows for cell in row.cells)
    assert "chance C · p P" not in to_markdown(table1)


def test_a_one_fraction_slot_is_a_dot_and_whisker_chart_with_the_entries_values_and_chance(
        board: Board, view: BoardView) -> None:
    figures = data_efficiency_figures(view)
    spec = view.board.protocol.metric("zeroshot", "covidx")
    axis = figures["zeroshot-covidx"].axes[0]
    assert axis.get_xlabel().startswith("ACC (%)") and "training labels" not in axis.get_xlabel()
    labels = [tick.get_text() for tick in axis.get_yticklabels()]
    assert labels == ["blind", "clip_like", "f1_headline", "gone"]  # the tables' order, one row each
    for row, entry in enumerate(labels):
        cell = _cell(view, entry, "zeroshot", "covidx")
        [bars] = [c for c in axis.containers if c.get_label() == entry]
        dot, _, (whisker,) = bars.lines
        assert list(dot.get_xdata()) == pytest.approx([spec.shown(cell.mean)]) and list(dot.get_ydata()) == [row]
        [[(low, y0), (high, y1)]] = [segment.tolist() for segment in whisker.get_segments()]
        assert (low, high) == pytest.approx((spec.shown(cell.ci_low), spec.shown(cell.ci_high))) and y0 == y1 == row
    [marks] = [line for line in axis.get_lines() if line.get_label() == CHANCE_LABEL]
    expected = {row: spec.shown(chance_of_cell(board, view.records, _cell(view, entry, "zeroshot", "covidx")).chance)
                for row, entry in enumerate(labels) if entry in ("blind", "clip_like")}  # no null / no files: no mark
    assert dict(zip(marks.get_ydata(), marks.get_xdata())) == pytest.approx(expected)
    assert [text.get_text() for text in axis.get_legend().get_texts()] == [CHANCE_LABEL]
    # a task run at several fractions keeps its curve against the label fraction
    assert figures["classification-rsna"].axes[0].get_xlabel() == "training labels"
    assert {"zeroshot-rsna", "zeroshot-covidx", "classification-rsna"} == set(figures)


def test_the_page_puts_one_fraction_charts_in_their_own_section_and_computes_each_chance_once(
        board: Board, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []

    def counted(board_, records, cell):
        calls.append((cell.entry, cell.column))
        return chance_of_cell(board_, records, cell)

    monkeypatch.setattr(render, "chance_of_cell", counted)
    result = render_board(board, out=tmp_path / "rendered")
    assert len(calls) == len(set(calls)) == 7  # the zero-shot cells, shared by Table 3 and the plots
    assert {column[0] for _, column in calls} == {"zeroshot"}  # Table 1's and the curve's cells are never tested
    page = (tmp_path / "rendered" / "index.html").read_text()
    curves, dots = page.split("<h2>Data efficiency</h2>")[1].split("<h2>Tasks run at one label fraction</h2>")
    assert "against the fraction of training labels" in curves and curves.count("<svg") == 1
    assert "one row per entry" in dots and dots.split("<h2>Paired comparisons</h2>")[0].count("<svg") == 2
    table3 = next(model for model in result.models if model.spec.table.key == "table3")
    assert "chance 33.3 · p" in (tmp_path / "rendered" / "table3.md").read_text()
    assert r"$\cdot$ p" in (tmp_path / "rendered" / "table3.tex").read_text()
    assert any(note.startswith("chance C · p P") for note in table3.notes)
    rerendered = tmp_path / "again"
    render_board(board, out=rerendered)
    for name in ("index.html", "table3.md", "table3.tex", "plots/zeroshot-covidx.svg"):
        assert (rerendered / name).read_bytes() == (tmp_path / "rendered" / name).read_bytes(), name
