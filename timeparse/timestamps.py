"""Timestamps as integer milliseconds since the epoch, UTC."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# fromisoformat takes at most 6 fraction digits; Go's RFC3339Nano writes 9.
_LONG_FRACTION = re.compile(r"(\.\d{6})\d+")
# Epoch values at or above this are read as milliseconds (1e11 s is the year 5138).
EPOCH_MS_THRESHOLD = 100_000_000_000


def parse_timestamp(text: str) -> int:
    """RFC 3339 / ISO 8601 (fraction and offset optional, naive means UTC) or epoch seconds.

    An epoch value at or above EPOCH_MS_THRESHOLD is read as milliseconds.
    Returns epoch milliseconds (sub-millisecond parts are floored). Raises
    ValueError with a readable message on anything else or on a time before 1970.
    No upper bound here (queries may ask up to any time); ingest bounds it with
    TimestampCache(max_ms=...).
    """
    s = text.strip()
    if not s:
        raise ValueError("timestamp is empty")
    ms = _parse_epoch(s) if _NUMBER.match(s) else _parse_iso(s)
    if ms < 0:
        raise ValueError(f"timestamp {_show(s)} is before 1970")
    return ms


def _show(s: str) -> str:
    """The text quoted for an error message, cut short: a field may be 64 KiB."""
    return repr(s) if len(s) <= 40 else repr(s[:40]) + "..."


def _parse_epoch(s: str) -> int:
    # Decimal, not float: 1752871354.123 * 1000 in floats is ...122.99.
    try:
        seconds = Decimal(s)
    except InvalidOperation:
        raise ValueError(f"timestamp {_show(s)} is not a number") from None
    if not seconds.is_finite() or abs(seconds) > Decimal(10) ** 15:
        raise ValueError(f"timestamp {_show(s)} is out of range")
    scaled = seconds if seconds >= EPOCH_MS_THRESHOLD else seconds * 1000
    return math.floor(scaled)


def _parse_iso(s: str) -> int:
    # RFC 3339 allows a lower-case `t` and `z`; fromisoformat does not.
    try:
        dt = datetime.fromisoformat(_LONG_FRACTION.sub(r"\1", s.upper()))
    except ValueError:
        raise ValueError(f"timestamp {_show(s)} is neither RFC 3339 nor epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MS


def format_timestamp(ms: int) -> str:
    """RFC 3339 in UTC with a `Z`; milliseconds shown only when not zero."""
    dt = _EPOCH + timedelta(milliseconds=ms)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class TimestampCache:
    """Memoises parse_timestamp: exports repeat each timestamp once per GPU and metric.

    With `max_ms`, a later time is refused too (the store's keys hold times up
    to a bound); only accepted times are memoised.
    """

    def __init__(self, size: int = 8192, max_ms: int | None = None) -> None:
        self._size = size
        self._max_ms = max_ms
        self._memo: dict[str, int] = {}

    def known(self, text: str) -> int | None:
        """The memoised time of `text`, or None (then call the cache to parse it)."""
        return self._memo.get(text)

    def __call__(self, text: str) -> int:
        ms = self._memo.get(text)
        if ms is None:
            ms = parse_timestamp(text)
            if self._max_ms is not None and ms > self._max_ms:
                raise ValueError(
                    f"timestamp {_show(text.strip())} is after {format_timestamp(self._max_ms)}, "
                    "the latest time the store can hold"
                )
            if len(self._memo) >= self._size:
                self._memo.clear()
            self._memo[text] = ms
        return ms
