"""Prometheus remote write 1.0 into the chunk pipeline.

A request body is a snappy-compressed (block format) protobuf `WriteRequest`
(apps/ingest/prompb/remote.proto). Its series go through the same rules as a
scrape of dcgm-exporter (apps/ingest/exposition.py):

* kept: series named `DCGM_*` that carry a GPU uuid label (`UUID`, or `uuid`);
  a MIG instance (`GPU_I_ID`) becomes its own GPU record; `pod`, `namespace`
  and `container` become the GPU's workload periods;
* ignored, and still acknowledged: every other series (`up`, `go_*`,
  `scrape_*`, NVSwitch and CPU fields without a GPU uuid), so that a
  Prometheus forwarding everything it scrapes keeps working; and staleness
  markers (the NaN Prometheus writes when a series disappears);
* rejected one by one, counted in the job (`rejected`, with the first
  INGEST_MAX_ERRORS reasons), the request still answered 204: a DCGM sample whose
  timestamp is negative, past store.keys.MAX_TS or more than INGEST_MAX_FUTURE
  ahead of the clock, whose name is not a Prometheus metric name or is longer
  than MAX_METRIC_NAME, or that brings a GPU past INGEST_MAX_METRICS_PER_GPU
  distinct metrics; the other samples of the request are stored;
* refused (400, which Prometheus does not retry): a body that is not snappy, not
  a WriteRequest, that decompresses past REMOTE_WRITE_MAX_BYTES, or that holds
  more than REMOTE_WRITE_MAX_SAMPLES samples.

Samples are sent through a job series per cluster (one job document per minute
of writes, not per request). A retried request stores nothing twice: blocks are
keyed by their content, and reads keep one value per (time, metric).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cramjam
from django.conf import settings
from google.protobuf.message import DecodeError

from apps.ingest.exposition import Limits, Sample, from_samples
from apps.ingest.jobs import JobSeries
from apps.ingest.prompb import remote_pb2
from apps.ingest.quota import charge, refund
from store import default_keys
from store.keys import MAX_TS, check_segment

JOB_SPAN_S = 60.0
_series: dict[tuple[str, str], JobSeries] = {}
_lock = threading.Lock()


class RemoteWriteError(ValueError):
    """The body is not a remote write request we can read (answered 400)."""


@dataclass(frozen=True)
class Received:
    samples: int  # DCGM samples sent to the pipeline
    ignored: int  # samples of other series, and staleness markers
    rejected: int  # DCGM samples refused (non-finite values, bad labels)


def _declared_length(body: bytes) -> int:
    """The uncompressed length a snappy block declares (its varint header)."""
    value, shift = 0, 0
    for i, byte in enumerate(body[:10]):
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value
        shift += 7
        if i == 9:
            break
    raise RemoteWriteError("the body is not snappy-compressed (bad length header)")


def decode(body: bytes, max_bytes: int) -> remote_pb2.WriteRequest:
    """The WriteRequest in `body`; RemoteWriteError naming what is wrong with it."""
    if not body:
        raise RemoteWriteError("empty body: expected a snappy-compressed WriteRequest")
    declared = _declared_length(body)
    if declared > max_bytes:
        raise RemoteWriteError(
            f"the request decompresses to {declared} bytes, over the limit of {max_bytes} "
            "(REMOTE_WRITE_MAX_BYTES)"
        )
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except cramjam.DecompressionError as exc:
        raise RemoteWriteError(f"the body is not snappy-compressed: {exc}") from None
    request = remote_pb2.WriteRequest()
    try:
        request.ParseFromString(raw)
    except DecodeError as exc:
        raise RemoteWriteError(f"the body is not a remote write WriteRequest: {exc}") from None
    return request


def check_size(request: remote_pb2.WriteRequest, max_samples: int) -> None:
    """RemoteWriteError past `max_samples` samples, counted in the parsed message
    (one length per series) before a Python object is built for any of them."""
    total = 0
    for series in request.timeseries:
        total += len(series.samples)
        if total > max_samples:
            raise RemoteWriteError(
                f"the request holds more than {max_samples} samples "
                "(REMOTE_WRITE_MAX_SAMPLES); send smaller batches (Prometheus' "
                "queue_config.max_samples_per_send)"
            )


def _samples(request: remote_pb2.WriteRequest, skipped: list[int]) -> Iterator[Sample]:
    for series in request.timeseries:
        labels = {label.name: label.value for label in series.labels}
        name = labels.pop("__name__", "")
        if not name.startswith("DCGM_"):
            skipped[0] += len(series.samples)
            continue
        for point in series.samples:
            if math.isnan(point.value):  # a staleness marker, or a NaN reading
                skipped[0] += 1
                continue
            yield Sample(name, labels, point.value, point.timestamp)


def series_for(cluster: str) -> JobSeries:
    key = (default_keys().root, cluster)
    with _lock:
        found = _series.get(key)
        if found is None:
            found = _series[key] = JobSeries(
                source="remote_write", cluster=cluster, fmt="remote_write", span=JOB_SPAN_S
            )
        return found


def receive(body: bytes, cluster: str | None, now_ms: int, owner: str | None = None) -> Received:
    """Decode `body` and send its DCGM samples down the chunk pipeline, charged to
    `owner`'s daily quota first (apps/ingest/quota.py).

    Raises RemoteWriteError (bad body), InvalidSegment (bad cluster name), QuotaExceeded
    (429: nothing sent), and whatever the pipeline raises when the broker or etcd is down
    (answered 503, so Prometheus retries).
    """
    cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
    request = decode(body, settings.REMOTE_WRITE_MAX_BYTES)
    check_size(request, settings.REMOTE_WRITE_MAX_SAMPLES)
    skipped = [0]
    limits = Limits(
        latest_ms=min(MAX_TS, now_ms + int(settings.INGEST_MAX_FUTURE * 1000)),
        max_metrics_per_gpu=settings.INGEST_MAX_METRICS_PER_GPU,
    )
    parsed = from_samples(
        _samples(request, skipped),
        cluster=cluster,
        scraped_at=now_ms,
        max_errors=settings.INGEST_MAX_ERRORS,
        limits=limits,
    )
    given = charge(owner, parsed.samples)
    jobs = series_for(cluster)
    try:
        jobs.tick()
        if parsed.rows or parsed.rejected:
            jobs.send(
                parsed.rows,
                parsed.facts_of,
                rejected=parsed.rejected,
                errors=parsed.errors,
                accepted=parsed.samples,
                workload=parsed.workload_of,
            )
    except Exception:
        refund(given)  # answered 503: Prometheus sends them again
        raise
    return Received(parsed.samples, skipped[0] + parsed.ignored, parsed.rejected)
