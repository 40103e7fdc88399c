"""Block codec: one GPU's samples <-> a compact, deterministic byte string.

The byte layout is specified in docs/STORAGE.md ("Block format (version 2)");
keep the two in sync. In short::

    b"GTB" + version byte + zstd frame(body)

where the body is columnar: one shared timestamp column (delta-encoded), then
one section per metric (sorted by name) holding an optional presence bitmap and
the metric's values, in the smallest of three encodings: one constant, scaled
integers (delta, zigzag, narrowest width, byte planes) or raw float64. Version 1
blocks (float64 only) are still decoded.

Terminology used below: a Samples value is *canonical* when its names are
sorted and unique and all used, and its rows are sorted by (ts, metric name)
with no (ts, metric) pair repeated. `dedupe`, `merge` and `decode_block` always
return canonical Samples.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import zstandard

__all__ = [
    "BLOCK_VERSION",
    "MAX_BODY_SIZE",
    "BlockFormatError",
    "Samples",
    "decode_block",
    "dedupe",
    "encode_block",
    "encode_blocks",
    "merge",
    "samples_from_rows",
]

BLOCK_VERSION = 2
# Versions decode_block reads: 1 (every column float64) and 2 (per-column encodings).
READABLE_VERSIONS = (1, 2)
MAGIC = b"GTB"
# Decoding refuses bodies larger than this so a tiny crafted block cannot make
# us allocate gigabytes (a "zip bomb"); encoding refuses them too, so every
# block we write stays decodable. The body costs ~8 bytes per value, so this
# allows ~8 million values per block; an hour of 10 s samples for 10 metrics
# is 3600 values (~29 KB raw).
MAX_BODY_SIZE = 64 * 1024 * 1024
ZSTD_LEVEL = 3

_FLAG_SPARSE = 0x01  # metric section carries a presence bitmap
# Version 2: bits 1-2 of the flags name the value encoding.
_ENC_SHIFT = 1
_ENC_FLOAT, _ENC_CONST, _ENC_SCALED = 0, 1, 2
# Scaled integers: value == int / 10**decimals exactly, for decimals up to this
# (DCGM sends integers and 3-decimal watts), and ints within float64's exact range.
MAX_DECIMALS = 6
_MAX_EXACT_INT = 2**53
_SCALED_WIDTHS = (1, 2, 4)  # wider deltas are stored as float64
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_DELTA_DTYPES = {1: np.dtype("<u1"), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}


class _Refused(ValueError):
    """What `encode_block` refuses to encode (a ValueError, as documented): kept apart so
    that `encode_blocks` falls back on these only, never on a bug of its own."""


class BlockFormatError(ValueError):
    """The bytes are not a valid block: wrong magic or version, corrupt, truncated or too large."""


@dataclass(frozen=True, slots=True)
class Samples:
    """One GPU's samples in long form, three parallel arrays plus the metric names.

    Row ``i`` is the sample ``(ts[i], names[metric[i]], value[i])``. Arrays are
    coerced to their dtypes but not copied when they already match: treat them
    as immutable. Construction checks shapes, dtypes, index range and that
    names are unique; it does not check order or finiteness.

    Equality compares names and arrays exactly, values by bit pattern (so
    ``-0.0 != 0.0``), matching the codec's bit-exact round trip. Instances are
    not hashable.
    """

    ts: np.ndarray  # int64, epoch milliseconds UTC
    metric: np.ndarray  # int32 index into `names`
    value: np.ndarray  # float64
    names: tuple[str, ...]  # metric names

    def __post_init__(self) -> None:
        names = tuple(self.names)
        if not all(isinstance(n, str) for n in names):
            raise TypeError("metric names must be str")
        if len(set(names)) != len(names):
            raise ValueError("metric names must be unique")
        ts = _coerce(self.ts, np.int64, "ts")
        metric = _coerce(self.metric, np.int32, "metric", check_range=len(names))
        value = _coerce(self.value, np.float64, "value")
        if not len(ts) == len(metric) == len(value):
            raise ValueError("ts, metric and value must have the same length")
        # Frozen dataclass: bypass the generated __setattr__ to store coerced arrays.
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "metric", metric)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "names", names)

    def __len__(self) -> int:
        return len(self.ts)

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays with ==, which raises on
        # multi-element arrays; compare exactly instead.
        if not isinstance(other, Samples):
            return NotImplemented
        return (
            self.names == other.names
            and np.array_equal(self.ts, other.ts)
            and np.array_equal(self.metric, other.metric)
            and np.array_equal(self.value.view(np.uint64), other.value.view(np.uint64))
        )

    def rows(self) -> Iterator[tuple[int, str, float]]:
        """Yield ``(ts, metric name, value)`` in array order, as Python types."""
        names = self.names
        for t, m, v in zip(
            self.ts.tolist(), self.metric.tolist(), self.value.tolist(), strict=True
        ):
            yield t, names[m], v


def _coerce(arr: object, dtype: type, what: str, check_range: int | None = None) -> np.ndarray:
    """Return `arr` as a 1-D array of `dtype`, refusing lossy conversions."""
    a = np.asarray(arr)
    if a.ndim != 1:
        raise ValueError(f"{what} must be 1-D, got shape {a.shape}")
    if a.size == 0:
        return np.zeros(0, dtype=dtype)  # np.asarray([]) is float64; any dtype is fine when empty
    if check_range is not None:
        # Index column: any integer dtype is acceptable once the range is known to be valid.
        if a.dtype.kind not in "iu":
            raise TypeError(f"{what} must be integers, got {a.dtype}")
        if a.min() < 0 or a.max() >= check_range:
            raise ValueError(f"{what} index out of range for {check_range} names")
    elif not np.can_cast(a.dtype, dtype, casting="safe"):
        raise TypeError(f"{what} must be castable to {np.dtype(dtype)} without loss, got {a.dtype}")
    return a.astype(dtype, copy=False)


def _empty() -> Samples:
    return Samples(
        ts=np.zeros(0, np.int64),
        metric=np.zeros(0, np.int32),
        value=np.zeros(0, np.float64),
        names=(),
    )


def samples_from_rows(rows: Iterable[tuple[int, str, float]]) -> Samples:
    """Build Samples from ``(ts, metric name, value)`` rows, keeping their order.

    Names are numbered in order of first appearance. The result is not deduped
    or sorted; call `dedupe` for that.
    """
    index: dict[str, int] = {}
    ts: list[int] = []
    metric: list[int] = []
    value: list[float] = []
    for t, name, v in rows:
        ts.append(t)
        metric.append(index.setdefault(name, len(index)))
        value.append(v)
    return Samples(
        ts=np.array(ts),  # no dtype: a float timestamp is refused instead of truncated
        metric=np.array(metric, dtype=np.int32),
        value=np.array(value, dtype=np.float64),
        names=tuple(index),
    )


def dedupe(samples: Samples) -> Samples:
    """Return the canonical form of `samples`.

    Keeps one sample per (ts, metric name): the LAST occurrence in array order
    wins. The result is sorted by (ts, metric name); its names are sorted and
    limited to those that still have samples.
    """
    if len(samples) == 0:
        return _empty()
    # Renumber metrics so index order equals name order; sorting by index then sorts by name.
    name_order = sorted(range(len(samples.names)), key=samples.names.__getitem__)
    rank = np.empty(len(name_order), dtype=np.int32)
    rank[name_order] = np.arange(len(name_order), dtype=np.int32)
    metric = rank[samples.metric]
    # Primary key ts, then metric, then original position, so the last
    # occurrence of each (ts, metric) is the last row of its run.
    order = np.lexsort((np.arange(len(samples)), metric, samples.ts))
    ts, metric, value = samples.ts[order], metric[order], samples.value[order]
    last = np.ones(len(ts), dtype=bool)
    last[:-1] = (ts[1:] != ts[:-1]) | (metric[1:] != metric[:-1])
    ts, metric, value = ts[last], metric[last], value[last]
    # Drop names left without samples (all of them are used unless the input had spares).
    used, metric = np.unique(metric, return_inverse=True)
    names = tuple(samples.names[name_order[i]] for i in used.tolist())
    return Samples(ts=ts, metric=metric.astype(np.int32), value=value, names=names)


def merge(parts: Sequence[Samples]) -> Samples:
    """Concatenate `parts` into one name table, then `dedupe`.

    For a (ts, metric name) present in several parts the value from the LATER
    part wins (and within a part, the later row). Returns canonical Samples.
    """
    union = sorted({name for part in parts for name in part.names})
    if not union:
        return _empty()
    position = {name: i for i, name in enumerate(union)}
    metrics = []
    for part in parts:
        # Map this part's local indices onto the union table.
        remap = np.array([position[n] for n in part.names], dtype=np.int32)
        metrics.append(remap[part.metric] if len(part) else np.zeros(0, np.int32))
    combined = Samples(
        ts=np.concatenate([p.ts for p in parts]),
        metric=np.concatenate(metrics),
        value=np.concatenate([p.value for p in parts]),
        names=tuple(union),
    )
    return dedupe(combined)


# --------------------------------------------------------------------- encoding


def block_digest(data: bytes) -> str:
    """The digest that ends a block's key: 16 hex digits of BLAKE2b of the encoded bytes.

    The key is a function of the content, so a retried chunk rewrites the same key.

    >>> block_digest(b"block bytes")
    'ebfb3001412ad093'
    """
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def encode_block(samples: Samples) -> bytes:
    """Encode `samples` as a version-2 block (docs/STORAGE.md).

    Dedupes first (last occurrence wins), so the output depends only on the
    canonical form: the same samples in any input order give identical bytes
    (for a given zstd library version). Values round-trip bit-exactly.

    Raises ValueError if any value is NaN or infinite (the pipeline refuses
    non-finite values before they reach storage), if a metric name is longer
    than 65535 UTF-8 bytes, or if the body would exceed MAX_BODY_SIZE (split
    the samples into several blocks instead).
    """
    if not np.isfinite(samples.value).all():
        raise _Refused("block values must be finite (no NaN or inf)")
    canon = dedupe(samples)
    stamps = np.unique(canon.ts)
    if len(canon) == len(stamps) * len(canon.names):
        # dense (every metric at every timestamp, DCGM's usual block): rows sorted by (ts,
        # metric) are a timestamps x metrics matrix, packed a whole block at a time
        columns = canon.value.reshape(len(stamps), len(canon.names)).T
        return _framed(_dense_body(stamps, canon.names, _pack_columns(columns)))
    parts = [_U32.pack(len(stamps)), *_encode_timestamps(stamps), _U32.pack(len(canon.names))]
    # Rows are sorted by ts; a stable sort by metric gives each metric's rows in ts order.
    by_metric = np.argsort(canon.metric, kind="stable")
    bounds = np.searchsorted(canon.metric[by_metric], np.arange(len(canon.names) + 1))
    column = np.searchsorted(stamps, canon.ts)  # row -> its timestamp's slot
    for m, name in enumerate(canon.names):
        rows = by_metric[bounds[m] : bounds[m + 1]]
        packed = _pack_values(canon.value[rows])
        parts.extend(_metric_section(name, packed, column[rows], len(stamps)))
    return _framed(b"".join(parts))


def encode_blocks(blocks: Sequence[Samples]) -> list[bytes]:
    """`encode_block` of each of `blocks`, the same bytes, with numpy's calls made once for
    all of them that are alike (a chunk's GPUs: the same metric names, dense): a block of
    a few hundred samples costs mostly numpy's per-call time, ~60 calls each (measured:
    0.47 ms a block of 58 timestamps x 10 metrics). The others (other names, empty) are
    encoded alone, and so are alike blocks that are not dense once deduplicated (sparse:
    a metric missing at some times); a refusal (a value not finite, a name or a body too
    large) is the one encoding them one by one would raise first."""
    shared = Counter(b.names for b in blocks if len(b)).most_common(1)
    alike = [i for i, b in enumerate(blocks) if len(b) and shared and b.names == shared[0][0]]
    if len(alike) < 2:
        return [encode_block(b) for b in blocks]
    try:
        together = dict(zip(alike, _encoded_together([blocks[i] for i in alike]), strict=True))
    except _Refused:
        return [encode_block(b) for b in blocks]  # raises as one by one: the first refused
    return [together[i] if i in together else encode_block(b) for i, b in enumerate(blocks)]


def _encoded_together(blocks: Sequence[Samples]) -> list[bytes]:
    """encode_blocks of non-empty blocks with the same names."""
    names = blocks[0].names
    value = np.concatenate([b.value for b in blocks])
    if not np.isfinite(value).all():
        raise _Refused("block values must be finite (no NaN or inf)")
    part, ts, rank, value = _deduped(blocks, value)
    bounds = np.searchsorted(part, np.arange(len(blocks) + 1))
    width = len(names)
    used = np.zeros((len(blocks), width), dtype=bool)
    used[part, rank] = True
    new_stamp = np.ones(len(ts), dtype=bool)
    new_stamp[1:] = (ts[1:] != ts[:-1]) | (part[1:] != part[:-1])
    stamps = np.add.reduceat(new_stamp, bounds[:-1], dtype=np.int64).tolist()
    sizes = np.diff(bounds).tolist()
    dense = [bool(used[i].all()) and sizes[i] == stamps[i] * width for i in range(len(blocks))]
    out: list[bytes | None] = [None] * len(blocks)
    compressor = _compressor()
    sorted_names = tuple(sorted(names))
    by_stamps: dict[int, list[int]] = {}
    for i, is_dense in enumerate(dense):
        if is_dense:
            by_stamps.setdefault(stamps[i], []).append(i)
        else:
            out[i] = encode_block(blocks[i])
    for n, members in by_stamps.items():
        # each block's rows, sorted by (ts, metric), are an n x width matrix: its columns
        # are the block's metrics, stacked for every block of the group
        rows = np.concatenate([value[bounds[i] : bounds[i + 1]] for i in members])
        packed = _pack_columns(
            rows.reshape(len(members), n, width).transpose(0, 2, 1).reshape(-1, n)
        )
        for k, i in enumerate(members):
            block_stamps = ts[bounds[i] : bounds[i + 1] : width]
            mine = packed[k * width : (k + 1) * width]
            out[i] = _framed(_dense_body(block_stamps, sorted_names, mine), compressor)
    return out  # type: ignore[return-value]


def _deduped(
    blocks: Sequence[Samples], value: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`dedupe` of every block at once (the same names): (block, ts, metric rank, value),
    sorted by block, then as dedupe sorts, the last of a repeated (ts, metric) kept."""
    names = blocks[0].names
    rank = np.empty(len(names), dtype=np.int32)
    rank[sorted(range(len(names)), key=names.__getitem__)] = np.arange(len(names), dtype=np.int32)
    part = np.repeat(np.arange(len(blocks), dtype=np.int32), [len(b) for b in blocks])
    ts = np.concatenate([b.ts for b in blocks])
    metric = rank[np.concatenate([b.metric for b in blocks])]
    order = np.lexsort((np.arange(len(ts)), metric, ts, part))
    part, ts, metric, value = part[order], ts[order], metric[order], value[order]
    last = np.ones(len(ts), dtype=bool)
    last[:-1] = (part[1:] != part[:-1]) | (ts[1:] != ts[:-1]) | (metric[1:] != metric[:-1])
    return part[last], ts[last], metric[last], value[last]


