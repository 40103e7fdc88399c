"""A chunk's blocks encoded together (store.codec.encode_blocks) are the bytes each gives
alone (encode_block): their keys carry a digest of those bytes, so a chunk retried by an
older or newer worker, or compacted later, must write the same keys."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from store.codec import Samples, encode_block, encode_blocks

NAMES = ("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_UTIL", "b", "a")  # not sorted
KINDS = ["ints", "decimals", "const", "float", "wide"]


def _values(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if kind == "ints":
        return rng.integers(0, 101, n).astype(float)
    if kind == "decimals":
        return np.round(rng.uniform(50, 700, n), int(rng.integers(1, 4)))
    if kind == "const":
        return np.full(n, rng.choice([0.0, -0.0, 42.0]))
    if kind == "wide":
        return rng.choice([0.0, 2.0**40, -(2.0**40)], n)
    return rng.standard_normal(n) * 1e5


@st.composite
def blocks(draw: st.DrawFn) -> list[Samples]:
    """Blocks as a chunk holds them (one per GPU): mostly dense and alike, as DCGM sends
    them, so that most examples take the path that encodes them together; some not: other
    timestamps counts, a metric missing at some times, repeated (ts, metric) rows, rows in
    file order or shuffled, a NaN, another name table, an empty block."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    out = []
    for _ in range(draw(st.integers(1, 9))):
        n = draw(st.sampled_from([1, 2, 58, 58, 58, 7]))
        names = NAMES[: draw(st.sampled_from([4] * 9 + [2]))]
        kinds = [draw(st.sampled_from(KINDS)) for _ in names]
        ts = np.repeat(1_752_868_800_000 + np.arange(n, dtype=np.int64) * 10_000, len(names))
        metric = np.tile(np.arange(len(names), dtype=np.int32), n)
        value = np.stack([_values(k, n, rng) for k in kinds], axis=1).ravel()
        shape = draw(
            st.sampled_from(["dense"] * 12 + ["sparse", "repeats", "repeats", "shuffled", "nan"])
        )
        keep = np.ones(len(ts), dtype=bool)
        if shape == "sparse":
            keep = rng.random(len(ts)) > 0.2
        if shape == "repeats":
            extra = rng.integers(0, len(ts), 5)
            ts, metric = np.concatenate([ts, ts[extra]]), np.concatenate([metric, metric[extra]])
            value, keep = np.concatenate([value, value[extra] + 1]), np.ones(len(ts), dtype=bool)
        if shape == "nan":
            value[rng.integers(0, len(value))] = np.nan
        order = rng.permutation(int(keep.sum())) if shape == "shuffled" else slice(None)
        out.append(Samples(ts[keep][order], metric[keep][order], value[keep][order], names))
    if draw(st.integers(0, 9)) == 0:
        out.insert(0, Samples(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), NAMES))
    return out


def _outcome(encode, parts):
    try:
        return encode(parts)
    except ValueError as exc:
        return str(exc)


@settings(max_examples=300, deadline=None)
@given(blocks())
def test_blocks_encoded_together_are_the_bytes_of_each_alone(parts):
    alone = _outcome(lambda ps: [encode_block(p) for p in ps], parts)
    assert _outcome(encode_blocks, parts) == alone


def test_the_alike_dense_blocks_of_a_chunk_are_encoded_together_the_others_alone():
    """The usual chunk takes the fast path for every block; a GPU with other metrics or no
    sample in the chunk is encoded alone and does not send the others one by one."""
    import store.codec as codec

    rng = np.random.default_rng(3)
    parts = []
    for names in [NAMES] * 7 + [NAMES[:2]]:
        ts = np.repeat(np.arange(58, dtype=np.int64) * 10_000, len(names))
        metric = np.tile(np.arange(len(names), dtype=np.int32), 58)
        value = np.stack([_values(k, 58, rng) for k in KINDS[: len(names)]], axis=1).ravel()
        parts.append(Samples(ts, metric, value, names))
    parts.insert(3, Samples(np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros(0), NAMES))
    expected = [encode_block(p) for p in parts]
    alone: list[Samples] = []
    real, real_deduped = codec.encode_block, codec._deduped
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(codec, "encode_block", lambda p: alone.append(p) or real(p))
        assert codec.encode_blocks(parts) == expected
    assert [len(p.names) if len(p) else 0 for p in alone] == [0, 2]  # the empty, the other
    got = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(
            codec,
            "_deduped",
            lambda blocks, value: got.append(len(blocks)) or real_deduped(blocks, value),
        )
        codec.encode_blocks(parts)
    assert got == [7]
