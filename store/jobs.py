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
    """The job document plus `chunks_done` (markers written by workers); raises NotFound."""
    item = kv.get(keys.job(job_id))
    if item is None:
        raise NotFound(f"no ingest job {job_id!r}")
    job = json.loads(item.value)
    job["chunks_done"] = kv.count_prefix(keys.chunks_prefix(job_id))
    return job