def _dense_body(
    stamps: np.ndarray, names: tuple[str, ...], packed: Sequence[tuple[int, bytes]]
) -> bytes:
    parts = [_U32.pack(len(stamps)), *_encode_timestamps(stamps), _U32.pack(len(names))]
    for name, column in zip(names, packed, strict=True):
        parts.extend(_metric_section(name, column, None, len(stamps)))
    return b"".join(parts)


def _compressor() -> zstandard.ZstdCompressor:
    # write_content_size lets decode bound memory before decompressing; the
    # checksum turns most bit flips into a clean BlockFormatError.
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_content_size=True, write_checksum=True)


def _framed(body: bytes, compressor: zstandard.ZstdCompressor | None = None) -> bytes:
    if len(body) > MAX_BODY_SIZE:
        raise _Refused(f"block body of {len(body)} bytes exceeds limit {MAX_BODY_SIZE}")
    return MAGIC + bytes([BLOCK_VERSION]) + (compressor or _compressor()).compress(body)


def _encode_timestamps(stamps: np.ndarray) -> list[bytes]:
    """First timestamp absolute (int64), then the gaps at the narrowest width that fits."""
    first = int(stamps[0]) if len(stamps) else 0
    # Unsigned arithmetic: the true gap is positive and < 2**64, so wrap-around
    # subtraction yields it exactly even when int64 subtraction would overflow.
    gaps = np.diff(stamps.view(np.uint64))
    top = int(gaps.max()) if len(gaps) else 0
    width = next(w for w in (1, 2, 4, 8) if top < 1 << (8 * w))
    return [_I64.pack(first), bytes([width]), gaps.astype(_DELTA_DTYPES[width]).tobytes()]


