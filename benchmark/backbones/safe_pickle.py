"""Reading pickled PyTorch checkpoints without ever running code from them.

Files are read with torch's ``weights_only`` unpickler, widened in two ways that keep it inert:

* **Plain data** that checkpoints carry beside their weights is rebuilt by constructors that
  only make data: numpy arrays, scalars and dtypes (numpy's own reconstructors), ``pathlib``
  paths (as pure paths, which never touch the file system) and ``collections.defaultdict``
  (as a plain ``dict``; its default factory is dropped).
* **Any other class** (PyTorch Lightning's ``AttributeDict``, ``argparse.Namespace``, OmegaConf
  containers, a pickled ``nn.Module``, ...) is replaced by a placeholder that can be rebuilt
  (NEWOBJ, BUILD, SETITEMS) into an empty ``OrderedDict`` holding the pickled state, but
  refuses to be called (REDUCE). A pickle that tries to call anything else (``os.system``,
  ``builtins.eval``, ``Path.touch``, ...) is refused with :class:`UnsafeCheckpointError`.

Every failure, including the odd exception a corrupt or bit-flipped file provokes inside the
unpickler, becomes one :class:`CheckpointError` line that names the file. Torch's advice to
re-run with ``weights_only=False`` is never repeated: it would run the file's code.
"""

from __future__ import annotations

import pathlib
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.checkpoint_files import CheckpointError
from benchmark.quoting import quote

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle tries to run code."""


class _RefusesCalls(type):
    """Metaclass of placeholders: instances can be rebuilt (NEWOBJ/BUILD), never called (REDUCE)."""

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        raise UnsafeCheckpointError(f"the pickle calls {cls.__qualname__}{_short(args)}")


def _short(args: tuple) -> str:
    """The call's arguments for the message: plain values shown, anything else by type (a storage's repr is huge)."""
    shown = [quote(a) for a in args[:4]]
    return f"({', '.join(shown)}{', ...' if len(args) > 4 else ''})"


def _placeholder(full_name: str) -> type:
    """An inert stand-in for the class ``full_name`` of a package that need not be installed.

    Rebuilding an instance (NEWOBJ) yields an empty ``OrderedDict``: the only container that
    torch's restricted unpickler lets receive both items (SETITEMS, for dict subclasses such
    as Lightning's AttributeDict) and attribute state (BUILD, for objects such as
    ``argparse.Namespace``). Calling the class (REDUCE) raises.
    """
    return _RefusesCalls(full_name, (), {"__new__": lambda cls, *args: OrderedDict(), "__module__": __name__})


def _plain_dict(*_: Any) -> dict:
    return {}


def _numpy_globals() -> list[tuple[Any, str]]:
    """numpy's reconstructors under the names numpy 1.x and 2.x pickle them with."""
    reconstruct, scalar = _multiarray._reconstruct, _multiarray.scalar
    entries = [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        entries += [(reconstruct, f"{module}._reconstruct"), (scalar, f"{module}.scalar")]
    # BUILD on a dtype needs its concrete class (Float32DType, ...) allowed too.
    entries += [(cls, f"numpy.dtypes.{name}") for name, cls in vars(np.dtypes).items() if isinstance(cls, type)]
    return entries


def _data_globals() -> list[tuple[Any, str]]:
    """Constructors that only build data, allowed to be called by a checkpoint's pickle."""
    paths = []
    for module in ("pathlib", "pathlib._local"):  # Python >= 3.13 pickles paths from pathlib._local
        paths += [(pathlib.PurePosixPath, f"{module}.{name}") for name in ("PosixPath", "PurePosixPath", "Path")]
        paths += [(pathlib.PureWindowsPath, f"{module}.{name}") for name in ("WindowsPath", "PureWindowsPath")]
    return [*_numpy_globals(), *paths, (_plain_dict, "collections.defaultdict")]


DATA_GLOBALS = _data_globals()
_DATA_NAMES = {name for _, name in DATA_GLOBALS}


def _foreign_globals(path: Path) -> list[str]:
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format, or unreadable: discovered one by one below
        return []
    return [name for name in names if name not in _DATA_NAMES]


_TORCH_ADVICE_END = "WeightsUnpickler error:"
# Lines of torch's message that advise loading the file unsafely or point to its documentation.
_ADVICE_LINES = ("weights_only", "Weights only load failed", "do those steps only", "Check the documentation", "Please file an issue")
_ALLOWLIST_ADVICE = re.compile(r"\s*(Please use `torch\.serialization|Check the documentation).*$")
_UNSUPPORTED_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")
# What torch's restricted unpickler (or a placeholder) says when a pickle wants to run code.
_CODE_EXECUTION_SIGNS = ("is blocked", "Trying to call reduce", "the pickle calls")


def reason(error: BaseException) -> str:
    """The informative line of an error, without torch's advice to load the file unsafely."""
    text = str(error)
    if _TORCH_ADVICE_END in text:
        text = text.split(_TORCH_ADVICE_END, 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip() and not any(a in line for a in _ADVICE_LINES)]
    return (_ALLOWLIST_ADVICE.sub("", lines[0]) if lines else "") or type(error).__name__


def torch_load_safely(path: Path) -> Any:
    """``torch.load`` of ``path`` that runs no code from it; see the module docstring."""
    names = _foreign_globals(path)
    for _ in range(256):  # each retry admits one more placeholder (legacy format only)
        allowed = [*DATA_GLOBALS, *((_placeholder(name), name) for name in names)]
        try:
            with torch.serialization.safe_globals(allowed):
                return torch.load(path, map_location="cpu", weights_only=True)
        except UnsafeCheckpointError as error:
            raise UnsafeCheckpointError(f"{path}: refused, the file tries to run code ({error}); nothing was executed") from None
        except Exception as error:  # noqa: BLE001 - corrupt files raise anything; each becomes one line
            why = reason(error)
            match = _UNSUPPORTED_GLOBAL.search(why)
            # torch's message drops the "builtins." of builtins (GLOBAL getattr); the allowlist needs it
            name = match and (match.group(1) if "." in match.group(1) else f"builtins.{match.group(1)}")
            if name and name not in names:
                names.append(name)
                continue
            if any(sign in why for sign in _CODE_EXECUTION_SIGNS):
                raise UnsafeCheckpointError(f"{path}: refused, the file tries to run code ({why}); nothing was executed") from None
            raise CheckpointError(
                f"{path}: not a readable PyTorch checkpoint (corrupt, truncated or not a checkpoint: "
                f"{type(error).__name__}: {why})"
            ) from None
    raise CheckpointError(f"{path}: too many foreign objects in the pickle")
