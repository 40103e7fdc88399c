"""The read side: GPUs, hosts, clusters and telemetry, shaped for the APIs.

REST views (and later GraphQL resolvers) call these; nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections import Counter, defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from apps.ingest.timeparse import format_timestamp
from store import default_keys, window_ms
from store.keys import MAX_TS, Keys
from store.registry import get_record, list_records
from store.telemetry import latest_values, read_samples


def gpu_view(record: dict[str, Any], latest: dict[str, list] | None) -> dict[str, Any]:
    """A GPU record with its latest values and last-seen time."""
    latest = latest or {}
    last_seen = max((ts for ts, _ in latest.values()), default=None)
    return {
        "uuid": record["uuid"],
        "gpu_index": record.get("gpu_index"),
        "device": record.get("device", ""),
        "model": record.get("model", ""),
        "host": record["host"],
        "cluster": record["cluster"],
        "driver": record.get("driver", ""),
        "labels": record.get("labels", {}),
        "first_seen": format_timestamp(record["first_seen"]),
        "last_seen": format_timestamp(last_seen) if last_seen is not None else None,
        "latest": {
            name: {"timestamp": format_timestamp(ts), "value": value}
            for name, (ts, value) in sorted(latest.items())
        },
    }


def list_gpus(
    cluster: str | None = None, host: str | None = None, model: str | None = None
) -> list[dict]:
    """GPUs sorted by cluster, host, uuid; two range reads whatever the count."""
    keys = default_keys()
    records = list_records(keys, cluster, host if cluster else None)
    if host and not cluster:
        records = [r for r in records if r["host"] == host]
    if model:
        records = [r for r in records if r.get("model") == model]
    latest = latest_values(keys) if records else {}
    return [gpu_view(r, latest.get(r["uuid"])) for r in records]


def get_gpu(uuid: str) -> dict[str, Any]:
    """One GPU; raises store.errors.NotFound."""
    keys = default_keys()
    record = get_record(keys, uuid)
    return gpu_view(record, latest_values(keys, [uuid]).get(uuid))


def list_hosts(cluster: str | None = None) -> list[dict]:
    counts: Counter[tuple[str, str]] = Counter()
    for r in list_records(default_keys(), cluster):
        counts[(r["cluster"], r["host"])] += 1
    return [{"hostname": h, "cluster": c, "gpu_count": n} for (c, h), n in sorted(counts.items())]


def list_clusters() -> list[dict]:
    hosts: dict[str, set[str]] = defaultdict(set)
    gpus: Counter[str] = Counter()
    for r in list_records(default_keys()):
        hosts[r["cluster"]].add(r["host"])
        gpus[r["cluster"]] += 1
    return [{"name": c, "host_count": len(hosts[c]), "gpu_count": gpus[c]} for c in sorted(gpus)]


# Telemetry -----------------------------------------------------------------------------
class CursorError(ValueError):
    pass


@dataclass(frozen=True)
class TelemetryQuery:
    uuid: str
    start: int = 0
    end: int = MAX_TS
    metrics: tuple[str, ...] = ()
    descending: bool = False
    limit: int = 1000
    after: tuple[int, str] | None = None  # (ts, metric) of the last row already returned


def encode_cursor(ts: int, metric: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([ts, metric]).encode()).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[int, str]:
    """The (ts, metric) an `encode_cursor` text holds; raises CursorError on anything else."""
    try:
        ts, metric = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, TypeError, binascii.Error):
        raise CursorError("cursor is not one this API returned") from None
    # bool is an int and 1e400 parses as inf: accept exact, in-range integers only.
    if type(ts) is not int or not 0 <= ts <= MAX_TS or not isinstance(metric, str):
        raise CursorError("cursor is not one this API returned")
    return ts, metric


def telemetry_page(q: TelemetryQuery) -> dict[str, Any]:
    """The GPU and one page of its samples: {"gpu", "results", "next_cursor"}.

    Raises NotFound for an unknown GPU.
    """
    keys = default_keys()
    record = get_record(keys, q.uuid)
    gpu = gpu_view(record, latest_values(keys, [q.uuid]).get(q.uuid))
    return {"gpu": gpu, **_samples_page(keys, q)}


def telemetry(q: TelemetryQuery) -> dict[str, Any]:
    """Samples of one GPU in [start, end], ordered by (time, metric), one page at a time.

    Returns {"results": [...], "next_cursor": str | None}. Raises NotFound for an
    unknown GPU.
    """
    keys = default_keys()
    get_record(keys, q.uuid)
    return _samples_page(keys, q)


def _samples_page(keys: Keys, q: TelemetryQuery) -> dict[str, Any]:
    start, end = q.start, q.end
    if q.after is not None:
        start, end = (
            (start, min(end, q.after[0])) if q.descending else (max(start, q.after[0]), end)
        )
    samples = read_samples(keys, q.uuid, start, end, window_ms())
    names = np.array(samples.names, dtype=object)
    metric_names = names[samples.metric] if len(samples) else np.array([], dtype=object)
    order = (
        np.lexsort((metric_names.astype(str), samples.ts)) if len(samples) else np.array([], int)
    )
    if q.descending:
        order = order[::-1]
    rows = []
    wanted = set(q.metrics)
    for i in order.tolist():
        ts, metric = int(samples.ts[i]), str(metric_names[i])
        if wanted and metric not in wanted:
            continue
        if q.after is not None and not _beyond((ts, metric), q.after, q.descending):
            continue
        rows.append((ts, metric, float(samples.value[i])))
        if len(rows) > q.limit:
            break
    more = len(rows) > q.limit
    rows = rows[: q.limit]
    return {
        "results": [
            {"timestamp": format_timestamp(t), "metric_name": m, "value": v} for t, m, v in rows
        ],
        "next_cursor": encode_cursor(rows[-1][0], rows[-1][1]) if more else None,
    }


def _beyond(row: tuple[int, str], after: tuple[int, str], descending: bool) -> bool:
    return row < after if descending else row > after
