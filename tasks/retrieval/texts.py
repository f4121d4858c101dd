"""The text pool of CheXpert 5×200 image→text retrieval: protocol data, versioned with the task.

Source. GLoRIA (Huang et al., ICCV 2021) retrieves CheXpert report text for the 5×200 images;
those reports are not public, so no public pool reproduces its setting. These sentences are this
suite's own: for each of the five competition findings, short sentences as a radiology report
states the finding, written from the finding's definition (Fleischner Society glossary, Hansell
et al., Radiology 2008: atelectasis, reduced inflation with volume loss, linear or plate-like;
cardiomegaly, an enlarged cardiac silhouette; consolidation, airspace filled so that vessels are
obscured, air bronchograms; pulmonary edema, interstitial and alveolar fluid with vascular
congestion, Kerley lines, peribronchial cuffing; pleural effusion, pleural fluid blunting the
costophrenic angle, a meniscus, layering) with varied extent, laterality and wording. Each
sentence names its own finding only: a 5×200 image has exactly one of the five findings and none
of eight further observations (PROTOCOL.md 3.2), so the sentences avoid the words of the others
("opacity", "pneumonia", ...). They were written before any run and never tuned on any image:
changing one is a new :data:`TEXTS_VERSION` and a new task version.

Each class has :data:`TEXTS_PER_CLASS` sentences, so Precision@K up to K = 10 can reach 1. A text's
ID is ``<class>/<two-digit index>`` (``Atelectasis/01``), its relevance group its class.

Changelog:
  1: first version: 12 sentences for each of Atelectasis, Cardiomegaly, Consolidation, Edema,
     Pleural Effusion.
"""

from __future__ import annotations

TEXTS_VERSION = 1
TEXTS_PER_CLASS = 12

TEXTS: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        "Bibasilar atelectasis.",
        "Linear atelectasis at the left lung base.",
        "Subsegmental atelectasis in the right lower lobe.",
        "Plate-like atelectasis at the right base.",
        "Mild bibasilar atelectatic changes.",
        "Left lower lobe atelectasis with mild volume loss.",
        "Discoid atelectasis in the left mid lung.",
        "Right middle lobe atelectasis.",
        "Streaky bibasilar atelectasis with low lung volumes.",
        "Minimal atelectasis at the lung bases.",
        "Collapse of the left lower lobe.",
        "Partial collapse of the right upper lobe with elevation of the minor fissure.",
    ),
    "Cardiomegaly": (
        "Cardiomegaly.",
        "The heart is enlarged.",
        "Moderate cardiomegaly.",
        "Mild enlargement of the cardiac silhouette.",
        "The cardiac silhouette is markedly enlarged.",
        "Stable cardiomegaly.",
        "The heart size is moderately enlarged.",
        "Enlarged cardiac silhouette with a cardiothoracic ratio above one half.",
        "Severe cardiomegaly.",
        "Cardiomegaly with otherwise clear lungs.",
        "Global enlargement of the heart.",
        "The heart is mildly enlarged; the lungs are clear.",
    ),
    "Consolidation": (
        "Right lower lobe consolidation.",
        "Consolidation in the left lower lobe.",
        "Dense airspace consolidation in the right upper lobe.",
        "Consolidation with air bronchograms at the left lung base.",
        "Focal consolidation in the right middle lobe.",
        "Patchy consolidation at the left base.",
        "Lingular consolidation.",
        "Multifocal airspace consolidation.",
        "Left basilar consolidation.",
        "Lobar consolidation of the right upper lobe.",
        "Airspace consolidation in the right lung base.",
        "New left upper lobe consolidation.",
    ),
    "Edema": (
        "Pulmonary edema.",
        "Mild interstitial pulmonary edema.",
        "Moderate pulmonary edema.",
        "Pulmonary vascular congestion with interstitial edema.",
        "Perihilar haziness consistent with pulmonary edema.",
        "Kerley B lines indicating interstitial edema.",
        "Diffuse alveolar edema.",
        "Cephalization of the pulmonary vessels with mild edema.",
        "Severe pulmonary edema.",
        "Peribronchial cuffing and interstitial edema.",
        "Findings consistent with mild pulmonary edema.",
        "Bilateral perihilar edema.",
    ),
    "Pleural Effusion": (
        "Small left pleural effusion.",
        "Small right pleural effusion.",
        "Moderate right pleural effusion.",
        "Bilateral pleural effusions.",
        "Large left pleural effusion.",
        "Blunting of the left costophrenic angle consistent with a small pleural effusion.",
        "Layering right pleural effusion.",
        "Small bilateral pleural effusions.",
        "Moderate left pleural effusion with a meniscus.",
        "Trace right pleural effusion.",
        "Loculated right pleural effusion.",
        "Pleural effusion at the right base.",
    ),
}


def text_pool() -> tuple[list[str], list[str], list[str]]:
    """(text IDs, texts, relevance groups) of the pool, classes in :data:`TEXTS` order."""
    ids, texts, groups = [], [], []
    for name, sentences in TEXTS.items():
        for index, sentence in enumerate(sentences, start=1):
            ids.append(f"{name}/{index:02d}")
            texts.append(sentence)
            groups.append(name)
    return ids, texts, groups
