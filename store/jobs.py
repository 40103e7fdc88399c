"""Ingest jobs: the job document (one writer: the ingesting process) and chunk progress."""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from store import kv, shards
from store.errors import NotFound, StoreUnavailable
from store.keys import Keys


def new_job_id() -> str:
    """Time-sortable and unguessable: 13-digit epoch ms, a dash, 8 hex digits."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def save_job(keys: Keys, job: dict[str, Any]) -> None:
    """Write the job document in the shard of its cluster (where its chunks go)."""
    with shards.in_cluster(str(job.get("cluster", ""))):
        kv.put(keys.job(job["id"]), json.dumps(job, separators=(",", ":")).encode())


def job_shard(keys: Keys, job_id: str) -> str:
    """The shard holding a job; raises NotFound, or StoreUnavailable when it may be in one
    that does not answer."""
    with shards.collecting() as partial:
        found = [
            s
            for s, yes in shards.fan_out(lambda: kv.get(keys.job(job_id)) is not None).items()
            if yes
        ]
    if found:
        return found[0]
    if partial.missing:
        names = ", ".join(sorted(partial.missing))
        raise StoreUnavailable(f"etcd shard {names} is unavailable: job {job_id!r} may be there")
    raise NotFound(f"no ingest job {job_id!r}")


def load_job(keys: Keys, job_id: str) -> dict[str, Any]:
    """The job document plus `chunks_done` and `chunks_failed` (written by workers).

    Raises NotFound.
    """
    with shards.use(job_shard(keys, job_id)):
        return _load_job(keys, job_id)


def _load_job(keys: Keys, job_id: str) -> dict[str, Any]:
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
    try:
        shard = job_shard(keys, job_id)
    except NotFound:
        shard = shards.current()
    with shards.use(shard):
        kv.put(keys.failure(job_id, seq), json.dumps({"seq": seq, "error": error[:500]}).encode())
