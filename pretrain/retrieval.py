"""Image ↔ report retrieval accuracy on a validation set: the per-epoch check that the two
encoders meet (the reference logs the in-batch version, ``mgca_module.py`` L111-117).

Several images can share one report (a study with PA and AP views), so retrieval is by study:
an image retrieves the right report when its own study's report is among the k most similar
reports (one per study); a report retrieves right when one of its study's images is among the
k most similar images.
"""

from __future__ import annotations

import torch


def retrieval_accuracy(img_emb: torch.Tensor, txt_emb: torch.Tensor, studies: list[str], ks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """``i2t@k`` and ``t2i@k`` for normalised global embeddings of the pairs (row i of each is
    image i with its study's report ``studies[i]``)."""
    names = sorted(set(studies))
    index = {name: i for i, name in enumerate(names)}
    study_of = torch.tensor([index[s] for s in studies])
    first_row: dict[str, int] = {}
    for row, study in enumerate(studies):
        first_row.setdefault(study, row)
    first = torch.tensor([first_row[name] for name in names])  # one report per study
    reports = txt_emb[first].float()
    similarity = img_emb.float() @ reports.t()  # (images, studies)
    result: dict[str, float] = {}
    for k in ks:
        top = similarity.topk(min(k, len(names)), dim=1).indices
        result[f"i2t@{k}"] = float((top == study_of[:, None]).any(dim=1).float().mean())
        top_images = similarity.t().topk(min(k, len(studies)), dim=1).indices  # (studies, k)
        result[f"t2i@{k}"] = float((study_of[top_images] == torch.arange(len(names))[:, None]).any(dim=1).float().mean())
    return result
