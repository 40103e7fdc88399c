"""PromQL over rollup buckets, where the answer is provably Prometheus' on the raw samples.

A rollup bucket `[b, b + res)` holds count, sum, min, max, the first and last value
with their times, and the counter resets inside it (store/rollup.py). When every
evaluation time `t` and the range `r` are multiples of `res`, Prometheus' window
`[t - r, t]` is exactly the buckets starting in `[t - r, t)` plus, when the bucket
starting at `t` has its first sample at `t`, that one sample (the right edge is
included). Then:

- `count/sum/min/max/avg/last_over_time` combine the buckets' fields and the edge;
- `rate/increase/delta` need the window's first and last sample (value and time),
  its sample count and (rate, increase) the resets, which rollups keep for the DCGM
  counters only (store/rollup.py COUNTERS; over a gauge's rollups they answer
  nothing): inside buckets, between consecutive buckets (one's last value above the
  next one's first) and into the edge sample,
  then Prometheus' extrapolation (windows.py) runs on them unchanged;
- the instant lookup (newest sample in `[t - 5m, t]`) is the edge sample, else the
  last sample of the newest bucket starting before `t` if it is at or after `t - 5m`.

Buckets not `usable` (written without the PromQL fields, or holding samples of two
workload periods) make the steps whose window touches them unknown: those answer
nothing rather than an approximation. Sums may differ from Prometheus' in the last
bits (the order of additions), as raw ones do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from apps.read.prometheus import windows
from store.rollup import Buckets

# the functions (besides the instant lookup) answered from buckets; the others need
# every sample (a deviation, the last two samples, a regression line)
CLAIMED = windows.RANGE_FUNCTIONS - {"stddev_over_time", "stdvar_over_time", "irate", "deriv"}


@dataclass(frozen=True)
class BucketSeries:
    """One series' nonempty buckets of one resolution, sorted by start."""

    b: np.ndarray  # int64 bucket starts
    count: np.ndarray
    sum: np.ndarray
    min: np.ndarray
    max: np.ndarray
    first: np.ndarray
    last: np.ndarray
    t_first: np.ndarray  # float64 ms
    t_last: np.ndarray
    resets: np.ndarray
    usable: np.ndarray  # bool: exact fields, samples of this series only
    resolution_ms: int

    @classmethod
    def of(
        cls, b: Buckets, metric: int, resolution_ms: int, usable: np.ndarray | None = None
    ) -> BucketSeries:
        """Metric number `metric` of `b` (sorted by (metric, bucket))."""
        sel = b.metric == metric
        ok = b.exact[sel] if usable is None else usable[sel] & b.exact[sel]
        return cls(
            b.ts[sel],
            b.count[sel],
            b.sum[sel],
            b.min[sel],
            b.max[sel],
            b.first[sel],
            b.last[sel],
            b.t_first[sel],
            b.t_last[sel],
            b.resets[sel],
            ok,
            resolution_ms,
        )

    def __len__(self) -> int:
        return len(self.b)


def aligned(at: np.ndarray, range_ms: int, resolution_ms: int) -> bool:
    """Whether every window's both ends fall on bucket edges of this resolution."""
    if range_ms % resolution_ms or (len(at) and int(at[0]) % resolution_ms):
        return False  # most often decided here, without an array the size of the steps
    return not (at % resolution_ms).any()


