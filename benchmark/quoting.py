"""Values quoted in error messages, shortened: a message never grows with what a file holds.

A 1 KB pickle can hold a key whose ``str`` is gigabytes long (a tuple nested 40 deep, each level
referring twice to the one below); a JSON value can be a megabyte string. Messages show plain
values by ``repr``, cut to ``limit`` characters, and anything else by its type, never by ``str``.
"""

from __future__ import annotations

from collections.abc import Iterable

LIMIT = 60  # characters of one quoted value
COUNT = 20  # values of a collection


def quote(value: object, limit: int = LIMIT) -> str:
    """``repr`` of a str, bytes, number, bool or None, cut at ``limit`` characters; ``<type>`` for anything else."""
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        return f"{text}... ({len(value)} characters)" if len(value) > limit else text
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 3 * limit:
        return f"<int of {value.bit_length()} bits>"  # repr would print (or refuse) thousands of digits
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return f"<{type(value).__name__}>"


def quote_some(values: Iterable[object], count: int = COUNT, limit: int = LIMIT) -> str:
    """The first ``count`` values, sorted as quoted, and how many more there are: ``['a', 'b', ... (+3)]``."""
    values = list(values)
    shown = sorted(quote(value, limit) for value in values[:count])
    more = f", ... (+{len(values) - count})" if len(values) > count else ""
    return f"[{', '.join(shown)}{more}]"


def one_line(text: str, limit: int = 200) -> str:
    """A library's message on one line (whitespace runs become one space), cut at ``limit`` characters."""
    text = " ".join(text[: 4 * limit].split())
    return text if len(text) <= limit else f"{text[:limit]}..."
