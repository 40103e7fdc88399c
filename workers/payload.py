"""The Celery payload of a chunk: columnar and compact (msgpack with raw little-endian arrays).

    {"v": 1, "root": etcd root, "job": id, "seq": n, "u": upload sequence,
     "names": [metric names],
     "gpus": [{"f": facts, "t": int64[], "m": int32[] (index into names), "x": float64[],
               "w": [[start_ms, end_ms, {workload labels}], ...] (optional)}]}

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

from store.codec import Samples
from store.write import GpuBatch

VERSION = 1


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


def encode(chunk: ChunkColumns, root: str, job_id: str, upload: int = 0) -> dict[str, Any]:
    return {
        "v": VERSION,
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
    if not isinstance(payload, dict) or payload.get("v") != VERSION:
        version = payload.get("v") if isinstance(payload, dict) else payload
        raise PayloadError(f"unknown chunk payload version {version!r}")
    try:
        names = tuple(payload["names"])
        batches = []
        for g in payload["gpus"]:
            ts = np.frombuffer(g["t"], dtype="<i8").astype(np.int64)
            metric = np.frombuffer(g["m"], dtype="<i4").astype(np.int32)
            value = np.frombuffer(g["x"], dtype="<f8").astype(np.float64)
            if not len(ts) == len(metric) == len(value):
                raise PayloadError("chunk columns differ in length")
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