def _metric_section(
    name: str, packed: tuple[int, bytes], slots: np.ndarray | None, n_stamps: int
) -> list[bytes]:
    """One metric section: name, flags, optional presence bitmap, packed values (`slots`:
    the timestamps it is present at, None for every one)."""
    raw_name = name.encode("utf-8")
    if len(raw_name) > 0xFFFF:
        raise _Refused(f"metric name too long ({len(raw_name)} UTF-8 bytes, max 65535)")
    encoding, data = packed
    flags = encoding << _ENC_SHIFT
    out = [_U16.pack(len(raw_name)), raw_name]
    if slots is None or len(slots) == n_stamps:
        out.append(bytes([flags]))  # dense: present at every timestamp, no bitmap needed
    else:
        present = np.zeros(n_stamps, dtype=bool)
        present[slots] = True
        out += [bytes([flags | _FLAG_SPARSE]), np.packbits(present, bitorder="little").tobytes()]
    out.append(data)
    return out


def _pack_values(values: np.ndarray) -> tuple[int, bytes]:
    """(encoding, bytes) of one column; lossless, bit-exact, chosen by fixed rules.

    A constant column is one float64. A column of decimals (DCGM's integers,
    watts with 3 decimals) is stored as integers scaled by 10**d, as zigzagged
    deltas in the narrowest width, byte plane by byte plane so that zstd sees
    runs of equal high bytes. Anything else stays raw float64 (no XOR transform:
    measured larger, see docs/STORAGE.md).
    """
    bits = values.astype("<f8").view("<u8")
    if (bits == bits[0]).all():
        return _ENC_CONST, bits[:1].tobytes()
    scaled = _scaled(values, bits)
    if scaled is None:
        return _ENC_FLOAT, bits.tobytes()
    decimals, zigzag, width = scaled
    planes = zigzag.astype(_DELTA_DTYPES[width]).view(np.uint8).reshape(-1, width).T
    return _ENC_SCALED, bytes([decimals, width]) + planes.tobytes()


