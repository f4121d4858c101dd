"""Safe, honest checkpoint loading.

Safe: nothing in a checkpoint is ever executed. Pickled checkpoints go through
``safe_pickle.py``; safetensors files, sharded ``save_pretrained`` folders with safetensors
shards included, involve no pickle at all.

Honest: the encoder weights are matched key by key against the architecture and the result is
reported (matched, missing, unexpected, shape-mismatched, ignored); anything short of a complete
encoder fails unless partial loads are explicitly allowed (reference defect B21).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from benchmark.backbones.safe_pickle import CheckpointError, UnsafeCheckpointError, reason, torch_load_safely
from benchmark.checkpoint_files import weights_file
from benchmark.hashing import file_sha256
from benchmark.quoting import quote_some

if TYPE_CHECKING:
    from benchmark.backbones.architectures import Architecture

__all__ = ["apply_encoder_weights", "CheckpointError", "CheckpointMismatchError", "LoadReport", "UnsafeCheckpointError", "load_encoder_weights",
           "read_checkpoint", "read_encoder_weights", "sha256_of_state_dict"]

# Where a checkpoint may keep its weights, tried in this order.
STATE_DICT_CONTAINERS = ("state_dict", "model", "module", "model_state_dict", "teacher", "net")



class CheckpointMismatchError(CheckpointError):
    """The checkpoint does not provide the complete encoder."""

    def __init__(self, message: str, report: LoadReport) -> None:
        super().__init__(message)
        self.report = report


def sha256_of_state_dict(state: Mapping[str, torch.Tensor]) -> str:
    """Content hash of weights that never lived in a file (random initialisation)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16 else tensor.float().numpy().tobytes())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Reading a file or a model folder into a flat {key: tensor} mapping
# --------------------------------------------------------------------------------------------


def weight_files(path: str | Path) -> list[Path]:
    """The files that hold the weights of ``path``: itself, a folder's weight file, an index's shards."""
    path = weights_file(path)
    if path.name.endswith(".index.json"):
        return [path, *(path.parent / name for name in sorted(set(_weight_map(path).values())))]
    return [path]


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file; of a folder or sharded checkpoint, over its files' names and hashes."""
    files = weight_files(path)
    if len(files) == 1 and not Path(path).is_dir():
        return file_sha256(files[0])
    lines = "".join(f"{file.name} {file_sha256(file)}\n" for file in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Return the flat tensor mapping stored in ``path`` and the container key it came from.

    ``path`` is a file (pickled PyTorch, ``.safetensors``, a shard index ``*.index.json``) or a
    model folder (``save_pretrained`` layout, see :data:`benchmark.checkpoint_files.FOLDER_WEIGHTS`).
    """
    path = weights_file(path)
    if path.name.endswith(".index.json"):
        return _read_shards(path), ""
    if path.suffix == ".safetensors":
        return _read_safetensors(path), ""
    return find_state_dict(torch_load_safely(path), path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """safetensors holds only tensors and a JSON header: no pickle is involved at all."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as error:  # noqa: BLE001 - SafetensorError, OSError, ...: one line either way
        raise CheckpointError(f"{path}: corrupt safetensors file ({reason(error)})") from None


def _weight_map(index: Path) -> dict[str, str]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        if not (isinstance(weight_map, dict) and all(isinstance(v, str) for v in weight_map.values())):
            raise TypeError("weight_map is not a mapping of key -> file name")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise CheckpointError(f"{index}: not a shard index ({type(error).__name__}: {error}); expected "
                              "{\"weight_map\": {key: shard file}} as save_pretrained writes it") from None
    unsafe = sorted(name for name in set(weight_map.values()) if Path(name).name != name)
    if unsafe:
        raise CheckpointError(f"{index}: shard names must be plain file names beside the index, got {unsafe[:3]}")
    return weight_map


def _read_shards(index: Path) -> dict[str, torch.Tensor]:
    """A sharded checkpoint (``model.safetensors.index.json``): every shard, every key it promises."""
    weight_map = _weight_map(index)
    state: dict[str, torch.Tensor] = {}
    for name in sorted(set(weight_map.values())):
        shard = index.parent / name
        if not shard.is_file():
            raise CheckpointError(f"{index}: shard {name} is missing beside the index")
        if shard.suffix == ".safetensors":
            state |= _read_safetensors(shard)
        else:
            content = torch_load_safely(shard)
            if not _is_tensor_mapping(content):
                raise CheckpointError(f"{shard}: a shard must hold a flat tensor mapping")
            state |= content
    absent = sorted(set(weight_map) - set(state))
    if absent:
        raise CheckpointError(f"{index}: {len(absent)} key(s) promised by the index are in no shard, e.g. {absent[:3]}")
    return state


def _is_tensor_mapping(value: Any) -> bool:
    return (isinstance(value, Mapping) and len(value) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()))


