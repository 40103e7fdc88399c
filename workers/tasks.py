"""Celery tasks: thin; decode, call the store, announce, return."""

from __future__ import annotations

import logging
import time

# numpy's unique() imports numpy.ma on its first call: imported here, in the worker's main
# process before it forks, it is not imported again by every child (~0.1 s of CPU in each
# fresh worker process, measured: 5 % of a 300k-row upload's)
import numpy.ma  # noqa: F401
from celery import shared_task

from observability.logs import job_context
from observability.metrics import CHUNK_SECONDS, CHUNKS, SAMPLES_STORED
from store import shards, window_ms
from store.errors import Conflict, StoreUnavailable
from store.events import chunk_stored
from store.jobs import mark_chunk_failed
from store.keys import Keys
from store.write import ChunkResult, write_chunk
from workers import payload
from workers.payload import PayloadError

log = logging.getLogger(__name__)


@shared_task(
    name="workers.persist_chunk",
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(StoreUnavailable, Conflict),
    retry_backoff=1,
    retry_backoff_max=30,
    retry_jitter=True,
    max_retries=None,
    ignore_result=True,
)
def persist_chunk(chunk: dict) -> dict:
    """Write one chunk to etcd, then announce it (store.events.chunk_stored).

    Idempotent, so redelivery after a crash is safe. Publishing happens only
    after the chunk's transactions committed, and only the first time.
    """
    with job_context(str(chunk.get("job", ""))):
        return _persist(chunk)


def _persist(chunk: dict) -> dict:
    started = time.perf_counter()
    try:
        decoded = payload.decode(chunk)
        # a chunk holds GPUs of its job's cluster: it goes to that cluster's shard
        cluster = str(decoded.batches[0].facts.get("cluster", "")) if decoded.batches else ""
        with shards.in_cluster(cluster):
            result = write_chunk(
                Keys(decoded.root),
                decoded.job,
                decoded.seq,
                decoded.batches,
                window_ms(),
                upload=decoded.upload,
            )
    except (StoreUnavailable, Conflict):
        CHUNKS.labels("retried").inc()
        raise  # autoretry: the chunk is written once etcd answers again
    except (PayloadError, ValueError) as exc:
        # Nothing a retry can fix (a corrupt payload, an invalid key segment, a GPU's
        # workload periods past their bound, a request etcd refused): record it on
        # the job so it ends "failed" instead of waiting for this chunk forever.
        _record_failure(chunk, exc)
        return {"failed": str(exc)}
    if result.refused:  # recorded on the job with the chunk (store.write.write_chunk)
        log.error("chunk %s: GPUs refused, the others stored: %s", decoded.seq, result.refused)
    outcome = "partial" if result.refused and not result.already_done else "stored"
    CHUNKS.labels("already_done" if result.already_done else outcome).inc()
    if not result.already_done:
        SAMPLES_STORED.inc(result.samples)
    elapsed = time.perf_counter() - started
    CHUNK_SECONDS.observe(elapsed)
    log.info(
        "chunk %s stored: %d samples, %d blocks, %.1f ms%s",
        decoded.seq,
        result.samples,
        result.blocks,
        elapsed * 1000,
        _redelivery(result),
    )
    # the admin's inventory mirror and the live feed listen (apps/read/apps.py); never raise
    chunk_stored.send(
        sender=persist_chunk,
        chunk_id=f"{decoded.job}:{decoded.seq}",
        batches=[b for b in decoded.batches if b.uuid not in result.refused],
        records=result.records,
        fresh=not result.already_done,
    )
    return {"samples": result.samples, "blocks": result.blocks, "already_done": result.already_done}


def _redelivery(result: ChunkResult) -> str:
    if not result.already_done:
        return ""
    if result.recorded_failed:
        return " (a redelivery: an earlier delivery recorded it failed)"
    return " (already stored: a redelivery)"


def _record_failure(chunk: dict, exc: Exception) -> None:
    log.error("chunk %s:%s cannot be stored: %s", chunk.get("job"), chunk.get("seq"), exc)
    CHUNKS.labels("failed").inc()
    try:
        mark_chunk_failed(Keys(str(chunk["root"])), str(chunk["job"]), int(chunk["seq"]), str(exc))
    except (KeyError, TypeError, ValueError) as inner:
        log.error("and the chunk is too broken to name its job: %s", inner)
