"""Tables, plots and the static page from a small board; the page opened in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from benchmark.board.protocol import BoardProtocol
from benchmark.board.render import BoardView, TableSpec, board_tables, build_table, render_board, to_latex, to_markdown
from benchmark.board.store import Board, BoardEntry, copy_board_protocol, default_board
from benchmark.published import TABLES
from benchmark.records import CellIdentity, MetricValue, RunRecord
from benchmark.scoring import record_target_set

DEMO_BOARD = default_board(demo=True)
N_TEST = 120


PREPROCESSING = {"input_size": 224, "channels": 3, "value_range": [0.0, 1.0], "mean": [0.5] * 3, "std": [0.5] * 3, "mode": "model"}


def add_entry(board: Board, name: str, sha: str, skill: float, pretraining: list[str], role: str = "reference",
              geometry: dict | None = None) -> None:
    """Three fractions × two draws of RSNA classification with scores of a given skill."""
    board.register_entry(BoardEntry(name, sha, "resnet18", role, pretraining, "test entry", "random", "2026-01-01",
                                    preprocessing=PREPROCESSING if geometry else None))
    y = np.tile([0, 1], N_TEST // 2)
    ids = [f"p{k:03d}" for k in range(N_TEST)]
    for fraction in (1, 10, 100):
        for draw in ((0,) if fraction == 100 else (0, 1)):
            rng = np.random.default_rng([int(sha[:6], 16), fraction, draw])
            scores = 1 / (1 + np.exp(-(skill * (y - 0.5) * (1 + fraction / 100) + rng.normal(size=N_TEST))))
            identity = CellIdentity(board.name, name, sha, "classification", "rsna", "classification", "linear", fraction, draw, 0, "cached")
            work = board.root.parent / "work"
            work.mkdir(exist_ok=True)
            (work / "p.csv").write_text("id,Target\n" + "".join(f"{i},{s:.8g}\n" for i, s in zip(ids, scores)))
            (work / "t.csv").write_text("id,Target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, y)))
            value = roc_auc_score(y, np.round(scores, 8))
            board.add(RunRecord(
                identity=identity, protocol_version=board.protocol.protocol_version, scorer="classification",
                metrics={"auroc": MetricValue(value, bootstrap_se=0.03)}, headline_metric="auroc",
                predictions=board.store_artifact(identity, "predictions", work / "p.csv"),
                targets=board.store_artifact(identity, "targets", work / "t.csv"),
                target_set=record_target_set("classification", work / "t.csv", "rsna", "classification"),
                timings={"total": 1.0}, config={"geometry": geometry} if geometry else {}, training={}, split_fingerprints={"test": "0" * 64}, backbone={},
                provenance={"code": {"commit": "abc", "dirty": False}}, created="2026-01-01T00:00:00+00:00",
            ))


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory) -> Board:
    folder = tmp_path_factory.mktemp("boards") / "render-test"
    board = copy_board_protocol(Board(DEMO_BOARD), folder, "render-test")
    add_entry(board, "strong", "a" * 64, 3.0, ["mimic-cxr"], geometry={"cache_size": 128, "encoder_input_size": 112})
    add_entry(board, "twin", "b" * 64, 3.0, ["mimic-cxr"])
    add_entry(board, "weak", "c" * 64, 0.3, ["NIH"], role="submission")
    return board


def tables(board: Board) -> tuple[TableSpec, TableSpec]:
    """Table 1 and Table 2 as this board lays them out."""
    by_key = {spec.table.key: spec for spec in board_tables(board.protocol)}
    return by_key["table1"], by_key["table2"]


def test_published_rows_carry_numbers_sources_and_empty_unknown_cells(board: Board) -> None:
    TABLE_1, TABLE_2 = tables(board)
    text = to_markdown(build_table(BoardView.load(board), TABLE_1))
    assert "| MGCA (ResNet-50) | published | **87.6** | 88.0 | **88.2** | **88.6** | 89.1 | 89.9 | 72.0 | **83.5** | 90.5 |" in text
    assert ("| MGCA (ViT-B/16) | published | 88.8 ² | 89.1 ² | 89.7 ² | 88.6 ² | 89.5 ² | 90.0 ² | 74.8 ² | 84.8 ² "
            "| 92.3 ² |") in text  # second-hand numbers: marked, never bold
    assert "| MGCA (ResNet-50), ASG reading | published |  |  |  | 87.6 ² | 88.6 ² | 89.8 ² |" in text
    vit = next(row for row in build_table(BoardView.load(board), TABLE_2).rows if row.label == "MGCA (ViT-B/16)")
    shown = {(column.task, column.dataset, column.fraction): cell.text for column, cell in zip(TABLE_2.columns, vit.cells)}
    assert shown[("segmentation", "siim", 100)] == "69.6 ²"  # the demo board's dense columns are 100 % only
    assert all(text == "" for (task, *_), text in shown.items() if task == "detection")  # no source prints them
    assert "https://arxiv.org/abs/2312.01522" in text and "not read" in text
    assert "?" not in text.split("- Published rows")[0]
    assert "DEMO BOARD" in text  # the copy keeps demo: true


def test_board_rows_bold_best_mark_ties_and_flag_overlaps(board: Board) -> None:
    TABLE_1, _ = tables(board)
    model = build_table(BoardView.load(board), TABLE_1)
    rows = {row.label: row for row in model.rows if row.kind == "board"}
    assert set(rows) == {"strong", "twin", "weak"}
    rsna_1 = [column.header for column in TABLE_1.columns].index("RSNA AUROC 1%")
    best = [label for label, row in rows.items() if row.cells[rsna_1].bold]
    assert len(best) == 1 and best[0] in {"strong", "twin"}
    other = ({"strong", "twin"} - set(best)).pop()
    assert rows[other].cells[rsna_1].tie  # same skill: not significantly worse
    assert not rows["weak"].cells[rsna_1].tie  # far worse on 120 images
    assert rows["weak"].cells[rsna_1].overlap and not rows["strong"].cells[rsna_1].overlap  # NIH ⊃ RSNA images
    assert rows["strong"].cells[rsna_1].text.count("±") == 1 and "n=2" in rows["strong"].cells[rsna_1].detail
    assert rows["strong"].cells[0].text == ""  # no CheXpert results: empty, not zero


def test_the_note_gives_the_declared_input_and_the_size_the_runs_fed(board: Board) -> None:
    TABLE_1, _ = tables(board)
    notes = " ".join(build_table(BoardView.load(board), TABLE_1).notes)
    assert "strong: 224 px, 3 ch, [0, 1], mean 0.5/0.5/0.5, std 0.5/0.5/0.5 (model), fed 112 px in these runs" in notes
    assert "twin: not recorded" in notes and "twin: not recorded (entry written before preprocessing was recorded), fed" not in notes


def test_table_2_is_published_only_until_detection_and_segmentation_run(board: Board) -> None:
    _, TABLE_2 = tables(board)
    text = to_markdown(build_table(BoardView.load(board), TABLE_2))
    assert "No board results for this table yet" in text and "this board" not in text.split("\n- ")[0]
    assert "| MGCA (ResNet-50) | published | **64.2** |" in text  # SIIM Dice 100 %, the demo board's first column


def test_latex_escapes_and_groups_columns(board: Board) -> None:
    TABLE_1, _ = tables(board)
    tex = to_latex(build_table(BoardView.load(board), TABLE_1))
    assert r"\multicolumn{3}{c}{CheXpert AUROC}" in tex and r"1\%" in tex
    assert r"\textbf{87.6}" in tex and r"$\pm$" in tex and r"\begin{tabular}" in tex


def test_render_writes_every_output_and_a_self_contained_page(board: Board) -> None:
    result = render_board(board)
    out = board.root / "rendered"
    for name in ("table1.md", "table1.tex", "table2.md", "index.html", "runs.csv", "aggregates.json",
                 "plots/classification-rsna.png", "plots/classification-rsna.svg"):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text()
    assert not re.search(r"<(script|img|link)[^>]+(src|href)=", page)  # nothing to fetch
    assert page.count("<svg") >= 1 and 'id="table1"' in page and "<details>" in page
    comparisons = result.comparisons["weak@cccccccccccc"]
    assert {c.b for c in comparisons} == {"strong@aaaaaaaaaaaa", "twin@bbbbbbbbbbbb"}
    assert all(c.result.test == "delong" for c in comparisons) and all(c.significant for c in comparisons)
    assert len((out / "runs.csv").read_text().splitlines()) == 1 + 3 * 5


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(chromium() is None, reason="Chromium is not installed (apt-get install -y chromium); the page is not opened in a browser")
def test_page_renders_in_headless_chromium(board: Board, tmp_path: Path) -> None:
    page = board.root / "rendered" / "index.html"
    if not page.is_file():
        render_board(board)
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120).stdout
    assert '<table class="sortable board-table" id="table1">' in dom
    table1 = dom.split('id="table1"')[1].split("</table>")[0]
    assert table1.count('<tr class="published"') == len(TABLES[0].rows) and table1.count('<tr class="board"') == 3
    screenshot = tmp_path / "page.png"
    subprocess.run([chromium(), *flags, f"--screenshot={screenshot}", "--window-size=1400,1800", page.as_uri()],
                   capture_output=True, timeout=120)
    assert screenshot.is_file() and screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paired_results_are_cached_by_file_content(board: Board) -> None:
    from benchmark.board.integrity import local_cache_dir

    first = render_board(board, formats=("md",)).comparisons
    cached = sorted((local_cache_dir() / "comparisons").glob("*.json"))
    assert cached
    assert render_board(board, formats=("md",)).comparisons == first
    assert sorted((local_cache_dir() / "comparisons").glob("*.json")) == cached
    assert not (board.root / ".cache").exists()  # nothing a copied board could bring along


def test_tables_take_their_columns_from_the_board_and_a_task_without_a_published_table_gets_its_own(
        tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import toy_task

    protocol = BoardProtocol.read(toy_task.write_toy_board(tmp_path) / "protocol.json")
    [spec] = board_tables(protocol)
    assert (spec.table.key, spec.table.rows) == ("toy", ())
    assert [column.header for column in spec.columns] == ["Toy AUROC 1%", "Toy AUROC 10%", "Toy AUROC 100%"]
    demo = Board(DEMO_BOARD).protocol
    table2 = board_tables(demo)[1]
    assert {(c.task, c.dataset, c.fraction) for c in table2.columns} == {
        (task, dataset, fraction) for task in ("segmentation", "detection") for dataset in demo.task(task).datasets
        for fraction in demo.task(task).fractions or demo.fractions}


def test_table_3_shows_the_boards_zero_shot_columns_and_only_the_sourced_published_cells(tmp_path: Path) -> None:
    """Table 3 takes the board's zero-shot (and retrieval, where the board has it) columns; its published rows fill
    the one column a source prints on the board's definition (CheXpert 5x200 accuracy, EGMA Table 2), the others
    stay empty, and the notes say why."""
    copy = copy_board_protocol(Board(DEMO_BOARD), tmp_path / "boards" / "table3", "table3")
    spec = {spec.table.key: spec for spec in board_tables(copy.protocol)}["table3"]
    zeroshot = copy.protocol.task("zeroshot")
    assert [(c.task, c.dataset, c.fraction) for c in spec.columns if c.task == "zeroshot"] == [
        ("zeroshot", dataset, fraction) for dataset in zeroshot.datasets for fraction in zeroshot.fractions]
    assert {c.task for c in spec.columns} <= {"zeroshot", "retrieval"}
    assert {key for row in spec.table.rows for key in row.values} == {("zeroshot", "chexpert", 100)}
    assert "zeroshot" not in {s.table.key for s in board_tables(copy.protocol)}  # no longer a table of its own
    empty = to_markdown(build_table(BoardView.load(copy), spec))
    assert "No board results for this table yet" in empty and "reports no zero-shot" in empty
    # the MGCA row as EGMA printed it (43.60): the 5x200 column filled, every other column of the row empty
    [mgca] = [line for line in empty.splitlines() if line.startswith("| MGCA (backbone not stated) | published |")]
    cells = [cell.strip() for cell in mgca.strip("|").split("|")][2:]
    chexpert = [c.header for c in spec.columns].index("CheXpert 5x200 zero-shot ACC 100%")
    assert cells[chexpert] == "43.6" and [cell for k, cell in enumerate(cells) if k != chexpert] == [""] * (len(cells) - 1)
    assert "arxiv.org/abs/2403.12416" in empty and "GLoRIA's radiologist-written prompts" in empty

    # one zero-shot RSNA run: a board row in Table 3, in every format and on the page
    sha = "e" * 64
    copy.register_entry(BoardEntry("clip_like", sha, "resnet18", "reference", ["mimic-cxr"], "test entry", "random", "2026-01-01"))
    identity = CellIdentity(copy.name, "clip_like", sha, "zeroshot", "rsna", "classification", "prompts", 100, 0, 0, "direct")
    y = np.tile([0, 1], N_TEST // 2)
    scores = y * 0.5 + np.random.default_rng(3).normal(size=N_TEST)
    ids = [f"p{k:03d}" for k in range(N_TEST)]
    (tmp_path / "p.csv").write_text("id,Target\n" + "".join(f"{i},{s:.8g}\n" for i, s in zip(ids, scores)))
    (tmp_path / "t.csv").write_text("id,Target\n" + "".join(f"{i},{t}\n" for i, t in zip(ids, y)))
    copy.add(RunRecord(
        identity=identity, protocol_version=copy.protocol.protocol_version, scorer="zeroshot",
        metrics={"auroc": MetricValue(roc_auc_score(y, np.round(scores, 8)), bootstrap_se=0.04)}, headline_metric="auroc",
        predictions=copy.store_artifact(identity, "predictions", tmp_path / "p.csv"),
        targets=copy.store_artifact(identity, "targets", tmp_path / "t.csv"),
        target_set=record_target_set("zeroshot", tmp_path / "t.csv", "rsna", "classification"),
        timings={"total": 1.0}, config={}, training={}, split_fingerprints={"test": "0" * 64}, backbone={},
        provenance={"code": {"commit": "abc", "dirty": False}}, created="2026-01-01T00:00:00+00:00",
    ))
    result = render_board(copy)
    table3 = next(model for model in result.models if model.spec.table.key == "table3")
    [row] = [row for row in table3.rows if row.kind == "board"]
    rsna = [c.header for c in table3.spec.columns].index("RSNA zero-shot AUROC 100%")
    assert row.label == "clip_like" and row.cells[rsna].text == f"{100 * roc_auc_score(y, np.round(scores, 8)):.1f}"
    out = copy.root / "rendered"
    assert "| clip_like | this board |" in (out / "table3.md").read_text()
    assert r"\label{tab:table3}" in (out / "table3.tex").read_text()
    assert 'id="table3"' in (out / "index.html").read_text() and (out / "plots" / "zeroshot-rsna.svg").is_file()
