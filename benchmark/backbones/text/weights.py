"""A text tower's weights, matched key by key against the modules it is built from.

A tower is a few *parts*, each a module whose keys sit in the checkpoint under one namespace
(``text_encoder_q.model`` for MGCA's BERT, ``text`` for open_clip's custom text towers, ``""``
for a plain CLIP's text transformer, whose keys sit at the top level beside ``visual.``). A
checkpoint key belongs to the tower when it lies in a part's namespace (for ``""``: when its
first component is one of the part's own top-level names); such a key that the part lacks is
*unexpected*, unless the tower declares it unused (*ignored*: MGCA's cross-attention layers, and
the constant position-id buffers older libraries saved).
The parts are first built on the meta device, so a checkpoint that does not describe them is
refused before anything is allocated; a tower only being checked (``load_text_tower(...,
weights=False)``) stays there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from benchmark.backbones.checkpoint import CheckpointMismatchError, LoadReport, checkpoint_sha256
from benchmark.backbones.text import MATERIALISE, TextTowerError
from benchmark.quoting import one_line, quote_some

Parts = dict[str, nn.Module]  # checkpoint namespace -> module


def _checkpoint_names(module: nn.Module) -> dict[str, str]:
    """{checkpoint key: module key}; transformers >= 5 renames some weights on load (``sources/hf.py``)."""
    from transformers import PreTrainedModel

    if isinstance(module, PreTrainedModel):
        from benchmark.backbones.sources.hf import checkpoint_names

        return checkpoint_names(module)
    return {key: key for key in module.state_dict()}


def _layout(parts: Parts) -> dict[str, tuple[str, str, torch.Size]]:
    """{checkpoint key: (namespace, module key, shape)} of every part."""
    layout = {}
    for namespace, module in parts.items():
        state = module.state_dict()
        for name, module_key in _checkpoint_names(module).items():
            layout[f"{namespace}.{name}" if namespace else name] = (namespace, module_key, state[module_key].shape)
    return layout


def _owned(key: str, parts: Parts, top_level: set[str]) -> bool:
    return any(key.startswith(f"{namespace}.") for namespace in parts if namespace) or key.split(".")[0] in top_level


def _constant(key: str) -> bool:
    """Buffers older libraries saved that hold no learned value (``arange`` position ids: med.py's BERT,
    transformers < 4.31); today's modules keep them out of their state. Reported as ignored."""
    return key.rsplit(".", 1)[-1] == "position_ids"


def _optional(key: str) -> bool:
    return key.endswith("num_batches_tracked")  # BatchNorm step counters do not affect outputs


def match_parts(state: Mapping[str, torch.Tensor], parts: Parts, name: str,
                ignored: Callable[[str], bool] = lambda key: False) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The tower's tensors in ``state`` (checkpoint keys) and the report of how well they fit ``parts``."""
    layout = _layout(parts)
    top_level = {key.split(".")[0] for key, (namespace, _, _) in layout.items() if not namespace}
    report = LoadReport(arch=name, sha256="", source="")
    weights: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if not _owned(key, parts, top_level):
            continue
        if key in layout:
            expected = layout[key][2]
            if tuple(value.shape) == tuple(expected):
                weights[key] = value
            else:
                report.mismatched.append(f"{key}: {list(value.shape)} vs {list(expected)}")
        elif ignored(key) or _constant(key):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    report.missing = sorted(key for key in layout if key not in state and not _optional(key))
    report.expected = sum(not _optional(key) for key in layout)
    report.matched = sum(not _optional(key) for key in weights)
    report.unexpected.sort()
    report.ignored.sort()
    return weights, report


def load_parts(path: Path, state: Mapping[str, torch.Tensor], build: Callable[[], Parts], name: str,
               allow_partial: bool, ignored: Callable[[str], bool] = lambda key: False) -> tuple[Parts, LoadReport]:
    """Build the parts of the tower ``name`` and load their weights from ``state`` (read from ``path``).

    The match is made on the meta device first; an incomplete match raises
    :class:`CheckpointMismatchError` (unless ``allow_partial`` and something matched). When the
    tower is only checked (:data:`MATERIALISE` unset), the matched meta parts are returned.
    """
    try:
        with torch.device("meta"):
            meta = build()
    except Exception as error:  # noqa: BLE001 - the libraries raise many types for a config they cannot build
        raise TextTowerError(f"{path}: the {name} cannot be built from its config ({type(error).__name__}: "
                             f"{one_line(str(error))})") from None
    weights, report = match_parts(state, meta, name, ignored)
    report.sha256, report.source = checkpoint_sha256(path), str(path)
    if not report.complete and (report.matched == 0 or not allow_partial):
        raise CheckpointMismatchError(
            f"{path}: incomplete text tower {name}: matched {report.matched}/{report.expected}, missing "
            f"{len(report.missing)} {quote_some(report.missing, 3)}, unexpected {len(report.unexpected)} "
            f"{quote_some(report.unexpected, 3)}, mismatched {len(report.mismatched)} {quote_some(report.mismatched, 3, 120)}. "
            "Does the checkpoint hold this model's text tower? To accept an incomplete tower, pass allow_partial",
            report,
        )
    if not MATERIALISE.get():
        return meta, report
    parts = build()
    layout = _layout(parts)
    for namespace, module in parts.items():
        module.load_state_dict({layout[key][1]: value for key, value in weights.items() if layout[key][0] == namespace},
                               strict=False)
    return parts, report
