"""The periodic upkeep run by the beat task and `manage.py compact`."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from typing import Any

from django.conf import settings

from store import default_keys, kv, shards
from store.compaction import compact, expire_jobs
from store.errors import StoreError, StoreUnavailable
from store.tiers import tiers

log = logging.getLogger(__name__)


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
    per_shard: dict[str, dict[str, Any]] = {}
    for name in names:
        try:
            with shards.use(name):
                per_shard[name] = _upkeep_here(retention, defrag)
        except StoreUnavailable as exc:  # the next run catches up; the others go on now
            log.warning("upkeep of etcd shard %s skipped: %s", name, exc)
            per_shard[name] = {"error": str(exc)}
    skipped = all(r.get("skipped") for r in per_shard.values())
    return {"skipped": skipped, "shards": per_shard}


def _upkeep_here(retention: bool, defrag: bool | None) -> dict[str, Any]:
    keys = default_keys()
    now_ms = int(time.time() * 1000)
    report = compact(keys, tiers(), retention=retention, now_ms=now_ms)
    out: dict[str, Any] = asdict(report)
    if report.skipped:
        return out
    out["jobs_expired"] = expire_jobs(keys, int(settings.JOB_RETENTION * 1000), now_ms)
    marker = keys.defragmented_at()
    last = kv.get(marker)
    due = last is None or now_ms - int(last.value) > settings.ETCD_DEFRAG_INTERVAL * 1000
    out["defragmented"] = bool(defrag if defrag is not None else due)
    if out["defragmented"]:
        kv.defragment()
        kv.put(marker, str(now_ms).encode())
    summary = {"at": now_ms, "failures": len(report.failures), "conflicts": report.conflicts}
    kv.put(keys.compaction_report(), json.dumps(summary).encode())
    return out


def last_runs() -> dict[str, dict[str, Any]]:
    """{shard: {"at": epoch ms, "failures": n, "conflicts": n}} of each shard's last finished
    upkeep run; shards without one, or that do not answer, are left out (best effort)."""

    def read() -> dict[str, Any] | None:
        item = kv.get(default_keys().compaction_report())
        return None if item is None else json.loads(item.value)

    try:
        runs = shards.fan_out(read)
    except StoreError:
        return {}
    return {shard: run for shard, run in runs.items() if run is not None}


def upkeep_metric_lines() -> list[str]:
    """Each shard's last upkeep run as Prometheus gauges for /metrics (any process may have
    run it: the summary is read from etcd)."""
    runs = last_runs()
    lines = [
        "# HELP telemetry_upkeep_last_run_timestamp_seconds When the last upkeep run ended\n",
        "# TYPE telemetry_upkeep_last_run_timestamp_seconds gauge\n",
        *(
            f'telemetry_upkeep_last_run_timestamp_seconds{{shard="{shard}"}} {run["at"] / 1000}\n'
            for shard, run in sorted(runs.items())
        ),
        "# HELP telemetry_upkeep_last_run_failures GPU steps that failed in the last upkeep run\n",
        "# TYPE telemetry_upkeep_last_run_failures gauge\n",
        *(
            f'telemetry_upkeep_last_run_failures{{shard="{shard}"}} {run["failures"]}\n'
            for shard, run in sorted(runs.items())
        ),
    ]
    return lines
