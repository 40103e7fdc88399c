"""Celery beat task for storage upkeep (thin: the logic is store.upkeep)."""

from __future__ import annotations

from celery import shared_task

from store.errors import StoreUnavailable
from store.upkeep import run_upkeep


@shared_task(
    name="workers.compact",
    autoretry_for=(StoreUnavailable,),
    retry_backoff=5,
    max_retries=5,
    ignore_result=True,
)
def compact_storage() -> dict:
    """Merge small blocks, build rollups, apply retention; skips when another run holds the lock."""
    return run_upkeep()
