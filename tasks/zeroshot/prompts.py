"""The class prompts of zero-shot classification: protocol data, versioned with the task.

Source. No reference evaluates MGCA zero-shot (the MGCA paper reports none), and the public
prompt sets of the field are written for other class lists (GLoRIA's and MedCLIP's prompts are
generated from severity × subtype × location templates for the CheXpert 5×200 findings). These
prompts are this suite's own. They follow CheXzero's convention (Tiu et al., "Expert-level
detection of pathologies from unannotated chest X-ray images via self-supervised learning",
Nature Biomedical Engineering 2022): a finding is named as a radiology report names it, and its
absence as "no <finding>". The normal class is named by the phrases reports use for a normal
study. They were written from the class definitions alone, before any run, and never tuned on
any image: changing one is a new :data:`PROMPTS_VERSION` and a new task version.

How a dataset's prediction columns (its classification scheme's classes,
``benchmark/scoring/zeroshot.py``) are scored from the prompts:

* a column with ``positive`` prompts only (COVIDx and CheXpert 5×200: one column per class): the cosine similarity
  of the image embedding with the class embedding, the normalised mean of the prompts' unit
  embeddings (CLIP's prompt ensembling);
* a column with ``positive`` and ``negative`` prompts (RSNA's one binary column ``Target``):
  similarity to the positive class minus similarity to the negative class (CheXzero's
  positive-versus-negative softmax ranks images the same way).

CheXpert 5×200 (one finding per image, no normal class): each finding is named, then stated as
"findings consistent with ...", then described by the radiographic sign that defines it
(atelectasis: volume loss with a linear or plate-like opacity; cardiomegaly: an enlarged cardiac
silhouette; consolidation: airspace opacity with air bronchograms; pulmonary edema: vascular
congestion with interstitial opacities; pleural effusion: a blunted costophrenic angle with a
meniscus), in the wording radiology reports use.

Changelog:
  1: first version (RSNA pneumonia vs normal; COVIDx normal, pneumonia, COVID-19).
  2: CheXpert 5×200: Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion.
     RSNA and COVIDx unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPTS_VERSION = 2

NORMAL = ("no acute cardiopulmonary process", "normal chest radiograph", "the lungs are clear")


@dataclass(frozen=True)
class ColumnPrompts:
    """How one prediction column is scored: positive prompts, and negative ones for a binary column."""

    column: str  # a class column of the dataset's prediction file
    positive: tuple[str, ...]
    negative: tuple[str, ...] = ()  # empty: the column is the positive class's similarity alone


PROMPTS: dict[str, tuple[ColumnPrompts, ...]] = {
    "rsna": (
        ColumnPrompts("Target", positive=("pneumonia", "findings consistent with pneumonia", "airspace opacity concerning for pneumonia"),
                      negative=("no pneumonia", *NORMAL)),
    ),
    "covidx": (
        ColumnPrompts("normal", positive=NORMAL),
        ColumnPrompts("pneumonia", positive=("pneumonia", "findings consistent with pneumonia", "focal consolidation concerning for pneumonia")),
        ColumnPrompts("COVID-19", positive=("covid-19 pneumonia", "findings consistent with covid-19",
                                            "bilateral peripheral ground-glass opacities")),
    ),
    "chexpert": (
        ColumnPrompts("Atelectasis", positive=("atelectasis", "findings consistent with atelectasis",
                                               "volume loss with linear opacity at the lung base")),
        ColumnPrompts("Cardiomegaly", positive=("cardiomegaly", "findings consistent with cardiomegaly",
                                                "enlarged cardiac silhouette")),
        ColumnPrompts("Consolidation", positive=("consolidation", "findings consistent with consolidation",
                                                 "airspace opacity with air bronchograms")),
        ColumnPrompts("Edema", positive=("pulmonary edema", "findings consistent with pulmonary edema",
                                         "pulmonary vascular congestion with interstitial opacities")),
        ColumnPrompts("Pleural Effusion", positive=("pleural effusion", "findings consistent with pleural effusion",
                                                    "blunting of the costophrenic angle with a meniscus")),
    ),
}
