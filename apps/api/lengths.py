"""The request body size a client declares, read the same way by the guard and the views."""

from __future__ import annotations

# More digits than any limit has (10**18 bytes is an exabyte): the value reads as TOO_LARGE
# rather than through int(), which refuses over 4,300 digits (a ValueError, not an answer).
MAX_DIGITS = 18
TOO_LARGE = 10**MAX_DIGITS


def declared_length(value: str | bytes | None) -> int | None:
    """A Content-Length value as HTTP defines it (ASCII digits, spaces or tabs around);
    None when it is absent or anything else ("+5", "1_000", "-1", "0x10"). A value of more
    than MAX_DIGITS significant digits is TOO_LARGE, over every limit."""
    if value is None:
        return None
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    text = text.strip(" \t")
    if not text.isascii() or not text.isdigit():
        return None
    significant = text.lstrip("0")
    return TOO_LARGE if len(significant) > MAX_DIGITS else int(significant or "0")
