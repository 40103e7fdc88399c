"""Downsampling (step + agg), CSV exports and the latest endpoint, end to end."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import pytest
from django.core.management import call_command

from tests.api.api_support import expected_samples, generated, telemetry, upload
from tests.helpers import wait_job_done
from timeparse.timestamps import format_timestamp

STEP_MS = 60_000


@pytest.fixture
def loaded(pipeline, api):
    """Two GPUs x 10 metrics x 30 samples at 10 s: 5 one-minute buckets per metric."""
    data = generated(hosts=1, gpus_per_host=2, samples=30, seed=31, cluster_prefix="ds")
    response = upload(api, data, "ds.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    return expected_samples(data)


def expected_buckets(
    samples: dict[tuple[int, str], float], agg: str
) -> dict[tuple[str, str], float]:
    groups: dict[tuple[int, str], list[tuple[int, float]]] = defaultdict(list)
    for (ts, metric), value in samples.items():
        groups[((ts // STEP_MS) * STEP_MS, metric)].append((ts, value))
    out = {}
    for (bucket, metric), items in groups.items():
        values = [v for _, v in sorted(items)]
        out[(format_timestamp(bucket), metric)] = {
            "avg": sum(values) / len(values),
            "min": min(values),
            "max": max(values),
            "last": values[-1],
            "sum": sum(values),
            "count": float(len(values)),
        }[agg]
    return out


@pytest.mark.parametrize("agg", ["avg", "min", "max", "last", "count"])
def test_step_buckets_hold_the_right_aggregate(loaded, api, agg):
    uuid = sorted(loaded)[0]
    body = telemetry(api, uuid, step="60s", agg=agg, limit=10_000)
    got = {(r["timestamp"], r["metric_name"]): r["value"] for r in body["results"]}
    want = expected_buckets(loaded[uuid], agg)
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def test_step_answers_are_the_same_after_compaction_builds_rollups(loaded, api):
    uuid = sorted(loaded)[1]
    before = telemetry(api, uuid, step="5m", agg="max", limit=10_000)["results"]
    call_command("compact", stdout=io.StringIO())
    after = telemetry(api, uuid, step="5m", agg="max", limit=10_000)["results"]
    assert after == before and before


def test_step_paging_walks_every_bucket_once(loaded, api):
    uuid = sorted(loaded)[0]
    whole = telemetry(api, uuid, step="60s", limit=10_000)["results"]
    pages, url = [], f"/api/v1/gpus/{uuid}/telemetry?step=60s&limit=7"
    while url:
        body = api.get(url).json()
        pages += body["results"]
        url = body["next"]
    assert pages == whole and len(whole) == 50


def test_bad_step_and_too_many_buckets_are_refused(loaded, api, settings):
    uuid = sorted(loaded)[0]
    assert "step" in api.get(f"/api/v1/gpus/{uuid}/telemetry", {"step": "soon"}).json()
    assert "step" in api.get(f"/api/v1/gpus/{uuid}/telemetry", {"step": "10ms"}).json()
    settings.TELEMETRY_MAX_BUCKETS = 3
    response = api.get(f"/api/v1/gpus/{uuid}/telemetry", {"step": "60s"})
    assert response.status_code == 400 and "larger step" in response.json()["step"][0]


def test_csv_export_holds_the_whole_window(loaded, api):
    uuid = sorted(loaded)[0]
    response = api.get(f"/api/v1/gpus/{uuid}/telemetry", {"format": "csv", "limit": 5})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    got = {(r["timestamp"], r["metric_name"]): float(r["value"]) for r in rows}
    want = {(format_timestamp(ts), m): v for (ts, m), v in loaded[uuid].items()}
    assert got == want  # the limit does not cut an export


def test_wide_export_has_a_column_per_metric(loaded, api):
    uuid = sorted(loaded)[0]
    response = api.get(
        f"/api/v1/gpus/{uuid}/telemetry",
        {"format": "wide", "metric": "DCGM_FI_DEV_GPU_TEMP,DCGM_FI_DEV_GPU_UTIL"},
    )
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["timestamp", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_UTIL"]
    assert len(rows) == 31
    first_ts = min(ts for ts, _ in loaded[uuid])
    assert rows[1] == [
        format_timestamp(first_ts),
        repr(loaded[uuid][(first_ts, "DCGM_FI_DEV_GPU_TEMP")]),
        repr(loaded[uuid][(first_ts, "DCGM_FI_DEV_GPU_UTIL")]),
    ]


def test_latest_endpoint_and_empty_window(loaded, api):
    uuid = sorted(loaded)[0]
    body = api.get(f"/api/v1/gpus/{uuid}/latest").json()
    newest = max(ts for ts, _ in loaded[uuid])
    assert body["uuid"] == uuid and body["last_seen"] == format_timestamp(newest)
    assert len(body["latest"]) == 10
    assert api.get("/api/v1/gpus/GPU-nope/latest").status_code == 404
    empty = telemetry(api, uuid, start_time="2030-01-01T00:00:00Z", end_time="2030-01-02T00:00:00Z")
    assert empty["results"] == [] and empty["next"] is None
    empty_step = telemetry(api, uuid, start_time="2030-01-01T00:00:00Z", step="5m")
    assert empty_step["results"] == []
