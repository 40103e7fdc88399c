"""The periodic upkeep run by the beat task and `manage.py compact`."""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any

from django.conf import settings

from store import default_keys, kv
from store.compaction import compact, expire_jobs
from store.errors import StoreError
from store.tiers import tiers


def run_upkeep(retention: bool = True, defrag: bool | None = None) -> dict[str, Any]:
    """Compact, roll up, apply retention, expire old jobs, and defragment when due.

    `defrag=None` defragments when ETCD_DEFRAG_INTERVAL has passed since the last one.
    """
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


def last_run() -> dict[str, Any] | None:
    """{"at": epoch ms, "failures": n, "conflicts": n} of the last finished upkeep run.

    None when there was none yet or etcd cannot be read (for /metrics: best effort).
    """
    try:
        item = kv.get(default_keys().compaction_report())
    except StoreError:
        return None
    return None if item is None else json.loads(item.value)


def upkeep_metric_lines() -> list[str]:
    """The last upkeep run as Prometheus gauges for /metrics (any process may have run it)."""
    run = last_run()
    at = run["at"] / 1000 if run else "NaN"
    failures = run["failures"] if run else "NaN"
    return [
        "# HELP telemetry_upkeep_last_run_timestamp_seconds When the last upkeep run ended\n",
        "# TYPE telemetry_upkeep_last_run_timestamp_seconds gauge\n",
        f"telemetry_upkeep_last_run_timestamp_seconds {at}\n",
        "# HELP telemetry_upkeep_last_run_failures GPU steps that failed in the last upkeep run\n",
        "# TYPE telemetry_upkeep_last_run_failures gauge\n",
        f"telemetry_upkeep_last_run_failures {failures}\n",
    ]
