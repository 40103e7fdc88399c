"""The read side: GPUs, hosts, clusters and telemetry, shaped for the APIs.

REST views (and later GraphQL resolvers) call these; nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from django.conf import settings

from store import default_keys, window_ms
from store.errors import NotFound
from store.keys import MAX_TS, Keys, check_segment
from store.read import iter_raw, read_buckets
from store.registry import get_record, list_records
from store.tiers import for_step as tier_for_step
from store.tiers import tiers
from store.write import latest_values
from timeparse.timestamps import format_timestamp


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
    if host:
        check_segment(host, "host")  # refused as in a key, also when only filtered here
    records = list_records(keys, cluster, host if cluster else None)
    if host and not cluster:
        records = [r for r in records if r["host"] == host]
    if model:
        records = [r for r in records if r.get("model") == model]
    latest = latest_values(keys) if records else {}
    return [gpu_view(r, latest.get(r["uuid"])) for r in records]


def host_gpus(hostname: str, cluster: str | None = None) -> list[dict]:
    """The GPUs of one host; raises NotFound when it has none (as an unknown GPU does).

    A host exists only through its GPUs' records: no GPU, no host.
    """
    gpus = list_gpus(cluster=cluster, host=hostname)
    if not gpus:
        where = f" in cluster {cluster!r}" if cluster else ""
        raise NotFound(f"no host {hostname!r}{where}")
    return gpus


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
    step_ms: int | None = None  # downsample into buckets of this size
    agg: str = "avg"  # avg, min, max, last, sum or count of each bucket


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

    Raises NotFound for an unknown GPU, TooManyPoints for a step query whose
    window holds more buckets than TELEMETRY_MAX_BUCKETS.
    """
    keys = default_keys()
    record = get_record(keys, q.uuid)
    latest = latest_values(keys, [q.uuid]).get(q.uuid)
    return {"gpu": gpu_view(record, latest), **_page(iter_rows(keys, q, record, latest), q.limit)}


def telemetry(q: TelemetryQuery) -> dict[str, Any]:
    """One page of a GPU's samples: {"results": [...], "next_cursor": str | None}."""
    page = telemetry_page(q)
    return {"results": page["results"], "next_cursor": page["next_cursor"]}


def _page(rows: Iterator[tuple[int, str, float]], limit: int) -> dict[str, Any]:
    taken = list(itertools.islice(rows, limit + 1))
    more = len(taken) > limit
    taken = taken[:limit]
    return {
        "results": [
            {"timestamp": format_timestamp(t), "metric_name": m, "value": v} for t, m, v in taken
        ],
        "next_cursor": encode_cursor(taken[-1][0], taken[-1][1]) if more else None,
    }


class TooManyPoints(ValueError):
    pass


def iter_rows(
    keys: Keys, q: TelemetryQuery, record: dict[str, Any], latest: dict[str, list] | None
) -> Iterator[tuple[int, str, float]]:
    """(ts, metric, value) in (time, metric) order (or reversed), filtered, after the cursor.

    Memory is bounded by one block window (raw) or by the bucket count (step).
    """
    start, end = q.start, q.end
    if q.after is not None:
        start, end = (
            (start, min(end, q.after[0])) if q.descending else (max(start, q.after[0]), end)
        )
    wanted = frozenset(q.metrics)
    source = (
        _bucket_rows(keys, q, record, latest, start, end)
        if q.step_ms
        else _raw_rows(keys, q, start, end)
    )
    for row in source:
        if wanted and row[1] not in wanted:
            continue
        if q.after is not None and not _beyond((row[0], row[1]), q.after, q.descending):
            continue
        yield row


def _raw_rows(
    keys: Keys, q: TelemetryQuery, start: int, end: int
) -> Iterator[tuple[int, str, float]]:
    for samples in iter_raw(keys, q.uuid, start, end, window_ms(), q.descending):
        rows = list(samples.rows())  # sorted by (ts, metric name): the codec's contract
        yield from reversed(rows) if q.descending else rows


def _bucket_rows(
    keys: Keys,
    q: TelemetryQuery,
    record: dict[str, Any],
    latest: dict[str, list] | None,
    start: int,
    end: int,
) -> Iterator[tuple[int, str, float]]:
    step = int(q.step_ms or 0)
    newest = max((ts for ts, _ in (latest or {}).values()), default=record["first_seen"])
    start, end = max(start, record["first_seen"]), min(end, newest)
    if end < start:
        return
    buckets = (end - start) // step + 1
    if buckets > settings.TELEMETRY_MAX_BUCKETS:
        raise TooManyPoints(
            f"step {step // 1000}s over this window gives {buckets} buckets per metric; at most "
            f"{settings.TELEMETRY_MAX_BUCKETS}: use a larger step or a smaller window"
        )
    all_tiers = tiers()
    b = read_buckets(keys, q.uuid, start, end, step, all_tiers[0], tier_for_step(step))
    names = np.array(b.names, dtype=object)[b.metric] if len(b) else np.array([], dtype=object)
    order = np.lexsort((names.astype(str), b.ts)) if len(b) else np.array([], dtype=int)
    if q.descending:
        order = order[::-1]
    values = b.value(q.agg)
    for i in order.tolist():
        yield int(b.ts[i]), str(names[i]), float(values[i])


def _beyond(row: tuple[int, str], after: tuple[int, str], descending: bool) -> bool:
    return row < after if descending else row > after


def telemetry_csv(q: TelemetryQuery, wide: bool = False) -> Iterator[str]:
    """The whole window of `q` as CSV lines (header first), ignoring its limit.

    Long: timestamp,metric_name,value. Wide: timestamp and a column per metric
    (the metrics asked for, else every metric the GPU has reported), empty where
    a metric has no value at that time. Raises NotFound / TooManyPoints on the
    first line.
    """
    keys = default_keys()
    record = get_record(keys, q.uuid)
    latest = latest_values(keys, [q.uuid]).get(q.uuid) or {}
    rows = iter_rows(keys, q, record, latest)
    if not wide:
        yield "timestamp,metric_name,value\r\n"
        for ts, metric, value in rows:
            yield f"{format_timestamp(ts)},{_csv_cell(metric)},{value!r}\r\n"
        return
    columns = list(q.metrics) or sorted(latest)
    yield ",".join(["timestamp", *(_csv_cell(c) for c in columns)]) + "\r\n"
    for ts, group in itertools.groupby(rows, key=lambda r: r[0]):
        values = {m: v for _, m, v in group}
        cells = [repr(values[c]) if c in values else "" for c in columns]
        yield ",".join([format_timestamp(ts), *cells]) + "\r\n"


def _csv_cell(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text