def _edge(s: BucketSeries, at: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index of the bucket starting at t or after, it starts at t, its first sample is at t)."""
    e = s.b.searchsorted(at, side="left")
    safe = np.minimum(e, len(s) - 1)
    starts_at = (e < len(s)) & (s.b[safe] == at)
    return e, starts_at, starts_at & (s.t_first[safe] == at)


def _bad_prefix(s: BucketSeries, counter: bool = False) -> np.ndarray:
    """bad[i]: how many of the first i buckets are not usable (range checks in O(1));
    `counter`: a bucket without resets (a gauge's, store/rollup.py) is not usable either."""
    bad = ~s.usable | np.isnan(s.resets) if counter else ~s.usable
    return np.concatenate(([0], np.cumsum(bad)))


def lookback(s: BucketSeries, at: np.ndarray) -> tuple[np.ndarray, ...]:
    """(values, present, known) of the instant lookup at each t of `at` (bucket edges)."""
    resolution_ms = s.resolution_ms
    n = len(at)
    if not len(s):
        return np.zeros(n), np.zeros(n, bool), np.ones(n, bool)
    e, starts_at, edge = _edge(s, at)
    safe_e = np.minimum(e, len(s) - 1)
    j = e - 1
    safe_j = np.maximum(j, 0)
    before = (j >= 0) & (s.t_last[safe_j] >= at - windows.LOOKBACK_MS)
    values = np.where(edge, s.first[safe_e], s.last[safe_j])
    present = edge | before
    reach = (j >= 0) & (s.b[safe_j] + resolution_ms > at - windows.LOOKBACK_MS)
    # a bucket starting at t must be usable (is its first sample at t, and ours?); unless
    # that sample answers, the bucket before decides when it can reach [t - 5m, t)
    known = (~starts_at | s.usable[safe_e]) & (edge | ~reach | s.usable[safe_j])
    return values, present, known


def over_time(
    name: str, s: BucketSeries, at: np.ndarray, range_ms: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, present, known) of range function `name` over `[t - r, t]` for each t."""
    n = len(at)
    if not len(s):
        return np.zeros(n), np.zeros(n, bool), np.ones(n, bool)
    lo = s.b.searchsorted(at - range_ms, side="left")
    hi = s.b.searchsorted(at, side="left")
    e, starts_at, edge = _edge(s, at)
    safe_e = np.minimum(e, len(s) - 1)
    bad = _bad_prefix(s, counter=name in ("rate", "increase"))
    known = (bad[hi] - bad[lo] == 0) & ~(starts_at & ~s.usable[safe_e])
    counts = np.concatenate(([0], np.cumsum(s.count)))
    count = counts[hi] - counts[lo] + edge
    edge_v = s.first[safe_e]
    with np.errstate(all="ignore"):
        values, ok = _value(name, s, lo, hi, edge, edge_v, count, at, range_ms)
    return values, ok, known


def _value(
    name: str,
    s: BucketSeries,
    lo: np.ndarray,
    hi: np.ndarray,
    edge: np.ndarray,
    edge_v: np.ndarray,
    count: np.ndarray,
    at: np.ndarray,
    range_ms: int,
) -> tuple[np.ndarray, np.ndarray]:
    ok = count > 0
    gather = windows._gather  # the raw path's windowed reductions, on bucket fields
    some = hi > lo
    last_i = np.maximum(hi - 1, 0)
    if name == "count_over_time":
        return count.astype(float), ok
    if name == "last_over_time":
        return np.where(edge, edge_v, s.last[last_i]), ok
    if name == "min_over_time":
        inner = gather(s.min, lo, hi, np.inf, np.min)
        return np.where(edge, np.minimum(inner, edge_v), inner), ok
    if name == "max_over_time":
        inner = gather(s.max, lo, hi, -np.inf, np.max)
        return np.where(edge, np.maximum(inner, edge_v), inner), ok
    if name in ("sum_over_time", "avg_over_time"):
        total = gather(s.sum, lo, hi, 0.0, np.sum) + np.where(edge, edge_v, 0.0)
        return (total if name == "sum_over_time" else total / count), ok
    # rate, increase, delta: the window's ends, then Prometheus' extrapolation
    lo_i = np.minimum(lo, len(s) - 1)
    v_first = np.where(some, s.first[lo_i], edge_v)
    t_first = np.where(some, s.t_first[lo_i], at)
    v_last = np.where(edge, edge_v, s.last[last_i])
    t_last = np.where(edge, at, s.t_last[last_i])
    resets = np.zeros(len(at))
    if name != "delta":
        cross = np.zeros(len(s))
        cross[1:] = np.where(s.first[1:] < s.last[:-1], s.last[:-1], 0.0)
        resets = gather(s.resets, lo, hi, 0.0, np.sum) + gather(
            cross, np.minimum(lo + 1, hi), hi, 0.0, np.sum
        )
        into_edge = edge & some & (edge_v < s.last[last_i])
        resets = resets + np.where(into_edge, s.last[last_i], 0.0)
    return windows._extrapolate(count, v_first, v_last, t_first, t_last, resets, at, range_ms, name)


def joined(a: BucketSeries, b: BucketSeries) -> BucketSeries:
    """Two series of disjoint, consecutive spans (a before b) as one."""
    if not len(a):
        return b
    if not len(b):
        return a
    return BucketSeries(
        *(np.concatenate([x, y]) for x, y in zip(_columns(a), _columns(b), strict=True)),
        a.resolution_ms,
    )


def _columns(s: BucketSeries) -> tuple[np.ndarray, ...]:
    return tuple(getattr(s, f) for f in BucketSeries.__dataclass_fields__ if f != "resolution_ms")
