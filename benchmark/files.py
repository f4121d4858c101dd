"""Atomic writes: a reader sees a file or folder whole or not at all, never half written.

Every writer builds its target under a temporary name beside it (``os.replace`` is atomic only
within one file system) and renames it into place. The temporary name is
``<target name>.tmp-<pid>-<random>``: it carries the writer's pid, so
:func:`remove_stale_temps` can tell a crashed writer's leftovers from a running writer's.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

TEMP_MARKER = ".tmp-"
_UMASK = os.umask(0)
os.umask(_UMASK)


def _temp_prefix(target: Path) -> str:
    return f"{target.name}{TEMP_MARKER}{os.getpid()}-"


def write_through(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` by calling ``write`` on a temporary path beside it, then renaming that into place.

    ``write`` must write exactly the path it is given (``np.save`` adds ``.npy`` to a bare path:
    give it an open file). An error in ``write`` leaves ``path`` as it was.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path))
    try:
        os.fchmod(handle, 0o666 & ~_UMASK)  # mkstemp creates 0600; results and caches are shared files
        os.close(handle)
        write(Path(temp))
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def write_atomically(path: Path, data: bytes | str) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically, flushed to disk before the rename."""
    payload = data.encode() if isinstance(data, str) else data

    def write(temp: Path) -> None:
        with open(temp, "wb") as stream:
            stream.write(payload)
            stream.flush()
            os.fsync(stream.fileno())

    write_through(path, write)


def replace_directory(folder: Path, fill: Callable[[Path], None]) -> bool:
    """Publish ``folder`` whole: ``fill`` writes into an empty temporary folder beside it, which is
    then renamed to ``folder``.

    Returns False when another writer (a parallel cell, another torchrun rank) published
    ``folder`` first: its folder is kept and this one's is dropped. Used for entries of several
    files that must appear together (the feature store's arrays and their description).
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=_temp_prefix(folder)))
    try:
        os.chmod(scratch, 0o777 & ~_UMASK)  # mkdtemp creates 0700
        fill(scratch)
        try:
            os.replace(scratch, folder)
        except OSError:  # the target exists and is not empty: someone else was first
            if not folder.is_dir():
                raise
            return False
        return True
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def remove_stale_temps(folder: Path) -> list[Path]:
    """Delete the temporary files and folders under ``folder`` left by writers that are no longer
    running (their pid is gone); return them. Temporaries of running writers stay."""
    removed = []
    for temp in sorted(Path(folder).rglob(f"*{TEMP_MARKER}*")):
        pid_text = temp.name.split(TEMP_MARKER, 1)[1].split("-", 1)[0]
        if any(parent in removed for parent in temp.parents) or (pid_text.isdigit() and _process_alive(int(pid_text))):
            continue
        if temp.is_dir() and not temp.is_symlink():
            shutil.rmtree(temp)
        else:
            temp.unlink(missing_ok=True)
        removed.append(temp)
    return removed


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
