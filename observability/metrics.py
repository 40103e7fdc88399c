"""Prometheus metrics of every process (gateway, worker, ingest commands).

With PROMETHEUS_MULTIPROC_DIR set (make run and the tests set it; deploy/ sets it per pod),
each process writes its samples to files there and `/metrics` on the gateway adds up every
process on the machine. Without it, each process counts for itself.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

ROWS = Counter("telemetry_rows_total", "CSV rows parsed, by outcome", ["outcome"])
SAMPLES_STORED = Counter("telemetry_samples_stored_total", "Samples written to etcd by workers")
CHUNKS = Counter("telemetry_chunks_total", "Chunk tasks finished, by outcome", ["outcome"])
CHUNK_SECONDS = Histogram(
    "telemetry_chunk_seconds",
    "Time a worker spends persisting one chunk",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ETCD_SECONDS = Histogram(
    "telemetry_etcd_request_seconds",
    "etcd request latency, by operation",
    ["op"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5),
)
ETCD_ERRORS = Counter(
    "telemetry_etcd_errors_total", "etcd requests that failed, by operation", ["op"]
)
READ_CACHE = Counter(
    "telemetry_read_cache_total",
    "Decoded-block cache lookups and evictions (store/cache.py), by outcome",
    ["outcome"],
)
READ_CACHE_SIZE = Gauge(
    "telemetry_read_cache_bytes",
    "Bytes of decoded blocks held by the read cache",
    multiprocess_mode="livesum",
)
WEBSOCKET_CLIENTS = Gauge(
    "telemetry_websocket_clients", "Connected WebSocket clients", multiprocess_mode="livesum"
)
HTTP_REQUESTS = Counter(
    "telemetry_http_requests_total",
    "HTTP requests, by method, route and status",
    ["method", "route", "status"],
)
HTTP_REFUSED = Counter(
    "telemetry_http_refused_total",
    "HTTP requests refused by the guard before or while their body was read, by reason",
    ["reason"],
)
READ_LANE_ANSWERS = Counter(
    "telemetry_read_lane_answers_total",
    "HTTP requests answered by the read lane (telemetry_site/lane.py) rather than Django, by route",
    ["route"],
)
READ_KEPT_ANSWERS = Counter(
    "telemetry_read_kept_answers_total",
    "Lane reads asked again, by outcome: answered from a kept answer (hit), or read from the "
    "store because none was kept (miss), what it read changed (stale), or the store's view "
    "could not vouch for it then (unvouched)",
    ["outcome"],
)
READ_LANE_RECALLED = Counter(
    "telemetry_read_lane_recalled_total",
    "GETs the read lane recognised as one it answered before (same path, query and headers "
    "but request ids and trace contexts, no credentials), by outcome: sent their kept answer "
    "without the request steps, or stepped (no kept answer, no header template, refused: "
    "the steps or Django answer them)",
    ["outcome"],
)
READ_LANE_INLINE = Counter(
    "telemetry_read_lane_inline_total",
    "PromQL queries the read lane tried on the event loop, by outcome: answered there, or "
    "retried on its threads (the query needed etcd or was too large)",
    ["outcome"],
)
HTTP_SECONDS = Histogram(
    "telemetry_http_request_seconds",
    "HTTP request latency, by method and route",
    ["method", "route"],
)


# labelled children by (metric, label values): see child()
_children: dict[tuple[int, tuple[str, ...]], Any] = {}
_CHILDREN_LIMIT = 4096


def child(metric: Any, *values: str) -> Any:
    """`metric.labels(*values)`, kept: prometheus_client checks and locks on every
    labels() call (~5 us; an answer of the read lane made five, ~2 % of its CPU). For
    bounded label values only (routes, methods, statuses, outcomes); a child follows a
    fork by itself (multiprocess values check the pid)."""
    key = (id(metric), values)
    got = _children.get(key)
    if got is None:
        if len(_children) >= _CHILDREN_LIMIT:
            _children.clear()
        got = _children[key] = metric.labels(*values)
    return got


class _SizedFiles(multiprocess.MultiProcessCollector):
    """prometheus_client's multiprocess collector, minus the files a process has just
    created and not yet sized: such a file is empty for an instant, and reading it raised
    `struct.error`, so a scrape that met one (a worker child's first chunk) answered 500."""

    def collect(self) -> Any:
        files = glob.glob(os.path.join(self._path, "*.db"))
        return self.merge([f for f in files if _sized(f)], accumulate=True)


def _sized(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:  # gone since the listing (a dead process's file removed)
        return False


def registry() -> CollectorRegistry:
    """Every process of this machine (multiprocess mode), or this process alone."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        merged = CollectorRegistry()
        _SizedFiles(merged)
        return merged
    from prometheus_client import REGISTRY

    return REGISTRY


def exposition(extra: list[str] | None = None) -> bytes:
    """The text exposition of `registry()`, plus extra lines computed by the caller."""
    return generate_latest(registry()) + "".join(extra or []).encode()


UPKEEP_FAILURES = Counter(
    "telemetry_upkeep_failures_total",
    "GPU upkeep steps (merge, rollup-<tier>, retention) that failed and were skipped",
    ["step"],
)
