"""Downsampling: per-bucket min, max, sum, count and last of each metric, and the
fields that make PromQL windows exact: the first value, the first and last sample
times, and the counter resets (the sum of the value before each drop).

Rollup blocks use the block codec (docs/STORAGE.md): one row per (bucket start,
metric, field) with the field in the name, `{metric}\\x1f{field}`. Buckets of
finer steps combine exactly into coarser ones: min of mins, max of maxes, sums
and counts added, last of the latest bucket; first of the earliest bucket, resets
added plus each drop between one bucket's last value and the next one's first.
Blocks written before the PromQL fields existed lack their rows: those read as NaN
(`Buckets.exact` is False), and combining keeps NaN, so no bucket made from an old
one passes for exact.

Sums saturate: a bucket whose sum passes the float64 range (values near
1.8e308) holds ±1.7976931348623157e308 instead of ±inf, so a rollup block can
always be encoded and no answer carries inf (docs/STORAGE.md, "Rollups").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store.codec import Samples, decode_block, dedupe, encode_block

BASE_FIELDS = ("min", "max", "sum", "count", "last")
# PromQL fields (docs/PROMETHEUS.md, "Rollup tiers"): times are ms held as float64
# (exact below 2**53); NaN where a bucket was written without them
EXACT_FIELDS = ("first", "t_first", "t_last", "resets")
FIELDS = BASE_FIELDS + EXACT_FIELDS
# DCGM fields dcgm-exporter declares as counters; every other field is a gauge. Only
# counters' buckets keep `resets` (a gauge's drops, summed, are noise that would cost
# 8 bytes per bucket): PromQL's rate/increase over a gauge's rollups answer nothing.
COUNTERS = frozenset(
    {
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    }
)
_FLOAT_MAX = float(np.finfo(np.float64).max)
AGGREGATES = ("avg", "min", "max", "last", "sum", "count")
_SEP = "\x1f"


@dataclass(frozen=True)
class Buckets:
    """Aggregates per (bucket start, metric), sorted by (metric index, bucket)."""

    ts: np.ndarray  # int64 bucket start, ms
    metric: np.ndarray  # int32 index into names
    names: tuple[str, ...]
    min: np.ndarray
    max: np.ndarray
    sum: np.ndarray
    count: np.ndarray  # int64
    last: np.ndarray
    first: np.ndarray
    t_first: np.ndarray  # float64 ms, NaN when unknown
    t_last: np.ndarray  # float64 ms, NaN when unknown
    resets: np.ndarray  # sum of the value before each drop inside the bucket (NaN: gauges)

    @property
    def exact(self) -> np.ndarray:
        """Buckets that carry the PromQL fields (written by this version, from raw); `resets`
        is there for counters only (COUNTERS)."""
        return ~(np.isnan(self.t_first) | np.isnan(self.t_last))

    def __len__(self) -> int:
        return len(self.ts)

    def value(self, agg: str) -> np.ndarray:
        """The per-bucket value of an aggregate: avg, min, max, last, sum or count."""
        if agg == "avg":
            with np.errstate(over="ignore"):
                return self.sum / self.count
        if agg == "count":
            return self.count.astype(np.float64)
        return getattr(self, agg)


def empty(names: tuple[str, ...] = ()) -> Buckets:
    f = np.zeros(0, np.float64)
    return Buckets(
        np.zeros(0, np.int64),
        np.zeros(0, np.int32),
        names,
        f,
        f,
        f,
        np.zeros(0, np.int64),
        f,
        f,
        f,
        f,
        f,
    )


def _sums(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Per-group sums, saturated at the float64 range instead of overflowing to inf."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.add.reduceat(values, starts)
    if not np.isfinite(total).all():
        # inf - inf gives NaN: the sign of the largest term decides where it saturates
        total = np.where(np.isnan(total), 0.0, total)
        total = np.clip(total, -_FLOAT_MAX, _FLOAT_MAX)
    return total


def _groups(metric: np.ndarray, bucket: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start and end indexes of runs of equal (metric, bucket) in sorted arrays."""
    change = np.flatnonzero((np.diff(metric) != 0) | (np.diff(bucket) != 0)) + 1
    starts = np.concatenate(([0], change)).astype(np.intp)
    ends = np.concatenate((change, [len(metric)])).astype(np.intp)
    return starts, ends


