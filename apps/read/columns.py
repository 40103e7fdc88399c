"""Samples as columns all the way to the response bytes: no Python object per sample.

A telemetry answer is built from numpy columns (timestamps, metric indexes,
values) of a few decoded blocks. Text is made once per distinct timestamp and
metric name, values are formatted by orjson in C, and the pieces are joined in
C; the byte size of a page is bounded from the columns before anything is
encoded.

Value text is Python's `repr` of the float (what `json.dumps` and the CSV export
always wrote): orjson's shortest round-trip digits equal it except for the
exponent spelling of very small and very large numbers, which are given to
`repr` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson

from store.codec import Samples

# Bytes of one value's text at most: '-1.2345678901234567e-308'.
MAX_VALUE_TEXT = 24
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
_ROW_FIXED = len(b'{"timestamp":"","metric_name":,"value":},')


def concat(parts: Sequence[Samples]) -> Samples:
    """Rows of `parts` one after the other, on one sorted name table (no sort, no dedupe).

    Keeps the rows' order; since names are numbered in name order, rows sorted
    by (time, metric name) stay so.
    """
    if len(parts) == 1:
        return parts[0]
    names = sorted({n for p in parts for n in p.names})
    position = {n: i for i, n in enumerate(names)}
    metric = [np.array([position[n] for n in p.names], np.int32)[p.metric] for p in parts if len(p)]
    return Samples(
        ts=np.concatenate([p.ts for p in parts]) if parts else np.zeros(0, np.int64),
        metric=np.concatenate(metric) if metric else np.zeros(0, np.int32),
        value=np.concatenate([p.value for p in parts]) if parts else np.zeros(0),
        names=tuple(names),
    )


def take(s: Samples, n: int) -> Samples:
    return s if n >= len(s) else Samples(s.ts[:n], s.metric[:n], s.value[:n], s.names)


def reverse(s: Samples) -> Samples:
    return Samples(s.ts[::-1], s.metric[::-1], s.value[::-1], s.names)


def select(s: Samples, keep: np.ndarray) -> Samples:
    return s if keep.all() else Samples(s.ts[keep], s.metric[keep], s.value[keep], s.names)


def only_metrics(s: Samples, wanted: frozenset[str]) -> Samples:
    if not wanted or not len(s):
        return s
    table = np.array([n in wanted for n in s.names], dtype=bool)
    return select(s, table[s.metric])


def after(s: Samples, cursor: tuple[int, str], descending: bool) -> Samples:
    """Rows strictly beyond the (time, metric) cursor in the answer's order."""
    ts, metric = cursor
    if descending:
        beyond = np.array([n < metric for n in s.names], dtype=bool)
        keep = (s.ts < ts) | ((s.ts == ts) & beyond[s.metric])
    else:
        beyond = np.array([n > metric for n in s.names], dtype=bool)
        keep = (s.ts > ts) | ((s.ts == ts) & beyond[s.metric])
    return select(s, keep) if len(s) else s


