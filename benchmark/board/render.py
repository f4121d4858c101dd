"""Render a board: the paper's tables (Markdown, LaTeX, HTML), data-efficiency plots, a static page.

Every table is first built as a :class:`TableModel` (text, bold, tie and overlap marks per cell)
and then written by one small formatter per output format, so the formats can never disagree.

Conventions, stated in every output:

* board numbers are mean ± std over seeds and label draws, shown as the column's metric spec
  declares (``MetricSpec.scale``: a fraction in percent), with the 95% interval of
  ``benchmark/board/aggregate.py`` (run variance + test-set bootstrap variance);
* **bold**: best board entry of the column (the best mean in the metric's direction); † after a number: not significantly
  different from the best (paired test on the same test images, corrected across the column);
  ‡: the entry declares pretraining data that shares images with this test set;
* published rows are copied with their source (``benchmark/published.py``); an empty cell is a
  number nobody has verified, never a guess; the best published value of a column is bold too;
* a table that declares it (``PublishedTable.chance``: Table 3) shows under each board number its
  chance level and the one-sided p of the entry's runs against it (``compare.chance_of_cell``);
* plots: a task run at several label fractions is a curve per entry against the fraction; a task
  the board plans at one fraction only is a dot (with its 95% interval) per entry, its chance
  level marked where the metric declares a null.
"""

from __future__ import annotations

import html
import io
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from benchmark.board.aggregate import CellAggregate, aggregate, shown_runs
from benchmark.board.compare import Comparison, chance_of_cell, compare_entry, ties_with_best
from benchmark.board.protocol import BoardProtocol
from benchmark.board.store import Board, BoardEntry
from benchmark.published import SECONDARY_MARK, TABLES, PublishedTable, Secondary
from benchmark.files import write_atomically
from benchmark.records import RunRecord
from benchmark.scoring import MetricSpec
from benchmark.scoring.chance import ChanceError, ChanceResult, p_text

Format = Literal["md", "tex", "html"]
FORMATS: tuple[str, ...] = ("md", "tex", "html")
TIE_MARK = "†"
OVERLAP_MARK = "‡"


@dataclass
class TableCell:
    text: str = ""
    bold: bool = False
    tie: bool = False
    overlap: bool = False
    detail: str = ""  # 95% interval and run count (board) or nothing (published)
    chance: str = ""  # "chance 20.0 · p 5e-05" under a board number of a table that declares chance; or nothing
    sort_value: float | None = None


@dataclass
class TableRow:
    label: str
    kind: Literal["published", "board"]
    cells: list[TableCell]
    note: str = ""
    entry: str = ""  # entry key for board rows


@dataclass(frozen=True)
class Column:
    """One table column: a board slot at one label fraction."""

    task: str
    dataset: str
    fraction: int
    header: str  # the board's label and the fraction, e.g. "CheXpert AUROC 1%"


@dataclass(frozen=True)
class TableSpec:
    """One rendered table: a published table (its title, printed rows and sources) with the board's columns."""

    table: PublishedTable
    columns: tuple[Column, ...]


def board_tables(protocol: BoardProtocol) -> list[TableSpec]:
    """The board's tables: each published table with the board's columns of its tasks (tasks × datasets ×
    fractions, labels from protocol.json), then one table per board task no published table shows."""

    def columns(tasks: list[str]) -> tuple[Column, ...]:
        return tuple(Column(task, dataset, fraction, f"{label} {fraction}%") for task in tasks
                     for dataset, label in protocol.task(task).datasets.items()
                     for fraction in (protocol.task(task).fractions or protocol.fractions))

    specs, shown = [], set()
    for table in TABLES:
        tasks = [task for task in table.tasks if task in protocol.tasks]
        shown.update(table.tasks)
        if tasks:
            specs.append(TableSpec(table, columns(tasks)))
    specs += [TableSpec(PublishedTable(task, f"{task} (no published table)", (task,), (), "none: no published numbers"),
                        columns([task])) for task in protocol.tasks if task not in shown]
    return specs


@dataclass
class TableModel:
    spec: TableSpec
    rows: list[TableRow]
    notes: list[str] = field(default_factory=list)
    demo: bool = False


