"""The Celery payload of a chunk: columnar and compact (msgpack, the columns zstd-compressed).

    {"v": 2, "root": etcd root, "job": id, "seq": n, "u": upload sequence,
     "names": [metric names],
     "z": one zstd frame (its size declared) of every GPU's columns, GPU after GPU, each
          int64 times, int32 metric indexes (into names), float64 values, little-endian,
     "gpus": [{"f": facts, "n": samples,
               "w": [[start_ms, end_ms, {workload labels}], ...] (optional)}]}

Version 1, still read (chunks queued before an upgrade), had each GPU's raw columns in
its entry ("t", "m", "x") and no "z". The columns compress 10-13x (regular times, few
distinct values): Redis holds and copies that much less, and Celery's base64 and JSON
envelope around the payload cost that much less on both ends (docs/PERFORMANCE.md).

The root travels with the chunk so a worker writes where the uploader decided; the
upload sequence orders overlapping uploads (store/order.py; absent: 0). The format
belongs to the workers: ingest encodes with `encode` and enqueues by task name.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import zstandard

from store.codec import Samples
from store.write import GpuBatch

VERSION = 2
READ_VERSIONS = (1, 2)
SAMPLE_BYTES = 20  # int64 time, int32 metric index, float64 value


class GpuColumns(Protocol):
    """One GPU's part of a chunk as ingest holds it (apps.ingest.chunking.GpuBuffer)."""

    facts: dict
    ts: array
    metric: array
    value: array
    periods: list


class ChunkColumns(Protocol):
    """A chunk as ingest cuts it (apps.ingest.chunking.Chunk)."""

    seq: int
    names: list[str]
    gpus: Sequence[GpuColumns]


class PayloadError(ValueError):
    pass


@dataclass(frozen=True)
class DecodedChunk:
    root: str
    job: str
    seq: int
    batches: list[GpuBatch]
    upload: int = 0


def encode(
    chunk: ChunkColumns, root: str, job_id: str, upload: int = 0, version: int = VERSION
) -> dict[str, Any]:
    """The chunk's payload in `version` (1: for workers of a release before version 2,
    which refuse it, while a rollout still runs them: CHUNK_PAYLOAD_VERSION)."""
    if version == 1:
        return _encode_v1(chunk, root, job_id, upload)
    if version != VERSION:
        raise ValueError(f"no chunk payload version {version!r} to write")
    columns: list[np.ndarray] = []
    for g in chunk.gpus:
        columns.append(np.frombuffer(g.ts, dtype=np.int64).astype("<i8", copy=False))
        metric = np.frombuffer(g.metric, dtype=np.dtype(f"i{g.metric.itemsize}"))
        columns.append(metric.astype("<i4", copy=False))
        columns.append(np.frombuffer(g.value, dtype=np.float64).astype("<f8", copy=False))
    packed = b"".join(memoryview(c).cast("B") for c in columns)
    return {
        "v": VERSION,
        "root": root,
        "job": job_id,
        "seq": chunk.seq,
        "u": upload,
        "names": chunk.names,
        "z": zstandard.ZstdCompressor(level=1).compress(packed),  # 1: 400 KB in ~0.5 ms
        "gpus": [{"f": g.facts, "n": len(g.ts), "w": g.periods} for g in chunk.gpus],
    }


def _encode_v1(chunk: ChunkColumns, root: str, job_id: str, upload: int) -> dict[str, Any]:
    return {
        "v": 1,
        "root": root,
        "job": job_id,
        "seq": chunk.seq,
        "u": upload,
        "names": chunk.names,
        "gpus": [
            {
                "f": g.facts,
                "t": np.frombuffer(g.ts, dtype=np.int64).astype("<i8").tobytes(),
                "m": np.frombuffer(g.metric, dtype=np.dtype(f"i{g.metric.itemsize}"))
                .astype("<i4")
                .tobytes(),
                "x": np.frombuffer(g.value, dtype=np.float64).astype("<f8").tobytes(),
                "w": g.periods,
            }
            for g in chunk.gpus
        ],
    }


def decode(payload: dict[str, Any]) -> DecodedChunk:
    """The chunk back from its payload; PayloadError on anything malformed."""
    version = payload.get("v") if isinstance(payload, dict) else payload
    if type(version) is not int or version not in READ_VERSIONS:
        raise PayloadError(f"unknown chunk payload version {version!r}")
    try:
        names = tuple(payload["names"])
        columns = _columns_v1(payload) if version == 1 else _columns(payload)
        batches = []
        for g, (ts, metric, value) in zip(payload["gpus"], columns, strict=True):
            periods = tuple((int(s), int(e), dict(lb)) for s, e, lb in g.get("w", ()))
            batches.append(GpuBatch(g["f"], Samples(ts, metric, value, names), periods))
        upload = int(payload.get("u", 0))
        if upload < 0:
            raise PayloadError(f"negative upload sequence {upload}")
        return DecodedChunk(payload["root"], payload["job"], int(payload["seq"]), batches, upload)
    except PayloadError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise PayloadError(f"malformed chunk payload: {type(exc).__name__}: {exc}") from None


Columns = tuple[np.ndarray, np.ndarray, np.ndarray]


def _columns(payload: dict[str, Any]) -> list[Columns]:
    """Each GPU's (times, metric indexes, values) from the payload's one zstd frame, which
    must declare exactly the size its GPUs' counts make: a frame is never inflated past
    what the payload says it holds."""
    counts = [g["n"] for g in payload["gpus"]]
    if any(type(n) is not int or n < 0 for n in counts):
        raise PayloadError("a GPU's sample count is not a non-negative integer")
    expected = sum(counts) * SAMPLE_BYTES
    frame = payload["z"]
    try:
        declared = zstandard.frame_content_size(frame)
        if declared != expected:
            raise PayloadError(f"the columns frame holds {declared} bytes, not {expected}")
        packed = zstandard.ZstdDecompressor().decompress(frame)
    except zstandard.ZstdError as exc:
        raise PayloadError(f"the columns frame is not zstd: {exc}") from None
    if len(packed) != expected:
        raise PayloadError(f"the columns frame held {len(packed)} bytes, not {expected}")
    columns, at = [], 0
    for n in counts:
        ts = np.frombuffer(packed, dtype="<i8", count=n, offset=at).astype(np.int64)
        metric = np.frombuffer(packed, dtype="<i4", count=n, offset=at + 8 * n).astype(np.int32)
        value = np.frombuffer(packed, dtype="<f8", count=n, offset=at + 12 * n)
        columns.append((ts, metric, value.astype(np.float64)))
        at += n * SAMPLE_BYTES
    return columns


def _columns_v1(payload: dict[str, Any]) -> list[Columns]:
    columns = []
    for g in payload["gpus"]:
        ts = np.frombuffer(g["t"], dtype="<i8").astype(np.int64)
        metric = np.frombuffer(g["m"], dtype="<i4").astype(np.int32)
        value = np.frombuffer(g["x"], dtype="<f8").astype(np.float64)
        if not len(ts) == len(metric) == len(value):
            raise PayloadError("chunk columns differ in length")
        columns.append((ts, metric, value))
    return columns
