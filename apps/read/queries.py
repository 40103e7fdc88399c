"""The read side: GPUs, hosts, clusters and telemetry, shaped for the APIs.

REST views (and later GraphQL resolvers) call these; nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
import threading
from collections import Counter, OrderedDict, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
from django.conf import settings

from apps.read import columns as col
from store import default_keys, shards, window_ms
from store.codec import Samples
from store.errors import NotFound
from store.fleet import Fleet, read_fleet
from store.keys import MAX_TS, Keys, check_segment
from store.read import (
    GpuWindow,
    bucket_ranges,
    iter_raw,
    open_gpu,
    raw_ranges,
    read_buckets,
)
from store.registry import all_instances, get_record, gpu_shard, instances_of, located_of
from store.tiers import for_step as tier_for_step
from store.tiers import tiers
from store.workloads import Period, in_window, read_workloads
from store.write import latest_values
from timeparse.timestamps import format_timestamp

T = TypeVar("T")


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
        "parent": record.get("parent"),
        "placements": [
            {"cluster": p["cluster"], "host": p["host"], "since": format_timestamp(p["since"])}
            for p in record.get("placements")
            or [{**located_of(record), "since": record["first_seen"]}]
        ],
        "latest": {
            name: {"timestamp": format_timestamp(ts), "value": value}
            for name, (ts, value) in sorted(latest.items())
        },
    }


def fleet(cluster: str | None = None, host: str | None = None, latest: bool = True) -> Fleet:
    """The records (and latest values) the fleet views are built from: one etcd round trip.

    `version` changes whenever any of it does: the HTTP ETag of those views.
    Raises InvalidSegment for a cluster or host no key could hold (also a host that
    only filters here, without a cluster).
    """
    if host:
        check_segment(host, "host")
    return read_fleet(default_keys(), cluster, host if cluster else None, latest)


class _Built:
    """Fleet views already built, by what they were built from (the fleet's version).

    Few entries: a view of a large fleet is megabytes, and while ingest runs every
    version is soon replaced; what pays is the poller asking again before that.
    """

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._views: OrderedDict[tuple, list[dict]] = OrderedDict()

    def get(self, key: tuple, build: Callable[[], list[dict]]) -> list[dict]:
        with self._lock:
            views = self._views.get(key)
        if views is None:
            views = build()
            with self._lock:
                self._views[key] = views
                while len(self._views) > self._size:
                    self._views.popitem(last=False)
        return views


_built = _Built()


def list_gpus(
    cluster: str | None = None,
    host: str | None = None,
    model: str | None = None,
    of: Fleet | None = None,
) -> list[dict]:
    """GPUs sorted by cluster, host, uuid, with latest values; one etcd round trip
    (none when `of` is given), and no work at all when that fleet was seen before."""
    of = of or fleet(cluster, host)

    def build() -> list[dict]:
        records = of.records
        if cluster:  # `of` may hold the whole fleet
            records = [r for r in records if r["cluster"] == cluster]
        if host:
            records = [r for r in records if r["host"] == host]
        if model:
            records = [r for r in records if r.get("model") == model]
        return [gpu_view(r, of.latest.get(r["uuid"])) for r in records]

    return _built.get(("gpus", default_keys().root, of.version, cluster, host, model), build)


def host_gpus(hostname: str, cluster: str | None = None, of: Fleet | None = None) -> list[dict]:
    """The GPUs of one host; raises NotFound when it has none (as an unknown GPU does).

    A host exists only through its GPUs' records: no GPU, no host.
    """
    gpus = list_gpus(cluster=cluster, host=hostname, of=of)
    if not gpus:
        where = f" in cluster {cluster!r}" if cluster else ""
        raise NotFound(f"no host {hostname!r}{where}")
    return gpus


def get_gpu(uuid: str, instances: bool = True) -> dict[str, Any]:
    """One GPU, with the uuids of its MIG instances unless `instances` is False (one read
    less, for GraphQL, which reads them only when asked); raises store.errors.NotFound."""
    keys = default_keys()
    with shards.use(gpu_shard(keys, uuid)):
        record = get_record(keys, uuid)
        view = gpu_view(record, latest_values(keys, [uuid]).get(uuid))
        if instances:
            view["instances"] = instances_of(keys, uuid)
    return view


def fleet_instances() -> dict[str, list[str]]:
    """{parent uuid: [MIG instance uuids]} of the whole fleet: one keys-only read per shard."""
    keys = default_keys()
    merged: dict[str, list[str]] = {}
    for part in shards.fan_out(lambda: all_instances(keys)).values():
        for parent, uuids in part.items():
            merged.setdefault(parent, []).extend(uuids)
    return {parent: sorted(uuids) for parent, uuids in merged.items()}


def list_hosts(cluster: str | None = None, of: Fleet | None = None) -> list[dict]:
    of = of or fleet(cluster, latest=False)
    counts: Counter[tuple[str, str]] = Counter((r["cluster"], r["host"]) for r in of.records)
    return [{"hostname": h, "cluster": c, "gpu_count": n} for (c, h), n in sorted(counts.items())]


def list_clusters(of: Fleet | None = None) -> list[dict]:
    of = of or fleet(latest=False)
    hosts: dict[str, set[str]] = defaultdict(set)
    gpus: Counter[str] = Counter()
    for r in of.records:
        hosts[r["cluster"]].add(r["host"])
        gpus[r["cluster"]] += 1
    return [{"name": c, "host_count": len(hosts[c]), "gpu_count": gpus[c]} for c in sorted(gpus)]


def workloads(uuid: str, start: int = 0, end: int = MAX_TS) -> list[dict[str, Any]]:
    """The workloads (pod, namespace, container) that ran on the GPU within [start, end],
    each with the first and last sample time seen with it; idle periods left out."""
    return workload_views(read_workloads(default_keys(), [uuid]).get(uuid, []), start, end)


def workload_views(periods: list[Period], start: int, end: int) -> list[dict[str, Any]]:
    """`workloads` of periods already read."""
    return [
        {
            "pod": labels.get("pod", ""),
            "namespace": labels.get("namespace", ""),
            "container": labels.get("container", ""),
            "start": format_timestamp(s),
            "end": format_timestamp(e),
        }
        for s, e, labels in in_window(periods, start, end)
        if labels
    ]


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
    limit: int | None = 1000  # None: as many as TELEMETRY_MAX_RESPONSE_BYTES allows
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


class TooManyPoints(ValueError):
    pass


@dataclass(frozen=True)
class Page:
    """One answer's worth of samples, as columns in answer order."""

    gpu: dict[str, Any]
    samples: Samples
    next_cursor: str | None
    workloads: list[dict[str, Any]]  # the workloads that ran in the query's window


def read_page(q: TelemetryQuery, columns: bool = False) -> Page:
    """The GPU and one page of its samples, at most `q.limit` of them (None: no count
    limit) and at most TELEMETRY_MAX_RESPONSE_BYTES once encoded (rows shape, or the
    columns shape when `columns`; a columns page ends at a whole timestamp when it can).

    Raises NotFound for an unknown GPU, TooManyPoints for a step query whose
    window holds more buckets than TELEMETRY_MAX_BUCKETS.
    """
    keys = default_keys()
    with shards.use(gpu_shard(keys, q.uuid)):  # the shard of the GPU's cluster
        return _read_page(keys, q, columns)


def _read_page(keys: Keys, q: TelemetryQuery, columns: bool) -> Page:
    opened = _open(keys, q)
    record, latest = opened.record, opened.latest
    # a series per metric asked for, else per metric the GPU has reported
    series = len(q.metrics) or len(latest or {})
    bound: Callable[[Samples], np.ndarray] = (
        (lambda part: col.column_bytes_bound(part, series)) if columns else col.row_bytes_bound
    )
    gpu = _viewed(q.uuid, record, latest)
    ran = workload_views(opened.workloads, q.start, q.end)
    # what the answer carries besides the samples: the GPU, its workloads, the envelope
    envelope = len(orjson.dumps(gpu)) + len(orjson.dumps(ran)) + 1024 + 300 * series
    budget = int(settings.TELEMETRY_MAX_RESPONSE_BYTES) - envelope
    limit = q.limit if q.limit is not None else sys.maxsize
    taken: list[Samples] = []
    count = spent = 0
    more = False
    for chunk in iter_columns(keys, q, record, latest, opened.planned):
        if count >= limit or spent >= budget:
            more = True
            break
        part = col.take(chunk, limit - count)
        sizes = np.cumsum(bound(part))
        n = int(np.searchsorted(sizes, budget - spent, side="right")) or (0 if count else 1)
        if columns and n < len(chunk):
            n = _whole_times(chunk, n) or n
        if n:
            taken.append(col.take(part, n))
            count, spent = count + n, spent + int(sizes[n - 1])
        if n < len(chunk):
            more = True
            break
    samples = col.concat(taken) if taken else col.concat([])
    cursor = None
    if more and len(samples):
        cursor = encode_cursor(int(samples.ts[-1]), samples.names[int(samples.metric[-1])])
    return Page(gpu, samples, cursor, ran)


# gpu_view of each GPU's last telemetry read, while its record and latest values are the
# same objects (store/read.py keeps both while their keys are unchanged)
_views: dict[tuple[str, str], tuple[Any, Any, dict[str, Any]]] = {}


def _viewed(uuid: str, record: dict[str, Any], latest: dict[str, list] | None) -> dict[str, Any]:
    """gpu_view(record, latest), made once while both are unchanged (shared: read-only)."""
    slot = (shards.current(), uuid)
    seen = _views.get(slot)
    if seen is not None and seen[0] is record and seen[1] is latest:
        return seen[2]
    view = gpu_view(record, latest)
    if len(_views) >= 100_000:
        _views.clear()  # a bound, not a policy
    _views[slot] = (record, latest, view)
    return view


def _whole_times(s: Samples, n: int) -> int:
    """The largest m <= n whose first m rows end where the timestamp changes (0: none)."""
    changes = np.flatnonzero(s.ts[: n + 1] != s.ts[n])
    return int(changes[-1]) + 1 if len(changes) else 0


def telemetry_page(q: TelemetryQuery) -> dict[str, Any]:
    """The GPU and one page of its samples as row dicts: {"gpu", "results", "next_cursor"}."""
    page = read_page(q)
    return {
        "gpu": page.gpu,
        "results": col.rows_dicts(page.samples),
        "next_cursor": page.next_cursor,
    }


def telemetry(q: TelemetryQuery) -> dict[str, Any]:
    """One page of a GPU's samples: {"results": [...], "next_cursor": str | None}."""
    page = telemetry_page(q)
    return {"results": page["results"], "next_cursor": page["next_cursor"]}


def _window(q: TelemetryQuery) -> tuple[int, int]:
    """The query's time bounds, narrowed by its cursor."""
    if q.after is None:
        return q.start, q.end
    return (q.start, min(q.end, q.after[0])) if q.descending else (max(q.start, q.after[0]), q.end)


def _open(keys: Keys, q: TelemetryQuery) -> GpuWindow:
    """Record, latest values and (windows of up to a day) the blocks' keys: one round trip."""
    start, end = _window(q)
    if q.step_ms:
        ranges = bucket_ranges(
            keys, q.uuid, start, end, q.step_ms, tiers()[0], tier_for_step(q.step_ms)
        )
    else:
        ranges = raw_ranges(keys, q.uuid, start, end, window_ms())
    return open_gpu(keys, q.uuid, ranges)


def iter_columns(
    keys: Keys,
    q: TelemetryQuery,
    record: dict[str, Any],
    latest: dict[str, list] | None,
    planned: list | None = None,
) -> Iterator[Samples]:
    """Non-empty column chunks in answer order ((time, metric) or reversed), filtered,
    beyond the cursor. Memory is bounded by one block window (raw) or the bucket count.
    `planned`: the block keys `_open` listed along (`open_gpu`), if any.
    """
    start, end = _window(q)
    wanted = frozenset(q.metrics)
    if q.step_ms:
        source = iter([_buckets(keys, q, record, latest, start, end, planned or None)])
    else:
        blocks = planned[0] if planned else None
        source = iter_raw(keys, q.uuid, start, end, window_ms(), q.descending, blocks)
    for chunk in source:
        chunk = col.only_metrics(chunk, wanted)
        if q.descending and not q.step_ms:
            chunk = col.reverse(chunk)
        if q.after is not None:
            chunk = col.after(chunk, q.after, q.descending)
        if len(chunk):
            yield chunk


def _buckets(
    keys: Keys,
    q: TelemetryQuery,
    record: dict[str, Any],
    latest: dict[str, list] | None,
    start: int,
    end: int,
    planned: list | None = None,
) -> Samples:
    """The window's buckets as columns sorted by (bucket, metric name), or reversed."""
    step = int(q.step_ms or 0)
    newest = max((ts for ts, _ in (latest or {}).values()), default=record["first_seen"])
    start, end = max(start, record["first_seen"]), min(end, newest)
    if end < start:
        return col.concat([])
    buckets = (end - start) // step + 1
    if buckets > settings.TELEMETRY_MAX_BUCKETS:
        raise TooManyPoints(
            f"step {step // 1000}s over this window gives {buckets} buckets per metric; at most "
            f"{settings.TELEMETRY_MAX_BUCKETS}: use a larger step or a smaller window"
        )
    b = read_buckets(keys, q.uuid, start, end, step, tiers()[0], tier_for_step(step), planned)
    names = sorted(b.names)
    rank = np.array([names.index(n) for n in b.names], dtype=np.int32)
    metric = rank[b.metric] if len(b) else np.zeros(0, np.int32)
    order = np.lexsort((metric, b.ts))
    if q.descending:
        order = order[::-1]
    return Samples(b.ts[order], metric[order], b.value(q.agg)[order], tuple(names))


def telemetry_csv(q: TelemetryQuery, wide: bool = False) -> Iterator[bytes]:
    """The whole window of `q` as CSV, header first, then a piece per block window.

    Long: timestamp,metric_name,value. Wide: timestamp and a column per metric
    (the metrics asked for, else every metric the GPU has reported), empty where
    a metric has no value at that time. Ignores `limit`. Raises NotFound /
    TooManyPoints on the first piece.
    """
    keys = default_keys()
    shard = gpu_shard(keys, q.uuid)
    with shards.use(shard):
        opened = _open(keys, q)
    latest = opened.latest or {}
    chunks = _in_shard(shard, iter_columns(keys, q, opened.record, latest, opened.planned))
    if not wide:
        yield b"timestamp,metric_name,value\r\n"
        for chunk in chunks:
            yield col.csv_long(chunk)
        return
    columns = list(q.metrics) or sorted(latest)
    yield (",".join(["timestamp", *(col.csv_cell(c) for c in columns)]) + "\r\n").encode()
    for chunk in chunks:
        yield col.csv_wide(chunk, columns)


def _in_shard(shard: str, items: Iterator[T]) -> Iterator[T]:
    """`items`, each step run in `shard` (a streamed response may resume in another thread)."""
    while True:
        with shards.use(shard):
            try:
                item = next(items)
            except StopIteration:
                return
        yield item
