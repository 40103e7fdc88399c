"""Celery tasks: thin; decode, call the store, publish, return."""

from __future__ import annotations

from celery import shared_task

from apps.gpus import inventory, live
from apps.ingest import payload
from store import window_ms
from store.codec import dedupe
from store.errors import Conflict, StoreUnavailable
from store.keys import Keys
from store.telemetry import write_chunk


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
    """Write one chunk to etcd, then publish its samples to the live feed.

    Idempotent, so redelivery after a crash is safe. Publishing happens only
    after the chunk's transactions committed, and only the first time.
    """
    decoded = payload.decode(chunk)
    result = write_chunk(Keys(decoded.root), decoded.job, decoded.seq, decoded.batches, window_ms())
    if result.records:
        inventory.mirror(result.records)  # the admin's copy; never raises
    if not result.already_done:
        gpus = [live.gpu_payload(b.facts, dedupe(b.samples).rows()) for b in decoded.batches]
        live.publish_chunk(f"{decoded.job}:{decoded.seq}", gpus)
    return {"samples": result.samples, "blocks": result.blocks, "already_done": result.already_done}