def _pack_columns(columns: np.ndarray) -> list[tuple[int, bytes]]:
    """`_pack_values` of each row of `columns` (metrics x timestamps), the same bytes by the
    same rules, with a few numpy calls per block instead of ~15 per metric: a block's
    columns hold ~60 values each, where numpy's per-call cost is most of the work."""
    bits = np.ascontiguousarray(columns, dtype="<f8").view("<u8")
    out: list[tuple[int, bytes] | None] = [None] * len(bits)
    pending: dict[int, int | None] = {}
    constant = (bits == bits[:, :1]).all(axis=1).tolist() if bits.size else []
    for row in range(len(bits)):
        if constant[row]:
            out[row] = (_ENC_CONST, bits[row, :1].tobytes())
        else:
            pending[row] = _first_fit(columns[row], 0)
    while pending:  # rows grouped by the decimals each tries next
        tries: dict[int, list[int]] = {}
        for row, decimals in pending.items():
            if decimals is None:
                out[row] = (_ENC_FLOAT, bits[row].tobytes())
            else:
                tries.setdefault(decimals, []).append(row)
        pending = {}
        for decimals, rows in tries.items():
            for row, result in zip(
                rows, _scaled_rows(columns[rows], bits[rows], decimals), strict=True
            ):
                if result is None:  # not exact at these decimals: the next that fits
                    pending[row] = _first_fit(columns[row], decimals + 1)
                else:
                    out[row] = result
    return out  # type: ignore[return-value]


