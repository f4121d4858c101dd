"""Safe, honest checkpoint loading.

Safe: nothing in a checkpoint is ever executed. Pickled checkpoints are read with torch's
``weights_only`` unpickler. Classes from packages that are not installed (PyTorch Lightning's
``AttributeDict`` in ``hyper_parameters``, ``argparse.Namespace``, ...) are replaced by inert
placeholders that can hold data but refuse to be called, so a pickle that tries to *call* a
global (``os.system``, ``builtins.eval``, ...) is refused with :class:`UnsafeCheckpointError`.

Honest: the encoder weights are matched key by key against the architecture and the result is
reported (matched, missing, unexpected, shape-mismatched); anything short of a complete encoder
fails unless partial loads are explicitly allowed (reference defect B21).
"""

from __future__ import annotations

import hashlib
import pickle
import re
import zipfile
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from benchmark.backbones.architectures import Architecture, expected_state_shapes, is_optional_key
from benchmark.hashing import file_sha256

# Where a checkpoint may keep its weights, tried in this order.
STATE_DICT_CONTAINERS = ("state_dict", "model", "module", "model_state_dict", "teacher", "net")
PICKLE_SUFFIXES = (".ckpt", ".pth", ".pt", ".bin", ".tar")


class CheckpointError(ValueError):
    """A checkpoint cannot be used; the message names the file and what to do."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle tries to run code."""


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
# Reading a file into a flat {key: tensor} mapping
# --------------------------------------------------------------------------------------------


class _RefusesCalls(type):
    """Metaclass of placeholders: instances can be rebuilt (NEWOBJ/BUILD), never called (REDUCE)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeCheckpointError(f"the pickle calls {cls.__qualname__}{_short(args)}")


def _short(args: tuple) -> str:
    text = repr(args)
    return text if len(text) <= 120 else text[:117] + "..."


def _placeholder(full_name: str) -> type:
    """An inert stand-in for the class ``full_name`` of a package that need not be installed.

    Rebuilding an instance (NEWOBJ) yields an empty ``OrderedDict``: the only container that
    torch's restricted unpickler lets receive both items (SETITEMS, for dict subclasses such
    as Lightning's AttributeDict) and attribute state (BUILD, for objects such as
    ``argparse.Namespace``). Calling the class (REDUCE) raises.
    """
    return _RefusesCalls(full_name, (), {"__new__": lambda cls, *args: OrderedDict(), "__module__": __name__})


def _foreign_globals(path: Path) -> list[str]:
    try:
        return list(torch.serialization.get_unsafe_globals_in_checkpoint(str(path)))
    except Exception:  # legacy (non-zip) format: discovered one by one below
        return []


_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
# What torch's restricted unpickler (or a placeholder) says when a pickle wants to run code.
_CODE_EXECUTION_SIGNS = ("is blocked", "Trying to call reduce", "the pickle calls")


def _reason(error: Exception) -> str:
    """The informative line of torch's long 'Weights only load failed' message."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    informative = [line for line in lines if not line.startswith(("Weights only load failed", "Check the documentation", "Please file an issue"))]
    return (informative or lines or [type(error).__name__])[0]