@dataclass
class BoardView:
    """Everything rendering needs, computed once."""

    board: Board
    modes: dict[str, str]  # task -> the mode whose runs are shown
    records: list[RunRecord]
    cells: list[CellAggregate]
    entries: dict[str, BoardEntry]
    ties: dict[tuple, dict[str, object]]
    invalid: list[str]  # records that fail verification: listed with the reason, never shown as results
    chances: dict[tuple, ChanceResult | None] = field(default_factory=dict, repr=False)  # memo of chance()

    @classmethod
    def load(cls, board: Board, modes: dict[str | None, str] | None = None) -> BoardView:
        """The board's runs in each task's default mode, or in the modes chosen (``{task or None: mode}``)."""
        selected = board.protocol.select("modes", modes)
        heads = {task: item.heads for task, item in board.protocol.tasks.items()}
        invalid: list[str] = []
        records = shown_runs(board.records(invalid), selected, heads)
        cells = aggregate(records, board.protocol.metric)
        return cls(board, selected, records, cells, board.entries(), ties_with_best(board, records, cells), invalid)

    @property
    def modes_text(self) -> str:
        return ", ".join(f"{task} {mode}" for task, mode in self.modes.items())

    def cell(self, entry: str, column: Column) -> CellAggregate | None:
        for cell in self.cells:
            if cell.entry == entry and (cell.task, cell.dataset, cell.fraction) == (column.task, column.dataset, column.fraction):
                return cell
        return None

    def chance(self, cell: CellAggregate) -> ChanceResult | None:
        """``cell`` against chance (``compare.chance_of_cell``: each run from its stored files, the largest p),
        computed once per view: the tables and the plots of one render share it. None where there is
        nothing to show: the metric declares no null, its test does not apply, or a run's files cannot
        be read; that never fails a render."""
        key = (cell.entry, cell.partition, cell.head, cell.column)
        if key not in self.chances:
            try:
                self.chances[key] = chance_of_cell(self.board, self.records, cell)
            except (ChanceError, OSError, ValueError, KeyError):  # ChanceError: no null; the others: unreadable files
                self.chances[key] = None
        return self.chances[key]

    def entry_keys(self) -> list[str]:
        present = {cell.entry for cell in self.cells}
        return sorted(present, key=lambda key: (self.entries[key].role != "reference" if key in self.entries else True, key))


def fed_input_sizes(records: list[RunRecord], entry_key: str, tasks: set[str]) -> list[int]:
    """Image sides the encoder was fed in an entry's runs of ``tasks``, from each record's geometry
    (classification: ``encoder_input_size``, detection and segmentation: ``input_size``). They differ
    from the declared input size where the prepared images are smaller (the demo's 128 px)."""
    sizes = set()
    for record in records:
        if record.identity.entry_key == entry_key and record.identity.task in tasks:
            geometry = record.config.get("geometry") or {}
            size = geometry.get("encoder_input_size", geometry.get("input_size"))
            if size:
                sizes.add(int(size))
    return sorted(sizes)


def shown(spec: MetricSpec, value: float) -> str:
    """A metric's value as its spec shows it (a fraction as a percentage, one decimal)."""
    return f"{spec.shown(value):.1f}"


def preprocessing_text(values: dict[str, Any] | None) -> str:
    """An entry's recorded preprocessing in one phrase: ``224 px, 3 ch, [0, 1], mean 0.5/0.5/0.5, std 0.5/0.5/0.5 (model)``."""
    if not values:
        return "not recorded (entry written before preprocessing was recorded)"
    low, high = values["value_range"]
    mean, std = ("/".join(f"{number:g}" for number in values[key]) for key in ("mean", "std"))
    return (f"{values['input_size']} px, {values['channels']} ch, [{low:g}, {high:g}], mean {mean}, std {std} "
            f"({values.get('mode', 'model')})")


def chance_text(spec: MetricSpec, result: ChanceResult) -> str:
    """The chance line of a table cell: ``chance 20.0 · p 5e-05`` (the level as the metric is shown, one-sided p)."""
    return f"chance {shown(spec, result.chance)} · p {p_text(result.p_value)}"


def chance_note(protocol: BoardProtocol) -> str:
    """What the chance line under a board number is (a note of every table that shows one)."""
    return ("chance C · p P with a board number: the chance level of its metric (the value expected from a model whose "
            "outputs ignore the images) and the one-sided p-value of the entry's runs against it, each run tested from "
            "its stored prediction and target files by the null its metric declares (benchmark/scoring/chance.py), the "
            "largest p over its runs (every run must beat chance); not adjusted for the table's several columns: "
            f"`python -m benchmark chance ENTRY` gives the p-values adjusted over an entry's columns "
            f"({protocol.comparison.correction} correction). No such line: the metric declares no chance null, its test "
            "does not apply, or the runs' files are not readable here.")


