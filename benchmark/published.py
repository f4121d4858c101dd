"""Published numbers of MGCA's Tables 1 and 2, and Table 3 (zero-shot classification and image-text
retrieval, not in the MGCA paper: what a later paper printed for MGCA and other baselines), with their
sources, keyed by (task, dataset, fraction).

Which columns a rendered table has is the board's (``benchmark/board/render.py: board_tables``):
its tasks × datasets × fractions, labelled as its ``protocol.json`` says.

Transcribed from ``shared/protocol/PAPER_TABLES.md``. The paper's own tables have not been read
from a readable copy: every number comes from G2D (https://arxiv.org/abs/2312.01522), which
reproduces MGCA's rows. A cell nobody has verified is ``None`` and renders empty; it is never
filled from memory. ``"-"`` is G2D's mark for an mAP below 1%.

Values are in percent, as printed; the direction a column's best is taken in is its metric's spec
(``benchmark.scoring.MetricSpec``), as for the board's rows, whose values are shown × its scale.
Values from a second secondary source (the ASG code's README) are :class:`Secondary` and render
with the mark ², as PAPER_TABLES.md asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

SECONDARY_MARK = "²"


@dataclass(frozen=True)
class Secondary:
    """A number printed only by a second secondary source (rendered with :data:`SECONDARY_MARK`)."""

    value: float


# number, Secondary number, "-" (below 1%, as printed), or None (unknown)
PublishedValue = float | Secondary | str | None

G2D = "https://arxiv.org/abs/2312.01522"
# PAPER_TABLES.md names this source without an address; none is given here either.
ASG_README = ("the README of the official ASG code (\"Anatomical Structure-Guided Medical Vision-Language "
              "Pre-training\", MICCAI 2024)")
MACO_TABLE_1 = "https://www.nature.com/articles/s41467-024-51749-0/tables/1"
MGCA_PAPER = "https://arxiv.org/abs/2210.06044"
MGCA_ISSUE_39 = "https://github.com/HKU-MedAI/MGCA/issues/39"


Key = tuple[str, str, int]  # (task, dataset, label fraction): a board column


@dataclass(frozen=True)
class PublishedRow:
    method: str
    values: Mapping[Key, PublishedValue]  # the printed cells; a column not in it is unknown (renders empty)
    note: str = ""


@dataclass(frozen=True)
class PublishedTable:
    """One of the paper's tables: its rows, which board tasks it shows (in its order), its sources."""

    key: str
    title: str
    tasks: tuple[str, ...]
    rows: tuple[PublishedRow, ...]
    source: str  # where the published rows come from, in words with links
    caveats: tuple[str, ...] = ()
    # each board number also shows its chance level and one-sided p against it (render.build_table): for tables
    # whose numbers mean little until they beat a model that ignores the images
    chance: bool = False


def _printed(order: list[tuple[str, str]]) -> tuple[Key, ...]:
    """The columns in the order the source prints them: each (task, dataset) at 1, 10 and 100 %."""
    return tuple((task, dataset, fraction) for task, dataset in order for fraction in (1, 10, 100))


def _row(method: str, order: tuple[Key, ...], values: tuple[PublishedValue, ...], note: str = "") -> PublishedRow:
    """A row transcribed in printed column order, keyed by column."""
    if len(values) != len(order):
        raise ValueError(f"published row {method!r} has {len(values)} values for {len(order)} columns")
    return PublishedRow(method, {key: value for key, value in zip(order, values) if value is not None}, note)


_T1 = _printed([("classification", "chexpert"), ("classification", "rsna"), ("classification", "covidx")])
_T2 = _printed([("segmentation", "siim"), ("segmentation", "rsna"), ("detection", "rsna"), ("detection", "object_cxr")])