def _scaled_rows(
    values: np.ndarray, bits: np.ndarray, decimals: int
) -> list[tuple[int, bytes] | None]:
    """Per row, at `decimals` (as `_scaled` tries them): the scaled encoding, the float one
    (too large, or deltas too wide), or None when these decimals are not exact."""
    scale = 10.0**decimals
    with np.errstate(over="ignore", invalid="ignore"):
        rounded = np.round(values * scale) if decimals else np.round(values)
        fits = np.abs(rounded).max(axis=1) < _MAX_EXACT_INT
        ints = np.where(fits[:, None], rounded, 0.0).astype(np.int64)
    exact = ((ints / scale).view("<u8") == bits).all(axis=1)
    deltas = np.empty_like(ints)
    deltas[:, 0] = ints[:, 0]
    np.subtract(ints[:, 1:], ints[:, :-1], out=deltas[:, 1:])
    zigzag = ((deltas << 1) ^ (deltas >> 63)).view(np.uint64)
    tops = zigzag.max(axis=1).tolist()
    out: list[tuple[int, bytes] | None] = []
    for row, top in enumerate(tops):
        if not fits[row]:
            out.append((_ENC_FLOAT, bits[row].tobytes()))
        elif not exact[row]:
            out.append(None)
        else:
            width = next((w for w in _SCALED_WIDTHS if top < 1 << (8 * w)), None)
            if width is None:
                out.append((_ENC_FLOAT, bits[row].tobytes()))
            else:
                planes = zigzag[row].astype(_DELTA_DTYPES[width]).view(np.uint8)
                data = planes.reshape(-1, width).T.tobytes()
                out.append((_ENC_SCALED, bytes([decimals, width]) + data))
    return out