def build_table(view: BoardView, spec: TableSpec) -> TableModel:
    """Published rows, then one row per board entry, with bold/tie/overlap marks (and, in a table that declares
    ``chance``, each board number's chance level and p)."""
    rows: list[TableRow] = []
    protocol = view.board.protocol
    metrics = [protocol.metric(column.task, column.dataset) for column in spec.columns]
    published = [[row.values.get((column.task, column.dataset, column.fraction)) for column in spec.columns]
                 for row in spec.table.rows]
    published_best = []
    for index, metric in enumerate(metrics):
        numbers = [values[index] for values in published if isinstance(values[index], (int, float))]
        published_best.append(max(numbers, key=metric.ranking) if numbers else None)
    for row, values in zip(spec.table.rows, published):
        cells = []
        for index, value in enumerate(values):
            if value is None:
                cells.append(TableCell())
            elif isinstance(value, Secondary):  # never bold: a second-hand number does not set the best
                cells.append(TableCell(text=f"{value.value:.1f} {SECONDARY_MARK}", sort_value=value.value))
            elif isinstance(value, str):
                cells.append(TableCell(text=value, sort_value=0.0))
            else:
                cells.append(TableCell(text=f"{value:.1f}", bold=value == published_best[index], sort_value=value))
        rows.append(TableRow(row.method, "published", cells, row.note))
    preprocessing_notes = []
    for key in view.entry_keys():
        if not any(view.cell(key, column) for column in spec.columns):
            continue
        entry = view.entries.get(key)
        if entry:
            sizes = fed_input_sizes(view.records, key, {column.task for column in spec.columns})
            preprocessing_notes.append(f"{entry.name}: {preprocessing_text(entry.preprocessing)}"
                                       + (f", fed {'/'.join(map(str, sizes))} px in these runs" if sizes else ""))
        cells = []
        for column, metric in zip(spec.columns, metrics):
            cell = view.cell(key, column)
            if cell is None:
                cells.append(TableCell())
                continue
            verdict = view.ties.get(cell.column, {})
            text = shown(metric, cell.mean) + (f" ± {shown(metric, cell.std)}" if cell.std is not None else "")
            overlap = bool(entry and protocol.overlaps(entry.pretraining_data, column.dataset))
            against = view.chance(cell) if spec.table.chance else None
            cells.append(TableCell(
                text=text, bold=verdict.get("best") == key, tie=key in verdict.get("ties", []), overlap=overlap,
                detail=f"[{shown(metric, cell.ci_low)}, {shown(metric, cell.ci_high)}] n={cell.n}"
                       + (f", {cell.head}" if len(protocol.task(cell.task).heads) > 1 else ""),
                sort_value=metric.shown(cell.mean), chance=chance_text(metric, against) if against else "",
            ))
        label = entry.name if entry else key
        note = (f"{entry.role}, {entry.arch}, weights {entry.weights_sha256[:12]}, input "
                f"{preprocessing_text(entry.preprocessing)}") if entry else ""
        rows.append(TableRow(label, "board", cells, note, key))
    units = "in %" if all(metric.scale == 100 for metric in metrics) else "as each metric's spec shows it"
    notes = [
        f"Published rows: {spec.table.source}. Empty published cells are unverified numbers, left empty on purpose.",
        f"Board rows ({view.board.name}, protocol {protocol.protocol_version}, modes: {view.modes_text}): mean ± std over "
        f"seeds and label draws, {units}; [95% interval combining run and test-set bootstrap variance] and run count.",
        f"Bold: best of its block. {TIE_MARK}: not significantly different from the best board entry "
        f"(paired test on the same test images, {protocol.comparison.correction} correction, alpha {protocol.comparison.alpha}). "
        f"{OVERLAP_MARK}: pretraining data shares images with this test set.",
    ]
    if any(cell.chance for row in rows for cell in row.cells):
        notes.append(chance_note(protocol))
    notes += spec.table.caveats
    if preprocessing_notes:
        notes.append("Encoder input of each board row (declared size, channels, intensity range, mean/std; --preprocess "
                     "model: the backbone's own, protocol: the MGCA protocol's mean = std = 0.5; then the image sizes its "
                     "runs in this table actually fed the encoder): " + "; ".join(preprocessing_notes) + ".")
    notes += [f"INVALID record, not shown: {reason}" for reason in view.invalid]
    if not any(row.kind == "board" and any(c.text for c in row.cells) for row in rows):
        notes.insert(0, "No board results for this table yet (its tasks have not been run on this board).")
    if protocol.demo:
        notes.insert(0, "DEMO BOARD: synthetic images. Board numbers say nothing about any backbone and are not real-data results.")
    return TableModel(spec, rows, notes, protocol.demo)