def _torch_load_safely(path: Path) -> Any:
    names = _foreign_globals(path)
    for _ in range(64):  # each retry admits one more placeholder (legacy format only)
        placeholders = [(_placeholder(name), name) for name in names]
        try:
            with torch.serialization.safe_globals(placeholders):
                return torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, UnsafeCheckpointError) as error:
            reason = _reason(error)
            if any(sign in reason for sign in _CODE_EXECUTION_SIGNS):
                raise UnsafeCheckpointError(f"{path}: refused, the pickle would run code ({reason}); nothing was executed") from None
            if "Unsupported operand" in reason:
                raise CheckpointError(f"{path}: not a PyTorch checkpoint, truncated, or using pickle instructions the safe loader refuses ({reason})") from None
            match = _UNSUPPORTED_GLOBAL.search(reason)
            if match and match.group(1) not in names:
                names.append(match.group(1))
                continue
            raise CheckpointError(f"{path}: cannot be read safely: {reason}") from None
        except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint, or truncated ({_reason(error)})") from None
    raise CheckpointError(f"{path}: too many foreign objects in the pickle")


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """Return the flat tensor mapping stored in ``path`` and the container key it came from."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), ""
        except SafetensorError as error:
            raise CheckpointError(f"{path}: corrupt safetensors file ({error})") from None
    if path.suffix not in PICKLE_SUFFIXES and not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: unknown checkpoint format; expected .safetensors or one of {PICKLE_SUFFIXES}")
    content = _torch_load_safely(path)
    return _find_state_dict(content, path)


def _is_tensor_mapping(value: Any) -> bool:
    return isinstance(value, Mapping) and len(value) > 0 and all(isinstance(v, torch.Tensor) for v in value.values())


def _find_state_dict(content: Any, path: Path) -> tuple[dict[str, torch.Tensor], str]:
    if _is_tensor_mapping(content):
        return dict(content), ""
    if isinstance(content, Mapping):
        for key in STATE_DICT_CONTAINERS:
            if _is_tensor_mapping(content.get(key)):
                return dict(content[key]), key
    found = sorted(map(str, content)) if isinstance(content, Mapping) else type(content).__name__
    raise CheckpointError(f"{path}: no state dict found (looked for a tensor mapping or keys {STATE_DICT_CONTAINERS}; found {found})")


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


def detect_prefix(keys: list[str], expected: set[str]) -> str:
    """The key prefix under which the encoder sits, e.g. ``img_encoder_q.model.`` for MGCA.

    Raises when two prefixes explain the encoder equally well (a momentum encoder next to the
    query encoder, say): the user must then pick one with ``prefix``.
    """
    coverage: Counter[str] = Counter()
    for key in keys:
        parts = key.split(".")
        for cut in range(len(parts)):
            if ".".join(parts[cut:]) in expected:
                coverage[".".join(parts[:cut]) + "." if cut else ""] += 1
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
    expected = expected_state_shapes(arch)
    if prefix is None:
        prefix = detect_prefix(list(state), set(expected))
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
    report.missing = sorted(k for k in expected if k not in selected and not is_optional_key(k))
    report.expected = sum(not is_optional_key(k) for k in expected)
    report.matched = sum(not is_optional_key(k) for k in weights)
    report.unexpected.sort()
    return weights, report


def load_encoder_weights(
    model: torch.nn.Module,
    path: str | Path,
    arch: Architecture,
    prefix: str | None = None,
    allow_partial: bool = False,
) -> LoadReport:
    """Load the encoder part of the checkpoint at ``path`` into ``model`` and return the report."""
    state, container = read_checkpoint(path)
    try:
        weights, report = match_state_dict(state, arch, prefix)
    except CheckpointError as error:
        raise CheckpointError(f"{path}: {error}") from None
    report.sha256 = file_sha256(path)
    report.source = str(path)
    report.container = container
    if report.matched == 0:
        raise CheckpointMismatchError(
            f"{path}: no key matches {arch.name} (prefix {report.prefix!r}); is --arch right? "
            f"first checkpoint keys: {sorted(state)[:5]}",
            report,
        )
    if not report.complete and not allow_partial:
        raise CheckpointMismatchError(
            f"{path}: incomplete load into {arch.name}: matched {report.matched}/{report.expected}, "
            f"missing {len(report.missing)} {report.missing[:3]}, unexpected {len(report.unexpected)} "
            f"{report.unexpected[:3]}, mismatched {len(report.mismatched)} {report.mismatched[:3]}. "
            "Pass allow_partial (--allow-partial) to accept it anyway.",
            report,
        )
    model.load_state_dict(weights, strict=False)
    return report