TABLE_1 = PublishedTable(
    key="table1",
    title="Table 1: linear classification (frozen encoder + linear layer)",
    tasks=("classification",),
    rows=(
        _row("Random Init", _T1, (56.1, 62.6, 65.7, 58.9, 69.4, 74.1, 50.5, 60.3, 70.0)),
        _row("ImageNet Init", _T1, (74.4, 79.7, 81.4, 74.9, 74.5, 76.3, 64.8, 78.8, 86.3)),
        _row("ConVIRT", _T1, (85.9, 86.8, 87.3, 77.4, 80.1, 81.3, 72.5, 82.5, 92.0)),
        _row("GLoRIA", _T1, (86.6, 87.8, 88.1, 86.1, 88.0, 88.6, 67.3, 77.8, 89.0)),
        _row("GLoRIA-MIMIC", _T1, (87.1, 88.7, 88.0, 87.0, 89.4, 90.2, 66.5, 80.5, 88.8)),
        _row("MGCA (ResNet-50)", _T1, (87.6, 88.0, 88.2, 88.6, 89.1, 89.9, 72.0, 83.5, 90.5),
             note="G2D's row \"MGCA [9]\"; the ResNet-50 backbone is inferred"),
        _row("MGCA (ResNet-50), ASG reading", _T1, (None, None, None, *map(Secondary, (87.6, 88.6, 89.8)), None, None, None),
             note="RSNA cells of the ASG README's \"CNN-based\" MGCA row, which differ from G2D's; "
                  "its other cells agree with G2D"),
        _row("MGCA (ViT-B/16)", _T1, tuple(map(Secondary, (88.8, 89.1, 89.7, 88.6, 89.5, 90.0, 74.8, 84.8, 92.3))),
             note="ASG README, \"ViT-based\" block (ViT-B/16 inferred from the heading)"),
    ),
    source=(f"G2D Table 4 ({G2D}); ConVIRT and GLoRIA CheXpert/RSNA cells corroborated by MaCo Table 1 "
            f"({MACO_TABLE_1}); {SECONDARY_MARK}: {ASG_README}; "
            f"original: MGCA Table 1 ({MGCA_PAPER}), not read"),
    caveats=("The RSNA split behind the published numbers is unclear (70/15/15 vs the detection split).",),
)

TABLE_2 = PublishedTable(
    key="table2",
    title="Table 2: segmentation (Dice) and detection (mAP), frozen encoder",
    tasks=("segmentation", "detection"),
    rows=(
        _row("Random Init", _T2, (9.0, 28.6, 54.3, 6.9, 10.6, 18.5, 1.0, 4.0, 8.9, "-", 0.5, 4.4)),
        _row("ImageNet Init", _T2, (10.2, 35.5, 63.5, 34.8, 39.9, 64.0, 3.6, 8.0, 15.7, "-", 2.9, 8.3)),
        _row("ConVIRT", _T2, (25.0, 43.2, 59.9, 55.0, 67.4, 67.5, 8.2, 15.6, 17.9, "-", 8.6, 15.9)),
        _row("GLoRIA", _T2, (35.8, 46.9, 63.4, 59.3, 67.5, 67.8, 9.8, 14.8, 18.8, "-", 10.6, 15.6)),
        _row("GLoRIA-MIMIC", _T2, (37.4, 57.1, 64.0, 60.3, 68.7, 68.3, 11.6, 16.1, 24.8, "-", 8.9, 16.6)),
        _row("MGCA (ResNet-50)", _T2, (49.7, 59.3, 64.2, 63.0, 68.3, 69.8, 12.9, 16.8, 24.9, "-", 12.1, 19.2),
             note="G2D's row \"MGCA [9]\"; RSNA Dice 1% corroborated by MGCA issue #39"),
        _row("MGCA (ViT-B/16)", _T2, (*map(Secondary, (60.1, 65.4, 69.6, 69.3, 70.0, 72.3)), *(None,) * 6),
             note="segmentation: ASG README, \"ViT-based\" block; no source prints its detection cells"),
    ),
    source=(f"G2D Table 1 ({G2D}); RSNA Dice 1% of MGCA corroborated by {MGCA_ISSUE_39}; "
            f"{SECONDARY_MARK}: {ASG_README}; original: MGCA Table 2 ({MGCA_PAPER}), not read"),
    caveats=("\"-\": mAP below 1% (G2D's convention).",
             "Published mAP skips images without boxes (PROTOCOL.md B1); published Dice is a mean of per-batch means (B8)."),
)