def _module_tensors(root: Any) -> dict[str, torch.Tensor] | None:
    """Parameters and persistent buffers of a pickled ``nn.Module`` (torchxrayvision ships these).

    The module's classes were replaced by placeholders while unpickling; its tensors are read
    from the ``_parameters``, ``_buffers`` and ``_modules`` it was pickled with, so none of its
    code runs. (State-dict hooks, which no encoder here relies on, are not applied.)
    """

    def parts(module: Any) -> tuple[Mapping, Mapping, Mapping, Any] | None:
        attributes = getattr(module, "__dict__", {})
        found = tuple(attributes.get(name) for name in ("_parameters", "_buffers", "_modules"))
        if not all(isinstance(part, Mapping) for part in found):
            return None
        return (*found, attributes.get("_non_persistent_buffers_set") or set())

    if parts(root) is None:
        return None
    state: dict[str, torch.Tensor] = {}
    pending, seen = [("", root)], set()
    while pending:
        prefix, module = pending.pop()
        layout = parts(module)
        if layout is None or id(module) in seen:
            continue
        seen.add(id(module))
        parameters, buffers, children, non_persistent = layout
        state |= {prefix + str(k): v for k, v in parameters.items() if isinstance(v, torch.Tensor)}
        state |= {prefix + str(k): v for k, v in buffers.items() if isinstance(v, torch.Tensor) and k not in non_persistent}
        pending += [(f"{prefix}{name}.", child) for name, child in children.items() if child is not None]
    return state or None


