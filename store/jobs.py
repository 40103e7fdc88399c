"""Ingest jobs: the job document (one writer: the ingesting process) and chunk progress.

This is the job's one read model: `load_job` (the API, the ingest command) and `list_jobs`
(the admin) answer the same shape, the saved document plus the workers' progress
(`chunks_done`, `chunks_failed`) and the public `state` (running, done or failed).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from store import kv
from store.errors import NotFound
from store.keys import Keys
from timeparse.timestamps import format_timestamp


def new_job_id() -> str:
    """Time-sortable and unguessable: 13-digit epoch ms, a dash, 8 hex digits."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def save_job(keys: Keys, job: dict[str, Any]) -> None:
    kv.put(keys.job(job["id"]), json.dumps(job, separators=(",", ":")).encode())


def load_job(keys: Keys, job_id: str) -> dict[str, Any]:
    """The job as answers show it; with `chunk_errors` (the first 20) when chunks failed.

    Raises NotFound, StoreUnavailable.
    """
    item = kv.get(keys.job(job_id))
    if item is None:
        raise NotFound(f"no ingest job {job_id!r}")
    job = _with_progress(keys, json.loads(item.value))
    if job["chunks_failed"]:
        failures = kv.get_prefix(keys.failures_prefix(job_id))
        job["chunk_errors"] = [json.loads(f.value) for f in failures[:20]]
    return job


def list_jobs(keys: Keys, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """`limit` jobs after the `offset` newest, newest first, shaped as `load_job` shapes one.

    Job ids start with their creation time in zero-padded epoch milliseconds
    (new_job_id), so ids sorted backwards are jobs newest first. One keys-only range
    read, one read of the page's documents, then the counts of each job shown.
    Raises StoreUnavailable. A document that is not valid JSON, or deleted between
    the reads (job retention), is left out rather than hiding every other job.
    """
    prefix = keys.jobs_prefix()
    names = sorted(
        (info.key for info in kv.keys_in_range(prefix, kv.prefix_end(prefix))), reverse=True
    )[offset:]
    jobs: list[dict[str, Any]] = []
    while names and len(jobs) < limit:  # a skipped document makes room for the next one
        batch, names = names[: limit - len(jobs)], names[limit - len(jobs) :]
        found = kv.get_many(batch)
        for name in batch:
            try:
                job = json.loads(found[name].value)
            except (KeyError, ValueError):
                continue
            if isinstance(job, dict) and "id" in job:
                jobs.append(_with_progress(keys, job))
    return jobs


def count_jobs(keys: Keys) -> int:
    """How many job documents are kept (JOB_RETENTION)."""
    return kv.count_prefix(keys.jobs_prefix())


def _with_progress(keys: Keys, job: dict[str, Any]) -> dict[str, Any]:
    job_id = str(job["id"])
    job["chunks_done"] = kv.count_prefix(keys.chunks_prefix(job_id))
    job["chunks_failed"] = kv.count_prefix(keys.failures_prefix(job_id))
    job["state"] = public_state(job)
    # Saved in epoch ms (job retention compares it); shown in RFC 3339 like every API time.
    created = job.get("created_at")
    if isinstance(created, int):
        job["created_at"] = format_timestamp(created)
    return job


def public_state(job: dict[str, Any]) -> str:
    """running, done or failed, from the saved state and the workers' markers.

    >>> public_state({"state": "parsed", "chunks_expected": 2, "chunks_done": 2})
    'done'
    >>> public_state({"state": "parsed", "chunks_expected": 2, "chunks_done": 1})
    'running'
    >>> public_state({"state": "parsed", "chunks_expected": 1, "chunks_failed": 1})
    'failed'
    """
    finished = job.get("chunks_done", 0) + job.get("chunks_failed", 0)
    if job["state"] == "failed":
        return "failed"
    if job["state"] == "parsing" or finished < job.get("chunks_expected", 0):
        return "running"  # still reading the file, or chunks still queued
    return "failed" if job.get("chunks_failed") else "done"


def mark_chunk_failed(keys: Keys, job_id: str, seq: int, error: str) -> None:
    """Record that a chunk can never be stored (a bug or a corrupt payload, not an outage)."""
    kv.put(keys.failure(job_id, seq), json.dumps({"seq": seq, "error": error[:500]}).encode())