def aggregate(samples: Samples, step_ms: int) -> Buckets:
    """Bucket raw samples by `step_ms` (bucket start = ts floored to a multiple of step)."""
    s = dedupe(samples)
    if not len(s):
        return empty(s.names)
    bucket = (s.ts // step_ms) * step_ms
    order = np.lexsort((s.ts, bucket, s.metric))
    m, b, v = s.metric[order], bucket[order], s.value[order]
    starts, ends = _groups(m, b)
    t = s.ts[order]
    # Prometheus' counter rule (extrapolatedRate): a drop adds back the value before it
    drops = np.zeros(len(v))
    with np.errstate(invalid="ignore"):
        drops[1:] = np.where(v[1:] < v[:-1], v[:-1], 0.0)
    drops[starts] = 0.0  # pairs across buckets are counted when buckets are combined
    resets = np.add.reduceat(drops, starts)
    counter = np.array([n in COUNTERS for n in s.names] + [False], dtype=bool)
    resets[~counter[m[starts]]] = np.nan
    return Buckets(
        ts=b[starts],
        metric=m[starts],
        names=s.names,
        min=np.minimum.reduceat(v, starts),
        max=np.maximum.reduceat(v, starts),
        sum=_sums(v, starts),
        count=(ends - starts).astype(np.int64),
        last=v[ends - 1],
        first=v[starts],
        t_first=t[starts].astype(np.float64),
        t_last=t[ends - 1].astype(np.float64),
        resets=resets,
    )


def concat(parts: Sequence[Buckets]) -> Buckets:
    """Put disjoint bucket sets together (one name table), sorted by (metric name, bucket)."""
    parts = [p for p in parts if len(p)]
    if not parts:
        return empty()
    names = tuple(sorted({n for p in parts for n in p.names}))
    index = {n: i for i, n in enumerate(names)}
    remap = [np.array([index[n] for n in p.names], dtype=np.int32) for p in parts]
    metric = np.concatenate([r[p.metric] for r, p in zip(remap, parts, strict=True)])
    cols = {f: np.concatenate([getattr(p, f) for p in parts]) for f in FIELDS}
    ts = np.concatenate([p.ts for p in parts])
    order = np.lexsort((ts, metric))
    return Buckets(ts[order], metric[order], names, *(cols[f][order] for f in FIELDS))


def rebucket(b: Buckets, step_ms: int) -> Buckets:
    """Combine buckets into coarser ones of `step_ms` (a multiple of their own step)."""
    if not len(b):
        return b
    bucket = (b.ts // step_ms) * step_ms
    order = np.lexsort((b.ts, bucket, b.metric))
    m, nb = b.metric[order], bucket[order]
    starts, ends = _groups(m, nb)
    first, last = b.first[order], b.last[order]
    # a drop from one bucket's last value to the next one's first is a reset too
    cross = np.zeros(len(first))
    with np.errstate(invalid="ignore"):
        cross[1:] = np.where(first[1:] < last[:-1], last[:-1], 0.0)
    cross[starts] = 0.0
    resets = np.add.reduceat(b.resets[order] + cross, starts)  # NaN stays NaN
    t_first, t_last = b.t_first[order][starts], b.t_last[order][ends - 1]
    unknown = np.add.reduceat((~b.exact[order]).astype(np.int64), starts) > 0
    return Buckets(
        ts=nb[starts],
        metric=m[starts],
        names=b.names,
        min=np.minimum.reduceat(b.min[order], starts),
        max=np.maximum.reduceat(b.max[order], starts),
        sum=_sums(b.sum[order], starts),
        count=np.add.reduceat(b.count[order], starts),
        last=last[ends - 1],
        first=first[starts],
        t_first=np.where(unknown, np.nan, t_first),
        t_last=np.where(unknown, np.nan, t_last),
        resets=np.where(unknown, np.nan, resets),
    )


def select(b: Buckets, keep: np.ndarray) -> Buckets:
    return Buckets(b.ts[keep], b.metric[keep], b.names, *(getattr(b, f)[keep] for f in FIELDS))


def encode_rollup(b: Buckets) -> bytes:
    """One row per (bucket, metric, field); a PromQL field a bucket lacks (NaN) has no row."""
    names = tuple(f"{n}{_SEP}{f}" for n in b.names for f in FIELDS)
    k = len(FIELDS)
    ts = np.repeat(b.ts, k)
    metric = (np.repeat(b.metric.astype(np.int64) * k, k) + np.tile(np.arange(k), len(b))).astype(
        np.int32
    )
    value = np.column_stack([getattr(b, f).astype(np.float64) for f in FIELDS]).ravel()
    # a PromQL field is NaN only where it is unknown (or the value itself is NaN, which an
    # absent row reads back as): no row for it
    absent = np.zeros((len(b), k), dtype=bool)
    absent[:, len(BASE_FIELDS) :] = np.isnan(value.reshape(len(b), k)[:, len(BASE_FIELDS) :])
    keep = ~absent.ravel()
    return encode_block(Samples(ts[keep], metric[keep], value[keep], names))


def decode_rollup(data: bytes) -> Buckets:
    s = decode_block(data)
    if not len(s):
        return empty()
    split = [n.rsplit(_SEP, 1) for n in s.names]
    metrics = tuple(sorted({m for m, _ in split}))
    mindex = {m: i for i, m in enumerate(metrics)}
    name_metric = np.array([mindex[m] for m, _ in split], dtype=np.int32)
    name_field = np.array([FIELDS.index(f) for _, f in split], dtype=np.int32)
    metric, field = name_metric[s.metric], name_field[s.metric]
    key_order = np.lexsort((s.ts, metric))
    metric, ts, field, value = (
        metric[key_order],
        s.ts[key_order],
        field[key_order],
        s.value[key_order],
    )
    starts, _ = _groups(metric, ts)
    group = np.cumsum(np.isin(np.arange(len(ts)), starts)) - 1
    cols = np.full((len(starts), len(FIELDS)), np.nan, dtype=np.float64)
    cols[group, field] = value
    return Buckets(
        ts[starts],
        metric[starts],
        metrics,
        *(
            cols[:, i] if f != "count" else cols[:, i].astype(np.int64)
            for i, f in enumerate(FIELDS)
        ),
    )