# Table 3: the MGCA paper reports no zero-shot or retrieval numbers. One source read prints a column on the board's
# definition: EGMA's Table 2 (zero-shot CheXpert 5x200 accuracy of baselines it evaluated). Its RSNA column is
# accuracy and F1, not AUROC; its retrieval table is CheXpert 8x200, not 5x200; those cells stay empty.
EGMA_PAPER = "https://arxiv.org/abs/2403.12416"  # Ma et al., "Eye-gaze Guided Multi-modal Alignment ...", NeurIPS 2024
GLORIA_PAPER = ("https://openaccess.thecvf.com/content/ICCV2021/html/Huang_GLoRIA_A_Multimodal_Global-Local_"
                "Representation_Learning_Framework_for_Label-Efficient_Medical_ICCV_2021_paper.html")
MEDCLIP_PAPER = "https://arxiv.org/abs/2210.10163"
_T3_EGMA = (("zeroshot", "chexpert", 100),)  # CheXpert 5x200 [15] Acc. (EGMA Table 2); its F1's averaging is not stated

TABLE_3 = PublishedTable(
    key="table3",
    title="Table 3: zero-shot classification and image-text retrieval (frozen image and text towers, no training labels)",
    tasks=("zeroshot", "retrieval"),
    rows=(
        _row("CLIP", _T3_EGMA, (20.1,), note="EGMA Table 2, \"CLIP [42]\" (general-domain CLIP)"),
        _row("GLoRIA", _T3_EGMA, (53.3,), note="EGMA Table 2, \"GLoRIA [15]\""),
        _row("MGCA (backbone not stated)", _T3_EGMA, (43.6,),
             note="EGMA Table 2, \"MGCA [53]\"; EGMA names no MGCA backbone or checkpoint"),
        _row("MedCLIP", _T3_EGMA, (57.5,), note="EGMA Table 2, \"MedCLIP [55]\""),
    ),
    source=(f"EGMA Table 2 ({EGMA_PAPER}, NeurIPS 2024), read in a full-text copy of the NeurIPS version, not "
            f"checked against the PDF; the baselines as EGMA evaluated them, not their own papers"),
    caveats=(
        f"The MGCA paper ({MGCA_PAPER}) reports no zero-shot classification or retrieval numbers.",
        "Published CheXpert 5x200 accuracy: EGMA's Table 2 (5-way, the class of the most similar prompt, on "
        "GLoRIA's CheXpert 5x200; this board's 1,000 IDs follow the MGCA code's draw, and whether EGMA used the same "
        "images is not stated) with GLoRIA's radiologist-written prompts; this board's prompts are its own "
        "(tasks/zeroshot/prompts.py), so a published and a board number differ in prompts as well as weights. "
        "EGMA's PRIOR and EGMA rows are not shown (methods outside this suite's comparison set); its F1 (averaging "
        "not stated) and RSNA accuracy/F1 (the board's RSNA column is AUROC) are not used.",
        f"No source read prints CheXpert 5x200 image-to-text precision@K or MIMIC-CXR test-split recall@K on the "
        f"board's definitions (EGMA's retrieval table is CheXpert 8x200; BenchX's is MIMIC 5x200): those cells stay "
        f"empty. Also tried: the GLoRIA paper ({GLORIA_PAPER}) and its code's README (github.com/marshuang80/gloria), "
        f"the MedCLIP paper ({MEDCLIP_PAPER}) and README, the CXR-CLIP README, BenchX (arXiv 2410.21969).",
        "Zero-shot and retrieval use no training labels: the label fraction of their columns is nominal (100%).",
        "Against chance: `python -m benchmark chance ENTRY` tests each column of an entry against a model "
        "that ignores the images (benchmark/scoring/chance.py).",
    ),
    chance=True,
)

TABLES: tuple[PublishedTable, ...] = (TABLE_1, TABLE_2, TABLE_3)
