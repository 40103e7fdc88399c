"""Ingest jobs for the admin, read straight from etcd (`{root}/jobs/`); no ORM copy.

Job ids start with their creation time in zero-padded epoch milliseconds
(store.jobs.new_job_id), so sorting ids sorts jobs by age.
"""

from __future__ import annotations

import json
from typing import Any

from apps.ingest.service import public_state
from store import kv
from store.keys import Keys
from timeparse.timestamps import format_timestamp


def list_jobs(keys: Keys, limit: int = 50) -> list[dict[str, Any]]:
    """The `limit` newest jobs, newest first, each with `chunks_done` and a public `status`.

    One range read of every job document, then one count per job shown. Raises
    StoreUnavailable when etcd does not answer. Documents that are not valid JSON
    are skipped rather than hiding every other job.
    """
    items = sorted(kv.get_prefix(keys.jobs_prefix()), key=lambda item: item.key, reverse=True)
    jobs = []
    for item in items:
        if len(jobs) >= limit:
            break
        try:
            job = json.loads(item.value)
        except ValueError:
            continue
        if not isinstance(job, dict) or "id" not in job:
            continue
        job["chunks_done"] = kv.count_prefix(keys.chunks_prefix(str(job["id"])))
        job["chunks_failed"] = kv.count_prefix(keys.failures_prefix(str(job["id"])))
        job["status"] = public_state(job)
        created = job.get("created_at")
        job["created"] = format_timestamp(int(created)) if isinstance(created, int) else ""
        jobs.append(job)
    return jobs