def find_state_dict(content: Any, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    """The flat tensor mapping in an unpickled checkpoint and the container key it came from."""
    candidates = [("", content)]
    if isinstance(content, Mapping):
        candidates += [(key, content.get(key)) for key in STATE_DICT_CONTAINERS]
    for key, candidate in candidates:
        if _is_tensor_mapping(candidate):
            return dict(candidate), key
        tensors = _module_tensors(candidate)
        if tensors:
            return tensors, f"{key} (pickled nn.Module)" if key else "pickled nn.Module"
    found = quote_some(content) if isinstance(content, Mapping) else type(content).__name__
    raise CheckpointError(f"{path}: no state dict found (looked for a tensor mapping, a pickled nn.Module, or keys "
                          f"{STATE_DICT_CONTAINERS}; found {found})")


# --------------------------------------------------------------------------------------------
# Matching against an architecture
# --------------------------------------------------------------------------------------------


@dataclass
class LoadReport:
    arch: str
    sha256: str
    source: str
    container: str = ""
    prefix: str = ""
    matched: int = 0
    expected: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: checkpoint shape vs expected shape"
    ignored: list[str] = field(default_factory=list)  # classifier keys deliberately not loaded

    @property
    def complete(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"ok": self.complete}


def detect_prefix(shapes: Mapping[str, Any], expected: Mapping[str, Any]) -> str:
    """The key prefix under which the encoder sits, e.g. ``img_encoder_q.model.`` for MGCA.

    ``shapes`` and ``expected`` map keys to shapes. A prefix scores the keys it explains with the
    expected shape (so a CLIP text tower, whose key names repeat the vision tower's, does not
    compete with it); names alone decide when shapes explain less than half of what names do
    (a checkpoint of another width, which is then reported as mismatched). Raises when two
    prefixes explain the encoder equally well (a momentum encoder next to the query encoder,
    say): the user must then pick one with ``prefix``.
    """
    by_shape: Counter[str] = Counter()
    by_name: Counter[str] = Counter()
    for key, shape in shapes.items():
        parts = key.split(".")
        for cut in range(len(parts)):
            suffix = ".".join(parts[cut:])
            if suffix in expected:
                prefix = ".".join(parts[:cut]) + "." if cut else ""
                by_name[prefix] += 1
                by_shape[prefix] += tuple(shape) == tuple(expected[suffix])
    # Shapes decide unless they explain far less than names do (a checkpoint of another width, say).
    coverage = by_shape if by_shape and 2 * max(by_shape.values()) >= max(by_name.values()) else by_name
    if not coverage:
        return ""
    best = max(coverage.values())
    tied = sorted(prefix for prefix, count in coverage.items() if count == best)
    if len(tied) > 1:
        raise CheckpointError(
            f"the encoder weights appear under several prefixes {tied}; choose one with --prefix"
        )
    return tied[0]


def match_state_dict(
    state: Mapping[str, torch.Tensor], arch: Architecture, prefix: str | None = None
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """Select the encoder's tensors from ``state`` and report how well they fit ``arch``."""
    expected = arch.state_shapes
    if prefix is None:
        prefix = detect_prefix({key: value.shape for key, value in state.items()}, expected)
    selected = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
    report = LoadReport(arch=arch.name, sha256="", source="", prefix=prefix)
    weights: dict[str, torch.Tensor] = {}
    for key, value in selected.items():
        if key in expected:
            if tuple(value.shape) == tuple(expected[key]):
                weights[key] = value
            else:
                report.mismatched.append(f"{key}: {list(value.shape)} vs {list(expected[key])}")
        elif key.startswith(arch.classifier_prefixes):
            report.ignored.append(key)
        else:
            report.unexpected.append(key)
    report.missing = sorted(k for k in expected if k not in selected and not arch.is_optional_key(k))
    report.expected = sum(not arch.is_optional_key(k) for k in expected)
    report.matched = sum(not arch.is_optional_key(k) for k in weights)
    report.unexpected.sort()
    report.ignored.sort()
    return weights, report


def load_encoder_weights(
    model: torch.nn.Module,
    path: str | Path,
    arch: Architecture,
    prefix: str | None = None,
    allow_partial: bool = False,
) -> LoadReport:
    """Load the encoder part of the checkpoint at ``path`` into ``model`` and return the report."""
    weights, report = read_encoder_weights(path, arch, prefix, allow_partial)
    apply_encoder_weights(model, weights, arch)
    return report


def apply_encoder_weights(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], arch: Architecture) -> None:
    """Copy ``weights`` (checkpoint keys, from :func:`read_encoder_weights`) into the built ``model``."""
    model.load_state_dict({arch.module_keys[key]: value for key, value in weights.items()}, strict=False)


def read_encoder_weights(
    path: str | Path, arch: Architecture, prefix: str | None = None, allow_partial: bool = False
) -> tuple[dict[str, torch.Tensor], LoadReport]:
    """The encoder's tensors in ``path`` (checkpoint keys) and the report, matched against the shapes
    ``arch`` implies (on the meta device): a model the weights do not describe is refused before it is built."""
    state, container = read_checkpoint(path)
    try:
        weights, report = match_state_dict(state, arch, prefix)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    report.sha256 = checkpoint_sha256(path)
    report.source = str(path)
    report.container = container
    if report.matched == 0 and not report.mismatched:
        raise CheckpointMismatchError(
            f"{path}: no key matches {arch.name} (prefix {report.prefix!r}); is --arch {arch.name} the checkpoint's "
            f"architecture? first checkpoint keys: {quote_some(sorted(state), 5)}; first expected keys: {sorted(arch.state_shapes)[:3]}",
            report,
        )
    if not report.complete and (report.matched == 0 or not allow_partial):
        raise CheckpointMismatchError(
            f"{path}: incomplete load into {arch.name}: matched {report.matched}/{report.expected}, "
            f"missing {len(report.missing)} {report.missing[:3]}, unexpected {len(report.unexpected)} "
            f"{quote_some(report.unexpected, 3)}, mismatched {len(report.mismatched)} {quote_some(report.mismatched, 3, 120)}. "
            f"Is --arch {arch.name} the checkpoint's architecture? To accept an incomplete encoder, pass allow_partial "
            "(--allow-partial)",
            report,
        )
    return weights, report
