"""The request body size a client declares, read the same way by the guard and the views."""

from __future__ import annotations


def declared_length(value: str | bytes | None) -> int | None:
    """A Content-Length value as HTTP defines it (digits only, spaces around allowed);
    None when it is absent or anything else ("+5", "1_000", "-1", "0x10")."""
    if value is None:
        return None
    text = value.strip()
    if not text.isdigit() or not text.isascii():
        return None
    return int(text)