# ------------------------------------------------------------------------------- formatters

def _marks(cell: TableCell) -> str:
    return (TIE_MARK if cell.tie else "") + (OVERLAP_MARK if cell.overlap else "")


def to_markdown(model: TableModel) -> str:
    header = ["Method", "Source", *[column.header for column in model.spec.columns]]
    lines = [f"### {('DEMO - ' if model.demo else '') + model.spec.table.title}", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in model.rows:
        texts = []
        for cell in row.cells:
            text = cell.text + _marks(cell)
            if cell.bold and cell.text:
                text = f"**{cell.text}**{_marks(cell)}"
            if cell.detail:
                text += f" {cell.detail}"
            if cell.chance:
                text += f"; {cell.chance}"
            texts.append(text)
        source = "published" if row.kind == "published" else "this board"
        lines.append("| " + " | ".join([row.label, source, *texts]) + " |")
    lines += [""] + [f"- {note}" for note in model.notes]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


def tex_escape(text: str) -> str:
    return "".join(_TEX_ESCAPES.get(char, char) for char in text).replace("±", r"$\pm$")


def to_latex(model: TableModel) -> str:
    columns = model.spec.columns
    groups: list[tuple[str, int]] = []
    for column in columns:
        name = column.header.rsplit(" ", 1)[0]
        if groups and groups[-1][0] == name:
            groups[-1] = (name, groups[-1][1] + 1)
        else:
            groups.append((name, 1))
    lines = [
        "% Generated by `python -m benchmark tables --format tex`; do not edit by hand.",
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{tex_escape(('DEMO (synthetic data): ' if model.demo else '') + model.spec.table.title)}}}",
        rf"\label{{tab:{model.spec.table.key}}}",
        r"\resizebox{\textwidth}{!}{%",
        r"\begin{tabular}{l" + "c" * len(columns) + "}", r"\toprule",
        "Method & " + " & ".join(rf"\multicolumn{{{n}}}{{c}}{{{tex_escape(name)}}}" for name, n in groups) + r" \\",
        " & " + " & ".join(tex_escape(f"{column.fraction}%") for column in columns) + r" \\",
        r"\midrule",
    ]
    previous = "published"
    for row in model.rows:
        if row.kind != previous:
            lines.append(r"\midrule")
            previous = row.kind
        texts = []
        for cell in row.cells:
            text = tex_escape(cell.text)
            if cell.bold and cell.text:
                text = rf"\textbf{{{text}}}"
            if cell.tie:
                text += r"$^{\dagger}$"
            if cell.overlap:
                text += r"$^{\ddagger}$"
            if cell.chance:  # a second line under the number
                line = tex_escape(cell.chance).replace("·", r"$\cdot$").replace("<", r"$<$")
                text = rf"\begin{{tabular}}[c]{{@{{}}c@{{}}}}{text}\\{{\scriptsize {line}}}\end{{tabular}}"
            texts.append(text)
        lines.append(tex_escape(row.label) + " & " + " & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}", r"\par\smallskip\footnotesize"]
    lines += [tex_escape(note) + r"\\" for note in model.notes]
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def to_html(model: TableModel, provenance: dict[str, str] | None = None) -> str:
    """A sortable ``<table>`` (the page's script sorts on header click); board rows carry a provenance details row."""
    provenance = provenance or {}
    out = [f'<table class="sortable board-table" id="{model.spec.table.key}">',
           "<caption>" + html.escape(("DEMO - " if model.demo else "") + model.spec.table.title) + "</caption>",
           "<thead><tr><th>Method</th><th>Source</th>"
           + "".join(f"<th>{html.escape(c.header)}</th>" for c in model.spec.columns) + "</tr></thead>", "<tbody>"]
    for row in model.rows:
        cells = []
        for cell in row.cells:
            body = html.escape(cell.text)
            if cell.bold and cell.text:
                body = f"<strong>{body}</strong>"
            marks = _marks(cell)
            if marks:
                body += f"<sup>{marks}</sup>"
            if cell.detail:
                body += f'<br><span class="ci">{html.escape(cell.detail)}</span>'
            if cell.chance:
                body += f'<br><span class="ci chance">{html.escape(cell.chance)}</span>'
            sort = "" if cell.sort_value is None else f' data-sort="{cell.sort_value:.6f}"'
            cells.append(f"<td{sort}>{body}</td>")
        title = f' title="{html.escape(row.note)}"' if row.note else ""
        source = "published" if row.kind == "published" else "this board"
        out.append(f'<tr class="{row.kind}"{title}><td>{html.escape(row.label)}</td><td>{source}</td>{"".join(cells)}</tr>')
        if row.kind == "board" and row.entry in provenance:
            out.append(f'<tr class="details"><td colspan="{len(row.cells) + 2}"><details><summary>provenance of '
                       f'{html.escape(row.label)}</summary>{provenance[row.entry]}</details></td></tr>')
    out.append("</tbody></table>")
    out.append("<ul class=\"notes\">" + "".join(f"<li>{html.escape(note)}</li>" for note in model.notes) + "</ul>")
    return "\n".join(out)


