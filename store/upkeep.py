"""The periodic upkeep run by the beat task and `manage.py compact`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from django.conf import settings

from store import default_keys, kv, shards
from store.compaction import compact, expire_jobs
from store.errors import StoreUnavailable
from store.tiers import tiers


def run_upkeep(retention: bool = True, defrag: bool | None = None) -> dict[str, Any]:
    """Compact, roll up, apply retention, expire old jobs, and defragment when due.

    In every etcd shard, one after the other; with shards, the report has one entry
    per shard under "shards", and a shard that does not answer is reported there
    (its error) without stopping the others. `defrag=None` defragments when
    ETCD_DEFRAG_INTERVAL has passed since the last one.
    """
    names = shards.names()
    if len(names) == 1:
        return _upkeep_here(retention, defrag)
    out: dict[str, Any] = {"shards": {}}
    for name in names:
        try:
            with shards.use(name):
                out["shards"][name] = _upkeep_here(retention, defrag)
        except StoreUnavailable as exc:
            out["shards"][name] = {"error": str(exc)}
    return out


def _upkeep_here(retention: bool, defrag: bool | None) -> dict[str, Any]:
    keys = default_keys()
    report = compact(keys, tiers(), retention=retention)
    out: dict[str, Any] = asdict(report)
    if report.skipped:
        return out
    now_ms = int(time.time() * 1000)
    out["jobs_expired"] = expire_jobs(keys, int(settings.JOB_RETENTION * 1000), now_ms)
    marker = keys.defragmented_at()
    last = kv.get(marker)
    due = last is None or now_ms - int(last.value) > settings.ETCD_DEFRAG_INTERVAL * 1000
    out["defragmented"] = bool(defrag if defrag is not None else due)
    if out["defragmented"]:
        kv.defragment()
        kv.put(marker, str(now_ms).encode())
    return out
