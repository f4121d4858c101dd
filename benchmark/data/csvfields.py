"""Rows with more fields than their CSV header.

pandas reads such a file in two confusing ways: when the first data row is the long one it
silently takes the first column as the index (every value moves one column to the left), and
otherwise its tokenizer error counts lines its own way. Label and prediction readers call
:func:`too_many_fields` first, so that the error names the real line and the real problem.
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import lzma
import zipfile
from pathlib import Path
from typing import IO


def _open_zip_member(path: Path) -> IO[bytes]:
    """The one member of a zip file, as pandas reads ``*.csv.zip``."""
    archive = zipfile.ZipFile(path)
    names = [name for name in archive.namelist() if not name.endswith("/")]
    if len(names) != 1:
        raise csv.Error(f"the zip file holds {len(names)} files, expected one CSV")
    return archive.open(names[0])


OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open, ".zip": _open_zip_member}  # as pandas infers them


def _open_text(path: Path) -> IO[str]:
    opener = OPENERS.get(Path(path).suffix)
    binary = opener(path) if opener else open(path, "rb")
    return io.TextIOWrapper(binary, encoding="utf-8", newline="")


def too_many_fields(path: Path) -> str | None:
    """``"line N: K fields, the header has M"`` for the first row longer than the header, or None.

    Lines are counted as in a text editor (header = line 1; a quoted field spanning lines counts
    them all). Shorter rows are left to the readers, which see their missing cells as empty.
    """
    with _open_text(path) as handle:
        reader = csv.reader(handle, skipinitialspace=True)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if len(row) > len(header):
                return f"line {reader.line_num}: {len(row)} fields, the header has {len(header)}"
    return None
