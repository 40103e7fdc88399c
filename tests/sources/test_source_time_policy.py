"""The stream command with source timestamps, the scrape command and the remote write receiver
check rows against the time policy as uploads do: a replayed old file never has rows accepted
and then silently deleted by the next compaction (real etcd, Redis, a Celery worker)."""

from __future__ import annotations

import io
from pathlib import Path

from django.core.management import call_command
from rest_framework.test import APIClient

from store import default_keys
from store.compaction import compact
from store.tiers import tiers
from tests.api.api_support import generated, telemetry, upload
from tests.helpers import wait_for, wait_job_done
from tests.sources.sources_support import stored_by_gpu

METRICS = 10  # the generator's long format: 10 DCGM fields per GPU and time


def gpu_file(start: str, samples: int) -> list[str]:
    data = generated(hosts=1, gpus_per_host=1, samples=samples, seed=7, start=start)
    return data.decode().splitlines()


def test_streaming_an_old_file_refuses_what_no_tier_keeps_and_says_what_each_keeps(
    pipeline, tmp_path: Path
):
    api = APIClient()
    today = upload(api, "\n".join(gpu_file("2025-07-18T20:00:00Z", 3)).encode() + b"\n", "t.csv")
    assert today.status_code == 202, today.content
    wait_job_done(api, today.json()["id"])
    older = gpu_file("2025-07-13T00:00:00Z", 3)  # 5.8 days before: raw drops it, 5m keeps it
    ancient = gpu_file("2023-07-01T00:00:00Z", 2)  # two years before: no tier keeps it
    path = tmp_path / "replay.csv"
    path.write_text("\n".join([*older, *ancient[1:]]) + "\n")

    out = io.StringIO()
    call_command(
        "stream",
        *("--file", str(path), "--batch-size", "25", "--interval", "0"),
        *("--timestamps", "source", "--no-loop", "--no-progress", "--job-span", "1h"),
        stdout=out,
    )
    text = out.getvalue()
    assert "20 row(s) refused: older than every storage tier keeps" in text, text
    job = wait_job_done(api, text.rsplit("last job ", 1)[1].split(",")[0].split()[0])
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (50, 30, 20)
    assert len(job["errors"]) == 20
    assert "older than every storage tier keeps" in job["errors"][0]["message"]
    assert "2023-07-01T00:00:00Z" in job["errors"][0]["message"]
    retention = job["retention"]
    assert retention["refused_as_too_old"] == 20
    [raw] = retention["outside"]
    assert raw["tier"] == "raw" and raw["rows"] == 3 * METRICS
    assert raw["kept_in"] == ["5m", "1h"]
    assert "kept only as 5m, 1h rollups" in raw["note"]

    [uuid] = stored_by_gpu(api)
    wait_for(lambda: len(stored_by_gpu(api)[uuid]) == 6 * METRICS, 60, "the kept rows stored")
    assert not [ts for ts, _ in stored_by_gpu(api)[uuid] if ts < 1_700_000_000_000]
    report = compact(default_keys(), tiers())
    assert not report.failures
    old_day = {"start_time": "2025-07-13T00:00:00Z", "end_time": "2025-07-13T00:05:00Z"}
    counts = telemetry(api, uuid, **old_day, step="5m", agg="count")["results"]
    assert len(counts) == METRICS and {r["value"] for r in counts} == {3.0}
