"""Where architectures come from: ``<source>:<name>`` names a model of a library the field publishes in.

One module per source registers a :class:`Source` in :data:`SOURCES` (``timm``, ``torchvision``,
``hf``, ``open_clip``, ``xrv``); ``short_names.py`` registers the short names of MGCA's own
architectures in :data:`ARCHITECTURES`. :func:`resolve_architecture` turns any of these names
into an :class:`~benchmark.backbones.architectures.Architecture`. Nothing is downloaded: a name
that would need the network is an error that says which local file or folder to pass instead.
Heavy libraries (transformers, open_clip, torchxrayvision) are imported only when a name of
their source is resolved.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from benchmark.backbones.architectures import Architecture, ArchitectureError
from benchmark.backbones.preprocessing import PreprocessingError
from benchmark.quoting import one_line, quote
from benchmark.registry import Registry


@dataclass(frozen=True)
class Source:
    name: str
    syntax: str  # how to name an architecture of this source
    covers: str  # which models, and how to list them
    weights: str  # what --checkpoint holds for it
    preprocessing: str  # where its preprocessing is read from
    example: str
    resolve: Callable[[str], Architecture]  # the part of the name after "<source>:"


SOURCES: Registry[Source] = Registry("architecture source")
ARCHITECTURES: Registry[Architecture] = Registry("architecture")  # short names (short_names.py)


def resolve_architecture(name: str) -> Architecture:
    """The architecture ``name`` names: a short name or ``<source>:<name>``."""
    source, colon, rest = name.partition(":")
    if not colon:
        if name in ARCHITECTURES:
            return ARCHITECTURES.get(name)
        raise ArchitectureError(_unknown_short_name(name))
    if not rest:
        raise ArchitectureError(f"architecture {name!r}: name a model after '{source}:', e.g. {SOURCES.get(source).example}")
    return _resolve(SOURCES.get(source).name, rest)


@lru_cache(maxsize=64)
def _resolve(source: str, rest: str) -> Architecture:
    try:
        arch = SOURCES.get(source).resolve(rest)
    except PreprocessingError as error:
        raise ArchitectureError(f"{source}:{rest}: {error}") from None
    try:  # one forward pass and the state dict's shapes on the meta device: nothing is allocated
        arch.shapes, arch.state_shapes
    except Exception as error:  # noqa: BLE001 - a config the library accepted but cannot build or run
        raise ArchitectureError(f"{source}:{quote(rest, 200)}: the model cannot be built from its config "
                                f"({type(error).__name__}: {one_line(str(error))})") from None
    return arch


def _unknown_short_name(name: str) -> str:
    close = difflib.get_close_matches(name, ARCHITECTURES.names(), n=3, cutoff=0.5)
    close += [f"{source}:{name}" for source in ("timm", "torchvision") if _is_model_of(source, name)]
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    return (f"unknown architecture {name!r}.{hint} Short names: {', '.join(ARCHITECTURES.names())}; any other model "
            f"is named by its source: {', '.join(s.syntax for _, s in SOURCES.items())} "
            "(python -m benchmark backbones --all)")


def _is_model_of(source: str, name: str) -> bool:
    if source == "timm":
        import timm

        return timm.is_model(name)
    import torchvision

    return name in torchvision.models.list_models(module=torchvision.models)


for _module in ("short_names", "timm", "torchvision", "hf", "open_clip", "xrv"):
    importlib.import_module(f"{__name__}.{_module}")