# Text ----------------------------------------------------------------------------------
# ASCII digits of 0..99 and 0..999, fixed width: a text field of many times in one index
_TWO = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8)
_THREE = np.array([[48 + i // 100, 48 + i // 10 % 10, 48 + i % 10] for i in range(1000)], np.uint8)
_DAY_MS = 86_400_000


def timestamp_texts(ms: np.ndarray) -> list[str]:
    """RFC 3339 UTC of each time, milliseconds only when not zero (as format_timestamp)."""
    return [t.decode() for t in timestamp_bytes(ms)]


def timestamp_bytes(ms: np.ndarray, prefix: bytes = b"", suffix: bytes = b"") -> list[bytes]:
    """`prefix`, the RFC 3339 UTC text of each time (as format_timestamp) and `suffix`, as
    bytes: the digits are written into one byte array for all times (no text per time in
    Python), times with milliseconds and without apart."""
    if not len(ms):
        return []
    whole = ms % 1000 == 0
    if whole.all() or not whole.any():
        return _stamps(ms, prefix, suffix, not whole[0])
    out = np.empty(len(ms), dtype=object)
    for sel, with_ms in ((np.flatnonzero(whole), False), (np.flatnonzero(~whole), True)):
        out[sel] = _stamps(ms[sel], prefix, suffix, with_ms)
    return out.tolist()


def _stamps(ms: np.ndarray, prefix: bytes, suffix: bytes, with_ms: bool) -> list[bytes]:
    days, rest = np.divmod(ms.astype(np.int64), _DAY_MS)
    year, month, day = _civil(days)
    seconds = rest // 1000
    template = prefix + b"0000-00-00T00:00:00" + (b".000" if with_ms else b"") + b"Z" + suffix
    text = np.tile(np.frombuffer(template, dtype=np.uint8), (len(ms), 1))
    at = len(prefix)
    for offset, value in (
        (0, year // 100),
        (2, year % 100),
        (5, month),
        (8, day),
        (11, seconds // 3600),
        (14, seconds // 60 % 60),
        (17, seconds % 60),
    ):
        text[:, at + offset : at + offset + 2] = _TWO[value]
    if with_ms:
        text[:, at + 20 : at + 23] = _THREE[rest % 1000]
    return text.view(f"S{len(template)}").ravel().tolist()


def _civil(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 (H. Hinnant's civil_from_days; days >= 0)."""
    z = days + 719_468
    era = z // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    return yoe + era * 400 + (month <= 2), month, day


def value_texts(values: np.ndarray) -> list[bytes]:
    """repr() of each float as bytes; orjson formats all but the exponent-spelled ones."""
    if not len(values):
        return []
    texts = orjson.dumps(np.ascontiguousarray(values), option=_NUMPY)[1:-1].split(b",")
    odd = np.flatnonzero(exponent_spelled(values))
    for i in odd.tolist():
        texts[i] = repr(float(values[i])).encode()
    return texts


def exponent_spelled(values: np.ndarray) -> np.ndarray:
    """Which finite values orjson (like repr) writes with an exponent: below 1e-4 or from
    1e16, zero aside."""
    size = np.abs(values)
    return (size != 0) & ((size < 1e-4) | (size >= 1e16))


def _distinct_times(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct times and, per row, the index of its time (rows may run either way)."""
    return np.unique(ts, return_inverse=True)


# Size bounds ---------------------------------------------------------------------------
def row_bytes_bound(s: Samples) -> np.ndarray:
    """An upper bound of each row's bytes in the JSON rows shape (and in long CSV)."""
    name_len = np.array([len(orjson.dumps(n)) for n in s.names], dtype=np.int64)
    ts_len = np.where(s.ts % 1000 == 0, 20, 24)
    return _ROW_FIXED + ts_len + name_len[s.metric] + MAX_VALUE_TEXT


def column_bytes_bound(s: Samples, n_metrics: int) -> np.ndarray:
    """An upper bound of each row's bytes in the columns shape, with at most `n_metrics`
    series: the first row of a timestamp pays for the time and a `null` in every series,
    each row for replacing one `null` by its value."""
    new_time = np.ones(len(s), dtype=bool)
    new_time[1:] = s.ts[1:] != s.ts[:-1]
    per_time = 15 + 5 * max(n_metrics, len(s.names))
    return (MAX_VALUE_TEXT + 1 - 5) + new_time * per_time


def cut(s: Samples, sizes: np.ndarray, budget: int) -> int:
    """How many leading rows fit `budget` bytes (at least one, so pages always move on)."""
    if not len(s):
        return 0
    fits = int(np.searchsorted(np.cumsum(sizes), budget, side="right"))
    return max(1, fits)


# Encoders ------------------------------------------------------------------------------
def rows_json(s: Samples, before: bytes = b"", after: bytes = b"") -> bytes:
    """`[{"timestamp", "metric_name", "value"}, ...]` for every row, in row order, between
    `before` and `after` (the answer's envelope: one join, no copy of the rows' bytes)."""
    if not len(s):
        return before + b"[]" + after
    times, slot = _distinct_times(s.ts)
    # three pieces a row: the previous row's end with this one's time, name, value
    heads = np.array(timestamp_bytes(times, b'},{"timestamp":"', b'","metric_name":'), dtype=object)
    names = np.array([orjson.dumps(n) + b',"value":' for n in s.names], dtype=object)
    n = len(s)
    pieces: list[bytes] = [b""] * (3 * n)
    pieces[0::3] = heads[slot].tolist()
    pieces[0] = pieces[0][2:]  # the first row follows no row
    pieces[1::3] = names[s.metric].tolist()
    pieces[2::3] = value_texts(s.value)
    pieces[0] = before + b"[" + pieces[0]
    pieces[-1] += b"}]" + after
    return b"".join(pieces)


def rows_dicts(s: Samples) -> list[dict]:
    """The rows as dicts (GraphQL's shape): one object per sample, for small pages only."""
    times, slot = _distinct_times(s.ts)
    text = timestamp_texts(times)
    names = s.names
    return [
        {"timestamp": text[t], "metric_name": names[m], "value": v}
        for t, m, v in zip(slot.tolist(), s.metric.tolist(), s.value.tolist(), strict=True)
    ]


def pivot(s: Samples) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Distinct times in row order, and per metric its values at those times (NaN where absent)."""
    times, slot = _distinct_times(s.ts)
    if len(s) and s.ts[0] > s.ts[-1]:  # descending rows: keep their order
        times, slot = np.ascontiguousarray(times[::-1]), len(times) - 1 - slot
    grid = np.full((len(s.names), len(times)), np.nan)
    grid[s.metric, slot] = s.value
    present = np.zeros(len(s.names), dtype=bool)
    present[s.metric] = True
    return times, {n: grid[i] for i, n in enumerate(s.names) if present[i]}


def columns_json(s: Samples, extra: dict) -> bytes:
    """`{**extra, "timestamps": [ms, ...], "series": {metric: [value|null, ...]}}`."""
    times, series = pivot(s)
    return orjson.dumps({**extra, "timestamps": times, "series": series}, option=_NUMPY)


def csv_long(s: Samples) -> bytes:
    """`timestamp,metric_name,value` lines (no header) for every row."""
    if not len(s):
        return b""
    times, slot = _distinct_times(s.ts)
    heads = np.array(timestamp_bytes(times, b"", b","), dtype=object)
    names = np.array([csv_cell(n).encode() + b"," for n in s.names], dtype=object)
    n = len(s)
    pieces: list[bytes] = [b""] * (4 * n)
    pieces[0::4] = heads[slot].tolist()
    pieces[1::4] = names[s.metric].tolist()
    pieces[2::4] = value_texts(s.value)
    pieces[3::4] = [b"\r\n"] * n
    return b"".join(pieces)


def csv_wide(s: Samples, columns: Sequence[str]) -> bytes:
    """One line per distinct time: the time, then each of `columns` (empty where absent)."""
    times, series = pivot(s)
    n, k = len(times), len(columns)
    if not n:
        return b""
    stride = 2 * k + 2  # time, then "," and a cell per column, then the line end
    pieces: list[bytes] = [b","] * (n * stride)
    pieces[0::stride] = timestamp_bytes(times)
    for j, column in enumerate(columns):
        values = series.get(column)
        if values is None:
            cells: list[bytes] = [b""] * n
        else:
            absent = np.isnan(values)
            texts = np.array(value_texts(np.where(absent, 0.0, values)), dtype=object)
            texts[absent] = b""
            cells = texts.tolist()
        pieces[2 + 2 * j :: stride] = cells
    pieces[stride - 1 :: stride] = [b"\r\n"] * n
    return b"".join(pieces)


def csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
