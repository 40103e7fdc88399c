"""Property-based checks of the block codec and rollups (hypothesis)."""

from __future__ import annotations

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

from store.codec import decode_block, dedupe, encode_block, merge, samples_from_rows
from store.rollup import aggregate, decode_rollup, encode_rollup, rebucket

timestamps = st.integers(min_value=0, max_value=10**13 - 1)
metrics = st.sampled_from(["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE", "m", "é-ü", "x" * 50])
values = st.floats(allow_nan=False, allow_infinity=False, width=64)
rows = st.lists(st.tuples(timestamps, metrics, values), max_size=300)


def as_dict(samples) -> dict[tuple[int, str], int]:
    # compare bit patterns: -0.0 and 0.0 differ, as the codec promises
    return {(t, m): np.float64(v).view(np.uint64).item() for t, m, v in samples.rows()}


@settings(max_examples=200, deadline=None)
@given(rows)
def test_round_trip_keeps_every_sample_bit_exact_last_write_winning(data):
    samples = samples_from_rows(data)
    expected = {}
    for t, m, v in data:
        expected[(t, m)] = np.float64(v).view(np.uint64).item()
    assert as_dict(decode_block(encode_block(samples))) == expected


@settings(max_examples=100, deadline=None)
@given(rows, rows)
def test_merge_lets_the_later_part_win(first, second):
    merged = merge([samples_from_rows(first), samples_from_rows(second)])
    expected = as_dict(dedupe(samples_from_rows(first)))
    expected.update(as_dict(dedupe(samples_from_rows(second))))
    assert as_dict(merged) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**9), metrics, st.floats(-1e6, 1e6)), min_size=1, max_size=200
    )
)
def test_rollups_round_trip_and_combine_like_direct_aggregation(data):
    samples = samples_from_rows(data)
    fine = aggregate(samples, 60_000)
    back = decode_rollup(encode_rollup(fine))
    for field in ("ts", "metric", "min", "max", "sum", "count", "last"):
        assert np.array_equal(getattr(fine, field), getattr(back, field)), field
    coarse_direct = aggregate(samples, 300_000)
    coarse_combined = rebucket(fine, 300_000)
    assert np.array_equal(coarse_direct.ts, coarse_combined.ts)
    assert np.array_equal(coarse_direct.count, coarse_combined.count)
    assert np.array_equal(coarse_direct.min, coarse_combined.min)
    assert np.array_equal(coarse_direct.last, coarse_combined.last)
    assert np.allclose(coarse_direct.sum, coarse_combined.sum, rtol=1e-9, atol=1e-6)


# A dense block's columns, as DCGM sends them: integers, a few decimals, constants, huge or
# tiny values, -0.0, wide steps, and plain floats, side by side in one block.
def _column(kind: str, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "const":
        return np.full(n, rng.choice([0.0, -0.0, 1.5, 1e300]))
    if kind == "ints":
        return rng.integers(-1000, 1000, n).astype(float)
    if kind == "decimals":
        digits = int(rng.integers(1, 8))
        return np.round(rng.uniform(-1e3, 1e3, n), digits)
    if kind == "huge":
        return rng.integers(2**52, 2**53, n).astype(float) * rng.choice([1.0, 3.0])
    if kind == "wide":
        return rng.choice([0.0, 2.0**40, -(2.0**40)], n)
    if kind == "signed_zero":
        return rng.choice([0.0, -0.0, 1.0], n)
    return rng.standard_normal(n) * 10.0 ** float(rng.integers(-300, 300))


kinds = st.sampled_from(["const", "ints", "decimals", "huge", "wide", "signed_zero", "float"])


@settings(max_examples=200, deadline=None)
@given(st.lists(kinds, min_size=1, max_size=12), st.integers(1, 80), st.integers(0, 2**32))
def test_a_dense_blocks_columns_pack_as_each_column_alone(column_kinds, n, seed):
    from store.codec import _pack_columns, _pack_values

    columns = np.stack([_column(k, n, seed + i) for i, k in enumerate(column_kinds)])
    assert _pack_columns(columns) == [_pack_values(row) for row in columns]
    stamps = np.arange(n, dtype=np.int64) * 10_000
    names = [f"m{i:02d}" for i in range(len(column_kinds))]
    data = [
        (int(t), names[m], float(columns[m, j]))
        for j, t in enumerate(stamps)
        for m in range(len(names))
    ]
    expected = {(t, name): np.float64(v).view(np.uint64).item() for t, name, v in data}
    assert as_dict(decode_block(encode_block(samples_from_rows(data)))) == expected


one_stamp = st.dictionaries(metrics, st.one_of(values, st.integers(-(10**6), 10**6).map(float)))


def _outcome(data: bytes, one_stamp_path: bool):
    """What decode_block gives: the samples bit for bit, or the refusal's message."""
    from store.codec import BlockFormatError

    try:
        got = decode_block(data, one_stamp_path=one_stamp_path)
    except BlockFormatError as exc:
        return str(exc)
    return got.names, got.ts.tolist(), got.metric.tolist(), got.value.view(np.uint64).tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**13 - 1), one_stamp)
def test_a_one_stamp_block_decodes_as_the_general_path_does(stamp, row):
    """Live scrapes write blocks of one timestamp, read by a path of their own."""
    block = encode_block(samples_from_rows([(stamp, m, v) for m, v in row.items()]))
    assert _outcome(block, True) == _outcome(block, False) != ()


@st.composite
def _section(draw: st.DrawFn) -> bytes:
    """One metric section as the format lays it out, any field possibly wrong."""
    import struct

    name = draw(st.sampled_from([b"a", b"b", b"m", b"\xff", b"z" * 3]))
    flags = draw(st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7]), st.integers(0, 255)))
    out = struct.pack("<H", len(name)) + name + bytes([flags])
    if flags & 1:
        out += bytes([draw(st.sampled_from([0, 1, 2, 3, 255]))])
    if (flags >> 1) & 3 == 2:  # scaled: decimals, width, then width bytes
        width = draw(st.sampled_from([0, 1, 2, 3, 4, 8]))
        out += bytes([draw(st.integers(0, 8)), width]) + draw(
            st.binary(min_size=width, max_size=width)
        )
    else:
        value = draw(st.one_of(values, st.sampled_from([float("nan"), float("inf")])))
        out += struct.pack("<d", value)
    return out


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 10**13 - 1),
    st.integers(1, 2),
    st.lists(_section(), max_size=4),
    st.integers(-1, 3),
    st.integers(-3, 12),
)
@example(1000, 1, [b"\x01\x00\xff"], 0, 0)  # a name not UTF-8, the body ending after it
def test_a_damaged_one_stamp_block_is_refused_as_the_general_path_refuses_it(
    stamp, version, sections, count_off, cut
):
    """Bodies built field by field (flags, bitmaps, encodings, names out of order, counts
    off, cut short anywhere or too long): both paths give the same samples or the same
    refusal."""
    import struct

    import zstandard

    body = struct.pack("<IqBI", 1, stamp, 1, max(len(sections) + count_off, 0)) + b"".join(sections)
    body = body[: max(len(body) - cut, 17)] if cut > 0 else body + b"\0" * -cut
    block = b"GTB" + bytes([version]) + zstandard.ZstdCompressor().compress(body)
    assert _outcome(block, True) == _outcome(block, False)
