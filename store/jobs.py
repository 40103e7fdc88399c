"""Ingest jobs: the job document (one writer: the ingesting process) and chunk progress."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from store import kv
from store.errors import NotFound
from store.keys import Keys


def new_job_id() -> str:
    """Time-sortable and unguessable: 13-digit epoch ms, a dash, 8 hex digits."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def save_job(keys: Keys, job: dict[str, Any]) -> None:
    kv.put(keys.job(job["id"]), json.dumps(job, separators=(",", ":")).encode())


def load_job(keys: Keys, job_id: str) -> dict[str, Any]:
    """The job document plus `chunks_done` and `chunks_failed` (written by workers).

    Raises NotFound.
    """
    item = kv.get(keys.job(job_id))
    if item is None:
        raise NotFound(f"no ingest job {job_id!r}")
    job = json.loads(item.value)
    job["chunks_done"] = kv.count_prefix(keys.chunks_prefix(job_id))
    job["chunks_failed"] = kv.count_prefix(keys.failures_prefix(job_id))
    if job["chunks_failed"]:
        failures = kv.get_prefix(keys.failures_prefix(job_id))
        job["chunk_errors"] = [json.loads(f.value) for f in failures[:20]]
    return job


def mark_chunk_failed(keys: Keys, job_id: str, seq: int, error: str) -> None:
    """Record that a chunk can never be stored (a bug or a corrupt payload, not an outage)."""
    kv.put(keys.failure(job_id, seq), json.dumps({"seq": seq, "error": error[:500]}).encode())


def list_jobs(keys: Keys, limit: int, offset: int = 0) -> tuple[int, list[dict[str, Any]]]:
    """(number of jobs, the page of `limit` jobs after `offset`), newest first.

    Job ids start with their creation time (new_job_id), so ids sorted backwards are
    jobs newest first. One keys-only range read, one read of the page's documents,
    then each job's chunk counts (load_job). A job deleted between the reads (job
    retention) is left out of the page. Raises StoreUnavailable.
    """
    prefix = keys.jobs_prefix()
    ids = sorted(
        (info.key[len(prefix) :] for info in kv.keys_in_range(prefix, kv.prefix_end(prefix))),
        reverse=True,
    )
    page = []
    for job_id in ids[offset : offset + limit]:
        try:
            page.append(load_job(keys, job_id))
        except (NotFound, ValueError):
            continue  # gone meanwhile, or not a job document: never hide the others
    return len(ids), page
