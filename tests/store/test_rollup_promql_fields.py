"""The PromQL fields of rollup buckets (first, t_first, t_last, resets) stay exact when
5-minute buckets combine into hourly ones, and survive a block round trip; buckets of
blocks written without them are never taken for exact."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codec import Samples, encode_block
from store.rollup import FIELDS, aggregate, decode_rollup, encode_rollup, rebucket

FIVE_MIN = 300_000
HOUR = 3_600_000

# few distinct values so that equal values, drops (counter resets) and ties are common
rows = st.lists(
    st.tuples(
        st.integers(0, 3 * HOUR),
        st.sampled_from(["c", "g"]),
        st.sampled_from([0.0, 1.0, 2.5, 7.0, 1e9, 1e9 + 3.0, -4.0]),
    ),
    min_size=1,
    max_size=300,
)


C = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"  # a counter: its buckets keep resets


def _samples(data: list[tuple[int, str, float]]) -> Samples:
    names = (C, "DCGM_FI_DEV_GPU_TEMP")
    return Samples(
        np.array([r[0] for r in data], np.int64),
        np.array(["cg".index(r[1]) for r in data], np.int32),
        np.array([r[2] for r in data]),
        names,
    )


def _same(x, y) -> None:
    assert np.array_equal(x.ts, y.ts) and np.array_equal(x.metric, y.metric)
    assert x.names == y.names
    for f in FIELDS:
        assert np.array_equal(getattr(x, f), getattr(y, f), equal_nan=True), f


@settings(max_examples=200, deadline=None)
@given(rows)
def test_hourly_from_five_minute_buckets_equals_hourly_from_raw(data) -> None:
    s = _samples(data)
    direct = aggregate(s, HOUR)
    combined = rebucket(aggregate(s, FIVE_MIN), HOUR)
    for f in ("min", "max", "count", "last", "first", "t_first", "t_last"):
        assert np.array_equal(getattr(direct, f), getattr(combined, f)), f
    # resets are sums of values: equal up to the order of the additions; gauges have none
    assert np.allclose(direct.resets, combined.resets, rtol=1e-12, atol=0, equal_nan=True)
    assert direct.exact.all() and combined.exact.all()
    assert np.isnan(direct.resets).tolist() == [direct.names[i] != C for i in direct.metric]


@settings(max_examples=100, deadline=None)
@given(rows)
def test_promql_fields_survive_a_block_round_trip(data) -> None:
    b = rebucket(aggregate(_samples(data), FIVE_MIN), HOUR)
    _same(decode_rollup(encode_rollup(b)), b)


def test_resets_follow_prometheus_counter_rule() -> None:
    # 10, 12, 3 (reset: +12), 5, 1 (reset: +5): increase = 1 - 10 + 17 = 8
    ts = np.array([0, 60_000, 120_000, 180_000, 240_000], np.int64)
    b = aggregate(Samples(ts, np.zeros(5, np.int32), np.array([10.0, 12, 3, 5, 1]), (C,)), HOUR)
    assert b.resets[0] == 17.0 and b.first[0] == 10.0 and b.last[0] == 1.0
    assert (b.t_first[0], b.t_last[0]) == (0.0, 240_000.0)
    # the same samples split in 5-minute buckets (one each) combine to the same resets
    assert (
        rebucket(
            aggregate(
                Samples(ts, np.zeros(5, np.int32), np.array([10.0, 12, 3, 5, 1]), (C,)), 60_000
            ),
            HOUR,
        ).resets[0]
        == 17.0
    )


def test_blocks_without_promql_fields_read_as_not_exact() -> None:
    # a block as written before the PromQL fields existed: only the five base rows
    names = tuple(f"m\x1f{f}" for f in ("min", "max", "sum", "count", "last"))
    old = encode_block(
        Samples(
            np.zeros(5, np.int64), np.arange(5, dtype=np.int32), np.array([1.0, 3, 6, 3, 2]), names
        )
    )
    b = decode_rollup(old)
    assert (b.min[0], b.max[0], b.sum[0], b.count[0], b.last[0]) == (1.0, 3.0, 6.0, 3, 2.0)
    assert not b.exact.any()
    # combined with exact buckets, the hour is not exact either, and it is written so
    fresh = aggregate(
        Samples(np.array([FIVE_MIN], np.int64), np.zeros(1, np.int32), np.ones(1), ("m",)), FIVE_MIN
    )
    from store.rollup import concat

    hourly = rebucket(concat([b, fresh]), HOUR)
    assert not hourly.exact.any()
    again = decode_rollup(encode_rollup(hourly))
    assert not again.exact.any() and again.count[0] == 4
