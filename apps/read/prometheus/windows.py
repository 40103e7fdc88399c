"""Instant lookups and `*_over_time` / `rate` family functions on one series, for all steps.

Semantics are Prometheus 2.x's (the oracle the tests run): an instant lookup
takes the newest sample in `[t - 5m, t]`; a range `[r]` covers the samples in
`[t - r, t]`, both ends included. `rate`, `increase` and `delta` extrapolate
like Prometheus' `extrapolatedRate`. Every function is vectorised over the
steps: windows are index pairs `lo, hi` from `searchsorted`, and reductions
gather the window's samples into a (steps x longest window) block, cut into
pieces so memory stays bounded.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from store import inline

LOOKBACK_MS = 300_000
_GATHER_CELLS = 1 << 20  # elements of one gathered block

RANGE_FUNCTIONS = frozenset(
    {
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "sum_over_time",
        "count_over_time",
        "last_over_time",
        "stddev_over_time",
        "stdvar_over_time",
        "rate",
        "increase",
        "irate",
        "delta",
        "deriv",
    }
)


def lookback(ts: np.ndarray, v: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) of the newest sample in [t - 5m, t] for each t of `at`."""
    idx = np.searchsorted(ts, at, side="right") - 1
    safe = np.maximum(idx, 0)
    ok = (idx >= 0) & (ts[safe] >= at - LOOKBACK_MS) if len(ts) else np.zeros(len(at), bool)
    return (v[safe] if len(ts) else np.zeros(len(at))), ok


