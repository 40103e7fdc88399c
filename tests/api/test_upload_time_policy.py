"""Old data is never accepted and then silently dropped: the job says what each tier keeps."""

from __future__ import annotations

from store import default_keys
from store.compaction import compact
from store.tiers import tiers
from tests.api.api_support import generated, telemetry, upload
from tests.helpers import wait_job_done

METRICS = 10  # the generator's long format: 10 DCGM fields per GPU and time


def ingest(api, data: bytes, name: str) -> dict:
    response = upload(api, data, name)
    assert response.status_code == 202, response.content
    return wait_job_done(api, response.json()["id"])


def gpu_file(start: str, samples: int) -> bytes:
    return generated(hosts=1, gpus_per_host=1, samples=samples, seed=7, start=start)


def test_an_old_upload_says_what_it_keeps_and_refuses_what_nothing_keeps(pipeline, api):
    assert [(t.name, t.retention_ms // 86_400_000) for t in tiers()] == [
        ("raw", 2),
        ("5m", 7),
        ("1h", 30),
    ]
    ingest(api, gpu_file("2025-07-18T20:00:00Z", 3), "today.csv")
    older = gpu_file("2025-07-13T00:00:00Z", 3).decode().splitlines()  # 5.8 days before
    ancient = gpu_file("2023-07-01T00:00:00Z", 2).decode().splitlines()  # two years before
    data = ("\n".join([*older, *ancient[1:]]) + "\n").encode()
    job = ingest(api, data, "old.csv")

    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (50, 30, 20)
    first_ancient_line = len(older) + 1
    assert [e["line"] for e in job["errors"]] == list(
        range(first_ancient_line, first_ancient_line + 20)
    )
    assert "older than every storage tier keeps" in job["errors"][0]["message"]
    assert "2023-07-01T00:00:00Z" in job["errors"][0]["message"]
    retention = job["retention"]
    assert retention["refused_as_too_old"] == 20
    [raw] = retention["outside"]
    assert raw["tier"] == "raw" and raw["rows"] == 3 * METRICS
    assert (raw["first"], raw["last"]) == ("2025-07-13T00:00:00Z", "2025-07-13T00:00:20Z")
    assert raw["kept_in"] == ["5m", "1h"] and raw["lines"][0] == 2
    assert "kept only as 5m, 1h rollups" in raw["note"]

    # and what was accepted is kept: after compaction, as 5-minute rollups
    report = compact(default_keys(), tiers())
    assert report.deleted_by_retention >= 1 and not report.failures
    uuid = api.get("/api/v1/gpus").json()["results"][0]["uuid"]
    old_day = {"start_time": "2025-07-13T00:00:00Z", "end_time": "2025-07-13T00:05:00Z"}
    assert telemetry(api, uuid, **old_day)["results"] == []  # raw is gone, as announced
    counts = telemetry(api, uuid, **old_day, step="5m", agg="count")["results"]
    assert len(counts) == METRICS and {r["value"] for r in counts} == {3.0}
    today = {"start_time": "2025-07-18T20:00:00Z", "end_time": "2025-07-18T20:01:00Z"}
    assert len(telemetry(api, uuid, **today)["results"]) == 3 * METRICS