def _scaled(values: np.ndarray, bits: np.ndarray) -> tuple[int, np.ndarray, int] | None:
    """(decimals, zigzag deltas, width) for the smallest exact decimals, or None."""
    decimals = _first_fit(values, 0)
    while decimals is not None:
        scale = 10.0**decimals
        with np.errstate(over="ignore", invalid="ignore"):
            rounded = np.round(values * scale) if decimals else np.round(values)
        if not np.abs(rounded).max() < _MAX_EXACT_INT:
            return None
        ints = rounded.astype(np.int64)
        # the decoder computes ints / scale: accept only when that gives the same bits
        if ((ints / scale).view("<u8") == bits).all():
            deltas = np.empty_like(ints)
            deltas[0] = ints[0]
            np.subtract(ints[1:], ints[:-1], out=deltas[1:])
            zigzag = ((deltas << 1) ^ (deltas >> 63)).view(np.uint64)
            top = int(zigzag.max())
            width = next((w for w in _SCALED_WIDTHS if top < 1 << (8 * w)), None)
            return None if width is None else (decimals, zigzag, width)
        decimals = _first_fit(values, decimals + 1)
    return None


def _first_fit(values: np.ndarray, start: int) -> int | None:
    """The smallest decimals >= start at which a few of the values are exact (a cheap
    filter before the whole-column check: numpy's per-call cost dominates small blocks)."""
    probes = [float(values[i]) for i in {0, len(values) // 2, len(values) - 1}]
    for decimals in range(start, MAX_DECIMALS + 1):
        scale = 10.0**decimals
        if all(abs(v * scale) < _MAX_EXACT_INT and round(v * scale) / scale == v for v in probes):
            return decimals
    return None


# --------------------------------------------------------------------- decoding


def decode_block(data: bytes, one_stamp_path: bool = True) -> Samples:
    """Decode a block produced by `encode_block`.

    Returns canonical Samples (sorted by (ts, metric name), names sorted).
    Raises BlockFormatError on wrong magic or version, a declared body size
    above MAX_BODY_SIZE, or any corrupt, truncated or trailing data.

    A block of one timestamp (a live scrape's) is read without numpy per metric
    (`one_stamp_path`; off only to compare the two): numpy's per-call cost made it as dear
    as a block of an hour.
    """
    version, body = _decompress_body(bytes(data))
    reader = _Reader(body)
    try:
        stamps = _decode_timestamps(reader)
        n_metrics = reader.u32()
        if one_stamp_path and len(stamps) == 1:
            return _decode_one_stamp(reader, int(stamps[0]), n_metrics, version)
        names: list[str] = []
        ts_parts, metric_parts, value_parts = [], [], []
        for m in range(n_metrics):
            name, slots, values = _decode_metric(reader, len(stamps), version)
            if names and name <= names[-1]:
                raise BlockFormatError("metric names not strictly sorted")
            names.append(name)
            ts_parts.append(stamps[slots])
            metric_parts.append(np.full(len(slots), m, dtype=np.int32))
            value_parts.append(values)
        reader.expect_end()
    except UnicodeDecodeError as exc:
        raise BlockFormatError(f"metric name is not UTF-8: {exc}") from None
    if not n_metrics:
        return _empty()
    # Sections are per metric; reorder to (ts, metric name) row order.
    ts, metric = np.concatenate(ts_parts), np.concatenate(metric_parts)
    order = np.lexsort((metric, ts))
    return Samples(
        ts=ts[order],
        metric=metric[order],
        value=np.concatenate(value_parts)[order],
        names=tuple(names),
    )


def _decompress_body(data: bytes) -> tuple[int, bytes]:
    """(version, body): check the 4-byte header and inflate the frame, bounding its size first."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise BlockFormatError("not a block: bad magic")
    if data[3] not in READABLE_VERSIONS:
        raise BlockFormatError(f"unsupported block version {data[3]}")
    frame = data[4:]
    try:
        size = zstandard.frame_content_size(frame)
    except zstandard.ZstdError as exc:
        raise BlockFormatError(f"corrupt block: {exc}") from None
    if size < 0 or size >= 2**64 - 1:  # content size absent from the frame header
        raise BlockFormatError("block does not declare its decompressed size")
    if size > MAX_BODY_SIZE:
        raise BlockFormatError(f"declared block size {size} exceeds limit {MAX_BODY_SIZE}")
    try:
        body = zstandard.ZstdDecompressor().decompress(
            frame, max_output_size=size, allow_extra_data=False
        )
    except zstandard.ZstdError as exc:
        raise BlockFormatError(f"corrupt block: {exc}") from None
    if len(body) != size:
        raise BlockFormatError("decompressed size does not match the declared size")
    return data[3], body


class _Reader:
    """Bounds-checked cursor over the body; every short read is a BlockFormatError."""

    def __init__(self, buf: bytes) -> None:
        self._buf = memoryview(buf)
        self._pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._buf):
            raise BlockFormatError("truncated block body")
        chunk = self._buf[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def u8(self) -> int:
        return self.take(1)[0]

    def rest(self) -> tuple[memoryview, int]:
        """The whole buffer and the position: a caller reading the rest on its own."""
        return self._buf, self._pos

    def u16(self) -> int:
        return _U16.unpack(self.take(2))[0]

    def u32(self) -> int:
        return _U32.unpack(self.take(4))[0]

    def i64(self) -> int:
        return _I64.unpack(self.take(8))[0]

    def array(self, dtype: np.dtype | type | str, count: int) -> np.ndarray:
        # Sizes are checked against the bytes actually present before numpy
        # allocates anything, so a forged count cannot force a huge allocation.
        dt = np.dtype(dtype)
        return np.frombuffer(self.take(dt.itemsize * count), dtype=dt)

    def expect_end(self) -> None:
        if self._pos != len(self._buf):
            raise BlockFormatError(f"{len(self._buf) - self._pos} trailing bytes in block body")


def _decode_timestamps(reader: _Reader) -> np.ndarray:
    """Read the timestamp column; it must be strictly increasing."""
    count, first, width = reader.u32(), reader.i64(), reader.u8()
    if width not in _DELTA_DTYPES:
        raise BlockFormatError(f"bad timestamp delta width {width}")
    gaps = reader.array(_DELTA_DTYPES[width], max(count - 1, 0)).astype(np.uint64)
    if (gaps == 0).any():
        raise BlockFormatError("timestamps not strictly increasing")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    # Mirror of the encoder's unsigned arithmetic; wrap-around is intended.
    stamps = np.empty(count, dtype=np.uint64)
    stamps[0] = np.int64(first).view(np.uint64)
    np.cumsum(gaps, out=stamps[1:])
    stamps[1:] += stamps[0]
    out = stamps.view(np.int64)
    if count > 1 and (out[1:] <= out[:-1]).any():  # gaps overflowed past int64 max
        raise BlockFormatError("timestamps overflow int64")
    return out


def _section_head(reader: _Reader, version: int) -> tuple[str, int, int]:
    """A metric section's name, flags and value encoding."""
    name = bytes(reader.take(reader.u16())).decode("utf-8")
    flags = reader.u8()
    return name, flags, _encoding(flags, version)


def _encoding(flags: int, version: int) -> int:
    """A section's value encoding, from its flags (refused when a bit is unknown)."""
    known = _FLAG_SPARSE if version == 1 else _FLAG_SPARSE | (0b11 << _ENC_SHIFT)
    encoding = (flags >> _ENC_SHIFT) & 0b11
    if flags & ~known or encoding > _ENC_SCALED:
        raise BlockFormatError(f"unknown metric flags {flags:#x}")
    return encoding


def _decode_one_stamp(reader: _Reader, stamp: int, n_metrics: int, version: int) -> Samples:
    """The sections of a one-timestamp block, each value read as a Python float, with the
    general path's checks in its order and its messages (on the buffer itself: a reader
    call per field cost as much as numpy did)."""
    buf, pos = reader.rest()
    size = len(buf)
    names: list[str] = []
    values: list[float] = []
    for _ in range(n_metrics):
        if pos + 2 > size:
            raise BlockFormatError("truncated block body")
        end = pos + 2 + _U16.unpack_from(buf, pos)[0]
        if end > size:
            raise BlockFormatError("truncated block body")
        name = bytes(buf[pos + 2 : end]).decode("utf-8")
        if end + 1 > size:
            raise BlockFormatError("truncated block body")
        flags, pos = buf[end], end + 1
        encoding = _encoding(flags, version)
        if flags & _FLAG_SPARSE:
            if pos + 1 > size:
                raise BlockFormatError("truncated block body")
            bitmap, pos = buf[pos], pos + 1
            if bitmap & ~1:
                raise BlockFormatError("nonzero padding bits in presence bitmap")
            if not bitmap:
                raise BlockFormatError(f"metric {name!r} has no values")
        value, pos = _unpack_one(buf, pos, encoding, name)
        if not math.isfinite(value):
            raise BlockFormatError(f"metric {name!r} has non-finite values")
        if names and name <= names[-1]:
            raise BlockFormatError("metric names not strictly sorted")
        names.append(name)
        values.append(value)
    if pos != size:
        raise BlockFormatError(f"{size - pos} trailing bytes in block body")
    if not n_metrics:
        return _empty()
    return Samples(
        ts=np.full(n_metrics, stamp, dtype=np.int64),
        metric=np.arange(n_metrics, dtype=np.int32),
        value=np.array(values, dtype=np.float64),
        names=tuple(names),
    )


def _unpack_one(buf: memoryview, pos: int, encoding: int, name: str) -> tuple[float, int]:
    """`_unpack_values` of one value at `pos`: the same bytes read, the same float; and
    the position after it."""
    if encoding != _ENC_SCALED:  # float64, or a constant (its one value)
        if pos + 8 > len(buf):
            raise BlockFormatError("truncated block body")
        return _F64.unpack_from(buf, pos)[0], pos + 8
    if pos + 2 > len(buf):
        raise BlockFormatError("truncated block body")
    decimals, width = buf[pos], buf[pos + 1]
    if decimals > MAX_DECIMALS or width not in _SCALED_WIDTHS:
        raise BlockFormatError(f"metric {name!r}: bad scaled encoding ({decimals}, {width})")
    pos += 2
    if pos + width > len(buf):
        raise BlockFormatError("truncated block body")
    zigzag = int.from_bytes(buf[pos : pos + width], "little")
    scaled = (zigzag >> 1) ^ -(zigzag & 1)
    if abs(scaled) >= _MAX_EXACT_INT:
        raise BlockFormatError(f"metric {name!r}: scaled integers out of range")
    return float(scaled) / 10.0**decimals, pos + width


def _decode_metric(
    reader: _Reader, n_stamps: int, version: int
) -> tuple[str, np.ndarray, np.ndarray]:
    """Read one metric section; returns (name, timestamp slots, values)."""
    name, flags, encoding = _section_head(reader, version)
    if flags & _FLAG_SPARSE:
        packed = reader.array(np.uint8, (n_stamps + 7) // 8)
        bits = np.unpackbits(packed, bitorder="little")
        if bits[n_stamps:].any():
            raise BlockFormatError("nonzero padding bits in presence bitmap")
        slots = np.flatnonzero(bits[:n_stamps])
    else:
        slots = np.arange(n_stamps)
    if len(slots) == 0:
        raise BlockFormatError(f"metric {name!r} has no values")
    values = _unpack_values(reader, encoding, len(slots), name)
    if not np.isfinite(values).all():
        raise BlockFormatError(f"metric {name!r} has non-finite values")
    return name, slots, values


def _unpack_values(reader: _Reader, encoding: int, k: int, name: str) -> np.ndarray:
    """The k values of one section, as a new writable native float64 array."""
    if encoding == _ENC_FLOAT:
        return reader.array("<f8", k).astype(np.float64)
    if encoding == _ENC_CONST:
        return np.full(k, reader.array("<f8", 1)[0], dtype=np.float64)
    decimals, width = reader.u8(), reader.u8()
    if decimals > MAX_DECIMALS or width not in _SCALED_WIDTHS:
        raise BlockFormatError(f"metric {name!r}: bad scaled encoding ({decimals}, {width})")
    planes = reader.array(np.uint8, k * width).reshape(width, k)
    zigzag = np.ascontiguousarray(planes.T).view(_DELTA_DTYPES[width]).ravel().astype(np.int64)
    deltas = (zigzag >> 1) ^ -(zigzag & 1)
    ints = np.cumsum(deltas)
    if (np.abs(ints) >= _MAX_EXACT_INT).any():
        raise BlockFormatError(f"metric {name!r}: scaled integers out of range")
    return ints.astype(np.float64) / 10.0**decimals