# ------------------------------------------------------------------------------- plots

def one_fraction(protocol: BoardProtocol, task: str) -> bool:
    """Whether the board plans ``task`` at one label fraction only (a task that trains nothing, at its nominal
    100 %, or one a board runs at 100 % only): its plot is a dot per entry, not a curve over fractions."""
    return len(protocol.task(task).fractions or protocol.fractions) == 1


def plot_slots(view: BoardView) -> dict[str, tuple[str, str]]:
    """The plots of a board, by file name: one per (task, dataset) with results, in (task, dataset) order."""
    return {f"{task}-{dataset}": (task, dataset) for task, dataset in sorted({(c.task, c.dataset) for c in view.cells})}


def data_efficiency_figures(view: BoardView) -> dict[str, "object"]:
    """One matplotlib figure per (task, dataset) with results: metric vs label fraction with CI bands, or, for a task
    the board plans at one fraction only (:func:`one_fraction`), a dot-and-whisker chart of the entries."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "mgca-cxr-bench"  # stable element ids: re-renders diff cleanly
    from matplotlib import pyplot as plt

    figures = {}
    for name, (task, dataset) in plot_slots(view).items():
        if one_fraction(view.board.protocol, task):
            figures[name] = _dot_and_whisker(view, task, dataset)
            continue
        label, spec = view.board.protocol.label(task, dataset), view.board.protocol.metric(task, dataset)
        figure, axis = plt.subplots(figsize=(4.2, 3.2), dpi=120)
        for entry in view.entry_keys():
            points = sorted((c for c in view.cells if (c.task, c.dataset, c.entry) == (task, dataset, entry)),
                            key=lambda c: c.fraction)
            if not points:
                continue
            x = [c.fraction for c in points]
            line, = axis.plot(x, [spec.shown(c.mean) for c in points], marker="o", label=points[0].backbone)
            axis.fill_between(x, [spec.shown(c.ci_low) for c in points], [spec.shown(c.ci_high) for c in points],
                              color=line.get_color(), alpha=0.2, linewidth=0)
        axis.set_xscale("log")
        axis.set_xticks(list(view.board.protocol.fractions), [f"{f}%" for f in view.board.protocol.fractions])
        axis.set_xlabel("training labels")
        axis.set_ylabel(label + (" (%)" if spec.scale == 100 else ""))
        axis.set_title(("DEMO: " if view.board.protocol.demo else "") + f"{label} ({task})", fontsize=9)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
        figure.tight_layout()
        figures[name] = figure
    return figures


CHANCE_LABEL = "chance"  # the legend entry (and Line2D label) of the chance marks of a dot-and-whisker chart


def _dot_and_whisker(view: BoardView, task: str, dataset: str) -> "object":
    """One row per entry (its cell's backbone, top to bottom in the tables' order): the headline mean (dot) with its
    95% interval (whiskers), the numbers of the tables; a grey x at the entry's chance level where
    :meth:`BoardView.chance` has one. The x axis is the metric, not the label fraction. An entry keeps its colour
    in every such chart (its place among the board's entries)."""
    from matplotlib import pyplot as plt

    label, spec = view.board.protocol.label(task, dataset), view.board.protocol.metric(task, dataset)
    entries = view.entry_keys()
    cells = [cell for entry in entries for cell in view.cells
             if (cell.task, cell.dataset, cell.entry) == (task, dataset, entry)]
    figure, axis = plt.subplots(figsize=(4.2, max(3.2, 1.5 + 0.35 * len(cells))), dpi=120)
    chances = []
    for row, cell in enumerate(cells):
        mean = spec.shown(cell.mean)
        whiskers = [[max(0.0, mean - spec.shown(cell.ci_low))], [max(0.0, spec.shown(cell.ci_high) - mean)]]
        axis.errorbar([mean], [row], xerr=whiskers, fmt="o", color=f"C{entries.index(cell.entry) % 10}", capsize=3,
                      label=cell.backbone)
        against = view.chance(cell)
        if against is not None:
            chances.append((spec.shown(against.chance), row))
    if chances:
        marks, = axis.plot([x for x, _ in chances], [y for _, y in chances], linestyle="none", marker="x",
                           markersize=7, color="grey", zorder=3, label=CHANCE_LABEL)
        axis.legend(handles=[marks], fontsize=7)
    axis.set_yticks(range(len(cells)), [cell.backbone for cell in cells], fontsize=8)
    axis.set_ylim(len(cells) - 0.5, -0.5)  # the first entry on top, as in the tables
    axis.set_xlabel(f"{spec.label}" + (" (%)" if spec.scale == 100 else "") + ", mean and 95% interval")
    axis.set_title(("DEMO: " if view.board.protocol.demo else "") + f"{label} ({task})", fontsize=9)
    axis.grid(alpha=0.3, axis="x")
    figure.tight_layout()
    return figure


def write_plots(view: BoardView, folder: Path) -> dict[str, str]:
    """PNG and SVG per figure under ``folder``; returns name -> inline SVG text for the page."""
    from matplotlib import pyplot as plt

    inline = {}
    for name, figure in data_efficiency_figures(view).items():
        for suffix in ("png", "svg"):
            buffer = io.BytesIO()
            figure.savefig(buffer, format=suffix, metadata={"Date": None} if suffix == "svg" else None)
            write_atomically(folder / f"{name}.{suffix}", buffer.getvalue())
            if suffix == "svg":
                text = buffer.getvalue().decode()
                inline[name] = text[text.index("<svg"):]
        plt.close(figure)
    return inline


# ------------------------------------------------------------------------------- page

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1400px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem}
.banner{background:#fff3cd;border:2px solid #d39e00;padding:.8rem;font-weight:bold;margin:1rem 0}
table{border-collapse:collapse;font-size:.82rem;margin:.5rem 0}caption{text-align:left;font-weight:bold;padding:.3rem 0}
th,td{border:1px solid #ccc;padding:.25rem .45rem;text-align:center}td:first-child{text-align:left}
th{background:#f2f2f2;cursor:pointer;user-select:none}th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
tr.board{background:#eef6ff}.ci{color:#666;font-size:.72rem}.notes{font-size:.8rem;color:#444}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0}.plots svg{width:420px;height:auto}
details{text-align:left;font-size:.78rem}pre{white-space:pre-wrap;text-align:left}
"""

_JS = """
document.querySelectorAll('table.sortable').forEach(function(table){
  table.querySelectorAll('thead th').forEach(function(th, index){
    th.addEventListener('click', function(){
      var body = table.tBodies[0];
      var groups = [];
      Array.prototype.forEach.call(body.rows, function(row){
        if (row.classList.contains('details') && groups.length) { groups[groups.length-1].push(row); }
        else { groups.push([row]); }
      });
      var ascending = !th.classList.contains('asc');
      table.querySelectorAll('thead th').forEach(function(h){ h.classList.remove('asc','desc'); });
      th.classList.add(ascending ? 'asc' : 'desc');
      function key(group){
        var cell = group[0].cells[index];
        if (!cell) return null;
        var sort = cell.getAttribute('data-sort');
        return sort === null ? (cell.textContent.trim() || null) : parseFloat(sort);
      }
      groups.sort(function(a, b){
        var x = key(a), y = key(b);
        if (x === null && y === null) return 0; if (x === null) return 1; if (y === null) return -1;
        var order = (typeof x === 'number' && typeof y === 'number') ? x - y : String(x).localeCompare(String(y));
        return ascending ? order : -order;
      });
      groups.forEach(function(group){ group.forEach(function(row){ body.appendChild(row); }); });
    });
  });
});
"""


def _provenance_html(view: BoardView) -> dict[str, str]:
    """Per entry: the entry metadata and the provenance of its first run record."""
    out = {}
    for key in view.entry_keys():
        entry = view.entries.get(key)
        first = next((r for r in view.records if r.identity.entry_key == key), None)
        payload = {"entry": entry.__dict__ if entry else key}
        if first is not None:
            payload["provenance (first run)"] = first.provenance
            payload["config (first run)"] = first.config
        out[key] = "<pre>" + html.escape(json.dumps(payload, indent=2, default=str)) + "</pre>"
    return out


def _comparison_table(title: str, rows: list[Comparison], spec_of: Callable[[str, str], MetricSpec]) -> str:
    body = "".join(
        f"<tr><td>{html.escape(c.task)}/{html.escape(c.dataset)}</td><td>{c.fraction}%</td><td>{html.escape(c.a)}</td>"
        f"<td>{html.escape(c.b)}</td>"
        f'<td data-sort="{c.result.delta:.6f}">{spec.shown(c.result.delta):+.2f}</td>'
        f"<td>[{spec.shown(c.result.ci_low):+.2f}, {spec.shown(c.result.ci_high):+.2f}]</td><td>{c.result.test}</td>"
        f'<td data-sort="{c.result.p_value:.6g}">{c.result.p_value:.3g}</td>'
        f'<td data-sort="{c.p_adjusted:.6g}">{c.p_adjusted:.3g}</td><td>{"yes" if c.significant else "no"}</td></tr>'
        for c, spec in ((c, spec_of(c.task, c.dataset)) for c in rows))
    return (f'<h3>{html.escape(title)}</h3><table class="sortable comparisons">'
            "<thead><tr><th>task/dataset</th><th>labels</th><th>entry</th><th>against</th><th>Δ (points)</th>"
            "<th>95% CI of Δ</th><th>test</th><th>p</th><th>p adjusted</th><th>significant</th></tr></thead><tbody>"
            + body + "</tbody></table>")


def _comparisons_html(view: BoardView, comparisons: dict[str, list[Comparison]]) -> str:
    """Submissions against the references (one family each), then the best entry of each column
    against the others (one family per column: the † marks of the tables)."""
    metric = view.board.protocol.metric
    parts = [_comparison_table(f"{entry} against every reference entry", rows, metric)
             for entry, rows in comparisons.items() if rows]
    best_rows = [c for verdict in view.ties.values() for c in verdict["comparisons"]]
    if best_rows:
        parts.append(_comparison_table("Best entry of each column against the others (the † marks)", best_rows, metric))
    return "\n".join(parts)


def render_page(view: BoardView, models: list[TableModel], svgs: dict[str, str],
                comparisons: dict[str, list[Comparison]]) -> str:
    """The static, self-contained HTML page (inline CSS, JS and SVG; opens without a server)."""
    protocol = view.board.protocol
    provenance = _provenance_html(view)
    banner = ('<div class="banner">DEMO BOARD: synthetic images. These numbers say nothing about any '
              "backbone and are not real-data results.</div>") if protocol.demo else ""
    tables = "\n".join(f"<h2>{html.escape(m.spec.table.title)}</h2>\n{to_html(m, provenance)}" for m in models)
    single = {name for name, (task, _) in plot_slots(view).items() if one_fraction(protocol, task)}
    curves = "".join(f"<figure>{svg}</figure>" for name, svg in svgs.items() if name not in single)
    dots = "".join(f"<figure>{svg}</figure>" for name, svg in svgs.items() if name in single)
    plots = ""
    if curves or not dots:  # the data-efficiency section, also while the board has no results at all
        plots = ("<h2>Data efficiency</h2>\n<p>Headline metric against the fraction of training labels; bands are the 95% "
                 f'intervals.</p>\n<div class="plots">{curves or "<p>No results yet.</p>"}</div>\n')
    if dots:
        plots += ("<h2>Tasks run at one label fraction</h2>\n<p>Tasks this board runs at one label fraction only (the "
                  "fraction is in the tables' column headers; for a task that trains nothing it is nominal): one row per "
                  "entry with its headline metric (dot) and 95% interval (whiskers), the tables' numbers; grey ×: the "
                  "entry's chance level, where its metric declares a chance null and its runs' files are readable."
                  f'</p>\n<div class="plots">{dots}</div>\n')
    invalid_html = ("<h2>Invalid records (not shown: they fail verification)</h2><ul>" + "".join(
        f"<li>{html.escape(reason)}</li>" for reason in view.invalid) + "</ul>") if view.invalid else ""
    failures = view.board.failures()
    failure_html = ("<h2>Failed cells (retried on the next run)</h2><ul>" + "".join(
        f"<li>{html.escape(f['identity']['task'])}/{html.escape(f['identity']['dataset'])} "
        f"{f['identity']['fraction']}% ({html.escape(f['identity']['backbone'])}): "
        f"{html.escape(f['error'].strip().splitlines()[-1])}</li>" for f in failures) + "</ul>") if failures else ""
    data = json.dumps({"board": protocol.board, "protocol_version": protocol.protocol_version, "modes": view.modes,
                       "aggregates": [c.as_dict() for c in view.cells]}, default=str)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(protocol.title)}</title><style>{_CSS}</style></head>
<body>
<h1>{html.escape(protocol.title)}</h1>
{banner}
<p>{html.escape(protocol.description)}</p>
<p>Board <code>{html.escape(protocol.board)}</code>, protocol <code>{html.escape(protocol.protocol_version)}</code>,
modes <code>{html.escape(view.modes_text)}</code>, {len(view.records)} run records, {len(view.cells)} aggregated cells.
Click a column header to sort.</p>
{tables}
{plots}<h2>Paired comparisons</h2>
{_comparisons_html(view, comparisons) or "<p>A single entry per column: nothing to compare yet.</p>"}
{invalid_html}
{failure_html}
<script type="application/json" id="board-data">{html.escape(data, quote=False)}</script>
<script>{_JS}</script>
</body></html>
"""


@dataclass
class RenderResult:
    files: list[Path]
    models: list[TableModel]
    comparisons: dict[str, list[Comparison]]


def render_board(board: Board, modes: dict[str | None, str] | None = None, formats: tuple[str, ...] = FORMATS,
                 out: Path | None = None) -> RenderResult:
    """Write tables, plots, exports and the page under ``out`` (default ``<board>/rendered``)."""
    view = BoardView.load(board, modes)
    out = out or board.root / "rendered"
    models = [build_table(view, spec) for spec in board_tables(board.protocol)]
    files = []
    writers = {"md": to_markdown, "tex": to_latex}
    for model in models:
        for fmt in formats:
            if fmt in writers:
                path = out / f"{model.spec.table.key}.{fmt}"
                write_atomically(path, writers[fmt](model))
                files.append(path)
    comparisons = {key: compare_entry(board, view.records, view.cells, key)
                   for key in view.entry_keys() if view.entries.get(key) and view.entries[key].role == "submission"}
    if "html" in formats:
        svgs = write_plots(view, out / "plots")
        files += sorted((out / "plots").glob("*"))
        page = out / "index.html"
        write_atomically(page, render_page(view, models, svgs, comparisons))
        files.append(page)
    files.append(_write_exports(view, out))
    return RenderResult(files, models, comparisons)


def _write_exports(view: BoardView, out: Path) -> Path:
    """``aggregates.json`` and ``runs.csv``: machine-readable exports of the board."""
    write_atomically(out / "aggregates.json", json.dumps([c.as_dict() for c in view.cells], indent=2) + "\n")
    lines = ["entry,task,dataset,partition,head,fraction,mode,draw,seed,metric,value,bootstrap_se,record"]
    for record in view.board.records([]):
        i = record.identity
        se = record.headline.bootstrap_se
        lines.append(",".join(map(str, [i.entry_key, i.task, i.dataset, i.partition, i.head, i.fraction, i.mode, i.draw, i.seed,
                                        record.headline_metric, f"{record.headline.value:.8g}",
                                        "" if se is None or math.isnan(se) else f"{se:.8g}", i.cell_key])))
    path = out / "runs.csv"
    write_atomically(path, "\n".join(lines) + "\n")
    return path

