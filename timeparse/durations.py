"""Durations written the way operators write them: `500ms`, `10s`, `5m`, `1h`, `7d`."""

from __future__ import annotations

import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


def parse_duration(raw: str) -> float:
    """Seconds from `10`, `10s`, `500ms`, `5m`, `1h` or `7d`; ValueError otherwise.

    >>> parse_duration("500ms"), parse_duration("5m"), parse_duration("2")
    (0.5, 300.0, 2.0)
    """
    match = _DURATION.match(raw)
    if not match:
        raise ValueError(f"{raw!r} is not a duration (examples: 500ms, 10s, 5m, 1h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