def _gather(
    v: np.ndarray, lo: np.ndarray, hi: np.ndarray, fill: float, reduce: Callable
) -> np.ndarray:
    """reduce(block, axis=1) where block[i] is v[lo[i]:hi[i]] padded with `fill`."""
    width = _width(lo, hi)
    out = np.full(len(lo), fill, dtype=float)
    if width == 0:
        return out
    span = np.arange(width)
    step = max(1, _GATHER_CELLS // width)
    for s in range(0, len(lo), step):
        idx = lo[s : s + step, None] + span
        inside = idx < hi[s : s + step, None]
        block = np.where(inside, v[np.minimum(idx, len(v) - 1)], fill)
        out[s : s + step] = reduce(block, axis=1)
    return out


def _width(lo: np.ndarray, hi: np.ndarray) -> int:
    """The longest window, its (windows x longest) cells charged before they are gathered."""
    width = int((hi - lo).max(initial=0))
    inline.spend(len(lo) * width)
    return width


def over_time(
    name: str, ts: np.ndarray, v: np.ndarray, at: np.ndarray, range_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """(values, present) of range function `name` over `[t - range, t]` for each t of `at`."""
    if not len(ts):
        return np.zeros(len(at)), np.zeros(len(at), dtype=bool)
    lo = np.searchsorted(ts, at - range_ms, side="left")
    hi = np.searchsorted(ts, at, side="right")
    return _evaluate(name, ts, v, lo, hi, at, range_ms)


def _evaluate(
    name: str,
    ts: np.ndarray,
    v: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    at: np.ndarray,
    range_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    """`name` over the windows ts[lo:hi] ending at `at` (lo, hi, at: one per result)."""
    n = hi - lo
    with np.errstate(all="ignore"):
        if name in ("rate", "increase", "delta"):
            return _extrapolated(ts, v, lo, hi, at, range_ms, name)
        if name == "irate":
            return _irate(ts, v, lo, hi)
        if name == "deriv":
            return _deriv(ts, v, lo, hi)
        ok = n > 0
        if name == "count_over_time":
            return n.astype(float), ok
        if name == "last_over_time":
            return v[np.maximum(hi - 1, 0)], ok
        if name == "min_over_time":
            return _gather(v, lo, hi, np.inf, np.min), ok
        if name == "max_over_time":
            return _gather(v, lo, hi, -np.inf, np.max), ok
        total = _gather(v, lo, hi, 0.0, np.sum)
        if name == "sum_over_time":
            return total, ok
        mean = total / n
        if name == "avg_over_time":
            return mean, ok
        sq = _gather_centered(v, lo, hi, mean)
        var = sq / n
        return (np.sqrt(var) if name == "stddev_over_time" else var), ok


def lookback_all(
    series: list[tuple[np.ndarray, np.ndarray]], at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`lookback` of every series: (series, steps) values and presence."""
    if len(at) == 1:
        return _lookback_once(series, int(at[0]))
    return _rows([lookback(ts, v, at) for ts, v in series], len(at))


def _lookback_once(
    series: list[tuple[np.ndarray, np.ndarray]], t: int
) -> tuple[np.ndarray, np.ndarray]:
    """`lookback` at one time (an instant query): most series' newest sample is at or before
    `t`, found without a search (a fleet is hundreds of series of one sample or a few)."""
    values = np.zeros((len(series), 1))
    ok = np.zeros((len(series), 1), dtype=bool)
    for n, (ts, v) in enumerate(series):
        if not len(ts):
            continue
        i = len(ts) - 1 if ts[-1] <= t else int(ts.searchsorted(t, side="right")) - 1
        if i >= 0 and ts[i] >= t - LOOKBACK_MS:
            values[n, 0] = v[i]
            ok[n, 0] = True
    return values, ok


def over_time_all(
    name: str, series: list[tuple[np.ndarray, np.ndarray]], at: np.ndarray, range_ms: int
) -> tuple[np.ndarray, np.ndarray]:
    """`over_time` of every series: (series, steps) values and presence.

    rate, increase and delta need only each window's ends (and a counter's resets):
    those are gathered series by series, and the extrapolation (some thirty numpy
    operations) runs once on (series, steps) arrays instead of once per series.
    """
    if name not in _EXTRAPOLATED or not series:
        return _rows([over_time(name, ts, v, at, range_ms) for ts, v in series], len(at))
    with np.errstate(all="ignore"):
        ends = [
            _ends(ts, v, *_bounds(ts, at, range_ms), name != "delta") if len(ts) else _no_ends(at)
            for ts, v in series
        ]
    stacked = [np.array(part) for part in zip(*ends, strict=True)]
    with np.errstate(all="ignore"):
        return _extrapolate(*stacked, at, range_ms, name)


_EXTRAPOLATED = frozenset({"rate", "increase", "delta"})


def _bounds(ts: np.ndarray, at: np.ndarray, range_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Each window [t - range, t] as indexes ts[lo:hi]."""
    return ts.searchsorted(at - range_ms, side="left"), ts.searchsorted(at, side="right")


def _rows(rows: list[tuple[np.ndarray, np.ndarray]], steps: int) -> tuple[np.ndarray, np.ndarray]:
    if not rows:
        return np.zeros((0, steps)), np.zeros((0, steps), dtype=bool)
    return np.array([r[0] for r in rows]), np.array([r[1] for r in rows])


def _gather_centered(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Sum of (v - mean[step])^2 over each window."""
    width = _width(lo, hi)
    out = np.zeros(len(lo))
    if width == 0:
        return out
    span = np.arange(width)
    step = max(1, _GATHER_CELLS // width)
    for s in range(0, len(lo), step):
        idx = lo[s : s + step, None] + span
        inside = idx < hi[s : s + step, None]
        dev = v[np.minimum(idx, len(v) - 1)] - mean[s : s + step, None]
        out[s : s + step] = np.where(inside, dev * dev, 0.0).sum(axis=1)
    return out


def _extrapolated(
    ts: np.ndarray,
    v: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    at: np.ndarray,
    range_ms: int,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Prometheus' extrapolatedRate: rate/increase are counters (resets added back), delta not."""
    return _extrapolate(*_ends(ts, v, lo, hi, name != "delta"), at, range_ms, name)


_Ends = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def _ends(ts: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray, counter: bool) -> _Ends:
    """Per window: samples, first and last value and time, and (counters) the resets' sum."""
    first, last = np.minimum(lo, len(v) - 1), np.maximum(hi - 1, 0)
    resets = np.zeros(len(lo))
    if counter:
        # a drop between consecutive samples is a reset: add back the value before it
        drops = np.where(v[1:] < v[:-1], v[:-1], 0.0)
        if drops.any():
            cum = np.concatenate(([0.0], np.cumsum(drops)))
            resets = cum[last] - cum[np.minimum(first, last)]
    return hi - lo, v[first], v[last], ts[first], ts[last], resets


def _no_ends(at: np.ndarray) -> _Ends:
    count = np.zeros(len(at), np.int64)
    return count, count * 0.0, count * 0.0, count, count, count * 0.0


def _extrapolate(
    count: np.ndarray,
    v_first: np.ndarray,
    v_last: np.ndarray,
    t_first: np.ndarray,
    t_last: np.ndarray,
    resets: np.ndarray,
    at: np.ndarray,
    range_ms: int,
    name: str,
) -> tuple[np.ndarray, np.ndarray]:
    """extrapolatedRate from each window's ends; every array one shape ((series,) steps)."""
    ok = count >= 2
    if not ok.any():
        return np.zeros(ok.shape), ok
    counter = name != "delta"
    result = v_last - v_first + resets
    to_start = (t_first - (at - range_ms)) / 1000.0
    to_end = (at - t_last) / 1000.0
    sampled = (t_last - t_first) / 1000.0
    average = sampled / (count - 1)
    if counter:
        to_zero = sampled * (v_first / result)
        shorter = (result > 0) & (v_first >= 0) & (to_zero < to_start)
        to_start = np.where(shorter, to_zero, to_start)
    threshold = average * 1.1
    interval = sampled + np.where(to_start < threshold, to_start, average / 2)
    interval = interval + np.where(to_end < threshold, to_end, average / 2)
    factor = interval / sampled
    if name == "rate":
        factor = factor / (range_ms / 1000.0)
    return result * factor, ok


def _irate(
    ts: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    ok = hi - lo >= 2
    last = np.maximum(hi - 1, 0)
    prev = np.maximum(hi - 2, 0)
    delta = np.where(v[last] < v[prev], v[last], v[last] - v[prev])
    dt = (ts[last] - ts[prev]) / 1000.0
    return delta / dt, ok


def _deriv(
    ts: np.ndarray, v: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slope per second, x measured from the window's first sample."""
    n = (hi - lo).astype(float)
    ok = hi - lo >= 2
    first = np.minimum(lo, len(ts) - 1)
    x = ts.astype(float)
    out = np.zeros(len(lo))
    width = _width(lo, hi)
    if width == 0:
        return out, ok
    span = np.arange(width)
    step = max(1, _GATHER_CELLS // width)
    for s in range(0, len(lo), step):
        idx = lo[s : s + step, None] + span
        inside = idx < hi[s : s + step, None]
        safe = np.minimum(idx, len(v) - 1)
        xs = np.where(inside, (x[safe] - x[first[s : s + step], None]) / 1000.0, 0.0)
        ys = np.where(inside, v[safe], 0.0)
        k = n[s : s + step]
        sx, sy = xs.sum(axis=1), ys.sum(axis=1)
        cov = (xs * ys).sum(axis=1) - sx * sy / k
        var = (xs * xs).sum(axis=1) - sx * sx / k
        y0 = v[first[s : s + step]]
        constant = ~(inside & (v[safe] != y0[:, None])).any(axis=1)
        out[s : s + step] = np.where(constant, 0.0, cov / var)
    return out, ok
