"""Tests for store.codec: block round trip, determinism, dedupe/merge rules, corruption."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import zstandard

from store import codec
from store.codec import (
    BLOCK_VERSION,
    MAX_BODY_SIZE,
    BlockFormatError,
    Samples,
    decode_block,
    dedupe,
    encode_block,
    merge,
    samples_from_rows,
)

T0 = 1_700_000_000_000  # an epoch-millisecond timestamp in 2023
STEP = 10_000  # DCGM exporter default: one sample every 10 s


def random_samples(rng: np.random.Generator, n_stamps: int = 200, n_metrics: int = 7) -> Samples:
    """Random samples where each metric is missing at roughly a third of the timestamps."""
    stamps = T0 + np.cumsum(rng.integers(1, 20_000, size=n_stamps))
    names = tuple(f"metric_{i:02d}" for i in range(n_metrics))
    present = rng.random((n_stamps, n_metrics)) < 0.66
    present[:, 0] = True  # one dense metric, to cover the bitmap-free section too
    t_idx, m_idx = np.nonzero(present)
    # Mix of magnitudes, signs and special-but-finite values.
    pool = np.array(
        [0.0, -0.0, 1e-300, -1e-300, 5e-324, 2.0**53, -(2.0**60), 1.7976931348623157e308, 156.596]
    )
    value = rng.normal(scale=1e3, size=len(t_idx))
    special = rng.random(len(t_idx)) < 0.2
    value[special] = rng.choice(pool, size=int(special.sum()))
    return Samples(ts=stamps[t_idx], metric=m_idx.astype(np.int32), value=value, names=names)


def shuffled(samples: Samples, rng: np.random.Generator) -> Samples:
    """Same rows in a random order, with the name table permuted too."""
    order = rng.permutation(len(samples))
    name_perm = rng.permutation(len(samples.names))  # new position of each old name
    names = [""] * len(samples.names)
    for old, new in enumerate(name_perm.tolist()):
        names[new] = samples.names[old]
    return Samples(
        ts=samples.ts[order],
        metric=name_perm[samples.metric[order]].astype(np.int32),
        value=samples.value[order],
        names=tuple(names),
    )


def bits(values: np.ndarray) -> list[int]:
    return np.asarray(values, dtype=np.float64).view(np.uint64).tolist()


def dcgm_like_samples(rng: np.random.Generator, n_stamps: int = 360) -> Samples:
    """An hour of 10 s samples for 10 DCGM fields, shaped like real exporter output."""
    stamps = T0 + STEP * np.arange(n_stamps)

    def walk(lo: int, hi: int) -> np.ndarray:
        # Temperatures drift by a degree or so between samples.
        return np.clip(60 + np.cumsum(rng.integers(-1, 2, size=n_stamps)), lo, hi).astype(
            np.float64
        )

    fb_used = np.repeat(rng.integers(1_000, 80_000, size=n_stamps // 60 + 1), 60)[:n_stamps].astype(
        np.float64
    )
    columns = {
        "DCGM_FI_DEV_GPU_UTIL": rng.integers(0, 101, size=n_stamps).astype(np.float64),
        "DCGM_FI_DEV_MEM_COPY_UTIL": rng.integers(0, 101, size=n_stamps).astype(np.float64),
        "DCGM_FI_DEV_GPU_TEMP": walk(30, 80),
        "DCGM_FI_DEV_MEMORY_TEMP": walk(30, 80),
        "DCGM_FI_DEV_POWER_USAGE": np.round(
            rng.uniform(60.0, 400.0, size=n_stamps), 3
        ),  # e.g. 156.596
        "DCGM_FI_DEV_SM_CLOCK": np.full(n_stamps, 1980.0),
        "DCGM_FI_DEV_MEM_CLOCK": np.full(n_stamps, 1593.0),
        "DCGM_FI_DEV_FB_USED": fb_used,
        "DCGM_FI_DEV_FB_FREE": 81_559.0 - fb_used,
        "DCGM_FI_DEV_ENC_UTIL": np.zeros(n_stamps),
    }
    names = tuple(columns)
    return Samples(
        ts=np.tile(stamps, len(names)),
        metric=np.repeat(np.arange(len(names), dtype=np.int32), n_stamps),
        value=np.concatenate(list(columns.values())),
        names=names,
    )


# ------------------------------------------------------------------ round trip


def test_round_trip_keeps_values_bit_exact() -> None:
    rng = np.random.default_rng(1)
    for _ in range(20):
        samples = random_samples(
            rng, n_stamps=int(rng.integers(1, 300)), n_metrics=int(rng.integers(1, 12))
        )
        decoded = decode_block(encode_block(samples))
        expected = dedupe(samples)
        assert decoded.names == expected.names
        assert decoded.ts.tolist() == expected.ts.tolist()
        assert decoded.metric.tolist() == expected.metric.tolist()
        assert bits(decoded.value) == bits(expected.value)
        assert decoded == expected


def test_round_trip_keeps_missing_metric_values_missing() -> None:
    rows = [(T0, "a", 1.0), (T0, "b", 2.0), (T0 + STEP, "a", 3.0), (T0 + 2 * STEP, "b", 4.0)]
    decoded = decode_block(encode_block(samples_from_rows(rows)))
    assert list(decoded.rows()) == rows


def test_round_trip_keeps_awkward_floats_exact() -> None:
    values = [
        156.596,
        -0.0,
        0.0,
        1e-300,
        5e-324,
        2.0**53 + 2,
        -(2.0**62),
        0.1 + 0.2,
        1.7976931348623157e308,
    ]
    rows = [(T0 + i, "x", v) for i, v in enumerate(values)]
    decoded = decode_block(encode_block(samples_from_rows(rows)))
    assert bits(decoded.value) == bits(values)
    assert decoded.value[0] == 156.596


def test_round_trip_handles_extreme_timestamps() -> None:
    rows = [(-(2**63), "a", 1.0), (-1, "a", 2.0), (0, "a", 3.0), (2**63 - 1, "a", 4.0)]
    assert list(decode_block(encode_block(samples_from_rows(rows))).rows()) == rows


def test_empty_samples_round_trip() -> None:
    decoded = decode_block(encode_block(samples_from_rows([])))
    assert len(decoded) == 0
    assert decoded.names == ()
    assert decoded.ts.dtype == np.int64
    assert decoded.metric.dtype == np.int32
    assert decoded.value.dtype == np.float64


def test_decoded_samples_have_contract_dtypes_and_python_rows() -> None:
    decoded = decode_block(encode_block(samples_from_rows([(T0, "a", 1.0), (T0 + 1, "b", 2.5)])))
    assert (decoded.ts.dtype, decoded.metric.dtype, decoded.value.dtype) == (
        np.int64,
        np.int32,
        np.float64,
    )
    ts, name, value = next(decoded.rows())
    assert (type(ts), type(name), type(value)) == (int, str, float)


def test_encode_dedupes_before_writing() -> None:
    rows = [(T0, "a", 1.0), (T0, "a", 2.0)]
    assert list(decode_block(encode_block(samples_from_rows(rows))).rows()) == [(T0, "a", 2.0)]


# ----------------------------------------------------------------- determinism


def test_encode_is_deterministic_under_input_permutation() -> None:
    rng = np.random.default_rng(2)
    samples = random_samples(rng)
    reference = encode_block(samples)
    for _ in range(10):
        assert encode_block(shuffled(samples, rng)) == reference


def test_encode_ignores_unused_names() -> None:
    rows = [(T0, "a", 1.0)]
    plain = samples_from_rows(rows)
    padded = Samples(ts=plain.ts, metric=plain.metric + 1, value=plain.value, names=("unused", "a"))
    assert encode_block(padded) == encode_block(plain)


def test_block_starts_with_magic_and_version() -> None:
    data = encode_block(samples_from_rows([(T0, "a", 1.0)]))
    assert data[:4] == b"GTB" + bytes([BLOCK_VERSION])


# ------------------------------------------------------------- dedupe / merge


def test_dedupe_keeps_last_occurrence() -> None:
    rows = [
        (T0 + STEP, "b", 1.0),
        (T0, "a", 2.0),
        (T0 + STEP, "b", 3.0),
        (T0, "a", 4.0),
        (T0, "b", 5.0),
    ]
    assert list(dedupe(samples_from_rows(rows)).rows()) == [
        (T0, "a", 4.0),
        (T0, "b", 5.0),
        (T0 + STEP, "b", 3.0),
    ]


def test_dedupe_sorts_by_timestamp_then_metric_name() -> None:
    rows = [(T0 + 1, "a", 1.0), (T0, "z", 2.0), (T0, "m", 3.0), (T0 + 1, "B", 4.0)]
    result = dedupe(samples_from_rows(rows))
    assert [(t, n) for t, n, _ in result.rows()] == [
        (T0, "m"),
        (T0, "z"),
        (T0 + 1, "B"),
        (T0 + 1, "a"),
    ]
    assert result.names == ("B", "a", "m", "z")


def test_dedupe_of_canonical_samples_is_identity() -> None:
    canonical = dedupe(random_samples(np.random.default_rng(3)))
    assert dedupe(canonical) == canonical


def test_merge_later_part_wins() -> None:
    first = samples_from_rows([(T0, "a", 1.0), (T0, "b", 2.0), (T0 + STEP, "a", 3.0)])
    second = samples_from_rows([(T0 + STEP, "c", 9.0), (T0, "b", 20.0)])
    third = samples_from_rows([(T0, "b", 200.0)])
    assert list(merge([first, second, third]).rows()) == [
        (T0, "a", 1.0),
        (T0, "b", 200.0),
        (T0 + STEP, "a", 3.0),
        (T0 + STEP, "c", 9.0),
    ]


def test_merge_reindexes_names_into_one_table() -> None:
    first = Samples(
        ts=np.array([T0]), metric=np.array([1]), value=np.array([1.0]), names=("x", "y")
    )
    second = Samples(
        ts=np.array([T0]), metric=np.array([0]), value=np.array([2.0]), names=("y", "x")
    )
    merged = merge([first, second])
    assert list(merged.rows()) == [(T0, "y", 2.0)]
    assert merged.names == ("y",)


def test_merge_of_nothing_is_empty() -> None:
    assert len(merge([])) == 0
    assert len(merge([samples_from_rows([]), samples_from_rows([])])) == 0


def test_merge_of_decoded_blocks_matches_merge_of_sources() -> None:
    rng = np.random.default_rng(4)
    parts = [random_samples(rng, n_stamps=50) for _ in range(3)]
    from_blocks = merge([decode_block(encode_block(p)) for p in parts])
    assert from_blocks == merge(parts)


# ------------------------------------------------------------ input contract


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_encode_refuses_non_finite_values(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        encode_block(samples_from_rows([(T0, "a", 1.0), (T0 + 1, "a", bad)]))


def test_encode_refuses_body_the_decoder_would_refuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(codec, "MAX_BODY_SIZE", 64)
    rows = [(T0 + i * STEP, "a", float(i) + 0.123456789) for i in range(10)]
    with pytest.raises(ValueError, match="exceeds limit"):
        encode_block(samples_from_rows(rows))


def test_encode_refuses_overlong_metric_name() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_block(samples_from_rows([(T0, "x" * 70_000, 1.0)]))


def test_samples_refuse_inconsistent_arrays() -> None:
    with pytest.raises(ValueError):
        Samples(
            ts=np.array([T0, T0 + 1]), metric=np.array([0]), value=np.array([1.0]), names=("a",)
        )
    with pytest.raises(ValueError):
        Samples(ts=np.array([T0]), metric=np.array([1]), value=np.array([1.0]), names=("a",))
    with pytest.raises(ValueError):
        Samples(ts=np.array([T0]), metric=np.array([0]), value=np.array([1.0]), names=("a", "a"))
    with pytest.raises(TypeError):
        Samples(ts=np.array([1.5]), metric=np.array([0]), value=np.array([1.0]), names=("a",))


# ---------------------------------------------------------------- bad input


def valid_block() -> bytes:
    return encode_block(random_samples(np.random.default_rng(5), n_stamps=40, n_metrics=4))


def reframe(body: bytes, version: int = BLOCK_VERSION) -> bytes:
    """Wrap a hand-made body the way encode_block does, to test body-level checks."""
    frame = zstandard.ZstdCompressor(level=3, write_checksum=True).compress(body)
    return b"GTB" + bytes([version]) + frame


def test_decode_rejects_wrong_magic() -> None:
    data = valid_block()
    with pytest.raises(BlockFormatError, match="magic"):
        decode_block(b"XTB" + data[3:])
    with pytest.raises(BlockFormatError):
        decode_block(b"")


def test_decode_rejects_unknown_version() -> None:
    data = valid_block()
    with pytest.raises(BlockFormatError, match="version"):
        decode_block(data[:3] + bytes([BLOCK_VERSION + 1]) + data[4:])


@pytest.mark.parametrize("cut", [3, 4, 5, 10, -5, -1])
def test_decode_rejects_truncated_data(cut: int) -> None:
    data = valid_block()
    with pytest.raises(BlockFormatError):
        decode_block(data[:cut])


def test_decode_rejects_trailing_data() -> None:
    with pytest.raises(BlockFormatError):
        decode_block(valid_block() + b"\x00")


def test_decode_rejects_every_single_byte_corruption() -> None:
    data = valid_block()
    for i in range(len(data)):
        corrupt = bytearray(data)
        corrupt[i] ^= 0x5A
        with pytest.raises(BlockFormatError):
            decode_block(bytes(corrupt))


def test_decode_rejects_declared_size_above_limit() -> None:
    # A real frame of zeros compresses to a few KiB but declares 64 MiB + 1.
    bomb = zstandard.ZstdCompressor(level=3).compress(bytes(MAX_BODY_SIZE + 1))
    assert len(bomb) < 100_000
    with pytest.raises(BlockFormatError, match="exceeds limit"):
        decode_block(b"GTB" + bytes([BLOCK_VERSION]) + bomb)


def test_decode_rejects_frame_without_declared_size() -> None:
    frame = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(b"\x00" * 16)
    with pytest.raises(BlockFormatError, match="declare"):
        decode_block(b"GTB" + bytes([BLOCK_VERSION]) + frame)


ONE_STAMP = struct.pack("<IqB", 1, T0, 1)  # count, first timestamp, delta width
ONE_VALUE = struct.pack("<d", 1.0)
ONE_METRIC = struct.pack("<I", 1)

BAD_BODIES = {
    "huge count": struct.pack("<IqB", 0xFFFFFFFF, T0, 8),
    "bad width": struct.pack("<IqBI", 1, T0, 3, 0),
    "zero gap": struct.pack("<IqBBI", 2, T0, 1, 0, 0),
    "gap overflow": struct.pack("<IqBQI", 2, 2**63 - 1, 8, 1, 0),
    "unsorted names": ONE_STAMP
    + struct.pack("<I", 2)
    + (b"\x01\x00b\x00" + ONE_VALUE)
    + (b"\x01\x00a\x00" + ONE_VALUE),
    "duplicate names": ONE_STAMP + struct.pack("<I", 2) + (b"\x01\x00a\x00" + ONE_VALUE) * 2,
    "unknown flag": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x08" + ONE_VALUE,
    "unknown encoding": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x06" + ONE_VALUE,
    "too many decimals": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x04\x07\x01\x02",
    "bad scaled width": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x04\x00\x03\x02\x00\x00",
    "short scaled values": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x04\x00\x02\x02",
    "short constant": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x02" + ONE_VALUE[:4],
    "no values": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x01\x00",
    "padding bits": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x01\x03" + ONE_VALUE,
    "nan value": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x00" + struct.pack("<d", float("nan")),
    "bad utf-8": ONE_STAMP + ONE_METRIC + b"\x01\x00\xff\x00" + ONE_VALUE,
    "short values": ONE_STAMP + ONE_METRIC + b"\x01\x00a\x00" + ONE_VALUE[:7],
    "trailing": ONE_STAMP + struct.pack("<I", 0) + b"\x00",
    "empty": b"",
}


def test_hand_built_body_decodes() -> None:
    # Guards the fixtures below: the same layout without the defect is valid.
    good = ONE_STAMP + ONE_METRIC + b"\x01\x00a\x00" + ONE_VALUE
    assert list(decode_block(reframe(good)).rows()) == [(T0, "a", 1.0)]


@pytest.mark.parametrize("body", BAD_BODIES.values(), ids=BAD_BODIES.keys())
def test_decode_rejects_inconsistent_body(body: bytes) -> None:
    with pytest.raises(BlockFormatError):
        decode_block(reframe(body))


def test_version_1_refuses_the_encoding_bits_of_version_2() -> None:
    constant = ONE_STAMP + ONE_METRIC + b"\x01\x00a\x02" + ONE_VALUE
    assert list(decode_block(reframe(constant)).rows()) == [(T0, "a", 1.0)]
    with pytest.raises(BlockFormatError, match="flags"):
        decode_block(reframe(constant, version=1))


# ------------------------------------------------------- version 1 and encodings


def version_1_block(samples: Samples) -> bytes:
    """A block in the version 1 layout (docs/STORAGE.md), built here from the spec."""
    s = dedupe(samples)
    stamps = np.unique(s.ts)
    gaps = np.diff(stamps).astype("<u8")
    body = [struct.pack("<IqB", len(stamps), int(stamps[0]), 8), gaps.tobytes()]
    body.append(struct.pack("<I", len(s.names)))
    for m, name in enumerate(s.names):
        rows = np.flatnonzero(s.metric == m)
        present = np.isin(stamps, s.ts[rows])
        body += [struct.pack("<H", len(name)), name.encode()]
        if present.all():
            body.append(b"\x00")
        else:
            body += [b"\x01", np.packbits(present, bitorder="little").tobytes()]
        body.append(s.value[rows].astype("<f8").tobytes())
    return reframe(b"".join(body), version=1)


def test_version_1_blocks_still_decode() -> None:
    samples = random_samples(np.random.default_rng(11))
    old = version_1_block(samples)
    assert old[3] == 1
    assert decode_block(old) == dedupe(samples)
    assert decode_block(encode_block(samples)) == decode_block(old)
    assert merge([decode_block(old), decode_block(encode_block(samples))]) == dedupe(samples)


def section_flags(data: bytes) -> dict[str, int]:
    """{metric name: flags byte} of a dense block (reads the body per the spec)."""
    body = zstandard.ZstdDecompressor().decompress(data[4:])
    n_ts, _, width = struct.unpack_from("<IqB", body)
    pos = 13 + width * (n_ts - 1)
    (n_metrics,) = struct.unpack_from("<I", body, pos)
    pos += 4
    out = {}
    for _ in range(n_metrics):
        (length,) = struct.unpack_from("<H", body, pos)
        name = body[pos + 2 : pos + 2 + length].decode()
        out[name] = body[pos + 2 + length]
        pos += 3 + length
        encoding = out[name] >> 1
        if encoding == 0:
            pos += 8 * n_ts
        elif encoding == 1:
            pos += 8
        else:
            pos += 2 + body[pos + 1] * n_ts
    return out


def test_each_column_takes_the_encoding_its_values_allow() -> None:
    n = 50
    stamps = T0 + STEP * np.arange(n)
    columns = {
        "const": np.full(n, 1980.0),
        "ints": np.arange(n, dtype=np.float64) * 7 - 100,
        "watts": np.round(np.linspace(60.0, 400.0, n) + 0.0005, 3),
        "floats": np.linspace(0.1, 1.0, n) ** 0.5,
        "signed_zero": np.array([0.0, -0.0] * (n // 2)),
    }
    samples = Samples(
        np.tile(stamps, len(columns)),
        np.repeat(np.arange(len(columns), dtype=np.int32), n),
        np.concatenate(list(columns.values())),
        tuple(columns),
    )
    data = encode_block(samples)
    assert decode_block(data) == dedupe(samples)
    assert section_flags(data) == {
        "const": 0b010,
        "floats": 0b000,
        "ints": 0b100,
        "signed_zero": 0b000,  # -0.0 is not an integer bit for bit: stays float64
        "watts": 0b100,
    }


# ---------------------------------------------------------------------- size


def test_dcgm_like_hour_compresses_under_one_byte_per_value() -> None:
    samples = dcgm_like_samples(np.random.default_rng(6))
    assert len(samples) == 3600
    data = encode_block(samples)
    per_value = len(data) / len(samples)
    print(f"\nDCGM-like block: {len(data)} B / {len(samples)} values = {per_value:.3f} B/value")
    assert decode_block(data) == dedupe(samples)
    # Requirement is < 4 B/value; measured 0.70 (version 1: 1.20), so 1.0 keeps margin and
    # still flags regressions.
    assert per_value < 1.0
