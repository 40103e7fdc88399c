"""Downsampled reads of a bounded window (read along with the GPU in one transaction) give
the buckets the samples make, from raw blocks, from up-to-date rollups, and from rollups that
newer samples have made stale."""

from __future__ import annotations

import io
from collections import defaultdict

import pytest
from django.core.management import call_command

from tests.api.api_support import expected_samples, generated, telemetry, upload
from tests.helpers import wait_job_done
from timeparse.timestamps import format_timestamp, parse_timestamp

START = "2025-07-18T20:00:00Z"


def load(api, samples: int, seed: int = 41) -> dict:
    data = generated(hosts=1, gpus_per_host=1, samples=samples, seed=seed, start=START)
    response = upload(api, data, "bounded.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    return expected_samples(data)


def buckets(samples: dict, step_ms: int, first: int, last: int) -> list[dict]:
    """avg per (bucket, metric) for buckets starting in [first, last], time then name order."""
    groups: dict[tuple[int, str], list[float]] = defaultdict(list)
    for (ts, metric), value in samples.items():
        groups[((ts // step_ms) * step_ms, metric)].append(value)
    rows = [
        {"timestamp": format_timestamp(b), "metric_name": m, "value": sum(v) / len(v)}
        for (b, m), v in groups.items()
        if first <= b <= last
    ]
    return sorted(rows, key=lambda r: (r["timestamp"], r["metric_name"]))


def close(got: list[dict], want: list[dict]) -> bool:
    return [(r["timestamp"], r["metric_name"]) for r in got] == [
        (r["timestamp"], r["metric_name"]) for r in want
    ] and all(abs(a["value"] - b["value"]) < 1e-9 for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("step", ["60s", "5m", "7m"])
def test_bounded_buckets_are_the_samples_buckets_before_and_after_rollups(pipeline, api, step):
    samples = load(api, samples=180)  # 30 minutes at 10 s
    uuid = next(iter(samples))
    step_ms = {"60s": 60_000, "5m": 300_000, "7m": 420_000}[step]
    window = {"start_time": "2025-07-18T20:05:00Z", "end_time": "2025-07-18T20:24:59Z"}
    first = (parse_timestamp(window["start_time"]) // step_ms) * step_ms
    last = parse_timestamp(window["end_time"])
    want = buckets(samples[uuid], step_ms, first, last)
    raw = telemetry(api, uuid, step=step, limit=10_000, **window)["results"]
    assert close(raw, want)
    call_command("compact", stdout=io.StringIO())  # 1m and 5m rollups now up to date
    assert close(telemetry(api, uuid, step=step, limit=10_000, **window)["results"], want)


def test_newer_samples_after_a_compaction_are_counted(pipeline, api):
    first_half = load(api, samples=90)
    uuid = next(iter(first_half))
    call_command("compact", stdout=io.StringIO())
    both = load(api, samples=180)  # same GPU and stream, 15 more minutes: rollups now stale
    window = {"start_time": "2025-07-18T20:00:00Z", "end_time": "2025-07-18T20:29:59Z"}
    want = buckets(both[uuid], 300_000, parse_timestamp(window["start_time"]), 10**13)
    got = telemetry(api, uuid, step="5m", limit=10_000, **window)["results"]
    assert close(got, want) and len({r["timestamp"] for r in got}) == 6
