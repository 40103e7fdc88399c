"""A real Prometheus scrapes a fake dcgm-exporter and remote-writes to our gateway.

Every sample Prometheus scraped arrives once, with its labels (workload and MIG
included), and the same answers come from its API and ours; the REST API holds
the same samples.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tests.prometheus.exporter_support import GPU0, GPU1, MIG, FakeExporter
from tests.prometheus.oracle_support import differences
from tools import prometheus


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _raw(base: str, at: float, prefix: str) -> dict[tuple, list]:
    """{labels without cluster: [[t, v], ...]} of every DCGM series with a GPU uuid."""
    params = {"query": '{__name__=~"DCGM_.+", UUID!=""}[1h]', "time": at}
    body = prometheus.api_get(base, f"{prefix}/api/v1/query", params)
    assert body["status"] == "success", body
    return {
        tuple(sorted((k, v) for k, v in r["metric"].items() if k != "cluster")): r["values"]
        for r in body["data"]["result"]
    }


@pytest.fixture
def scraped(gateway: str, tmp_path: Path):
    if not prometheus.available():
        pytest.skip(f"prometheus not installed ({prometheus.APT_HINT})")
    exporter = FakeExporter()
    scrape = {
        "job_name": "dcgm",
        "scrape_interval": "1s",
        "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
    }
    write = {
        "url": f"{gateway}/prometheus/api/v1/write",
        "queue_config": {"batch_send_deadline": "1s", "min_backoff": "100ms", "max_backoff": "1s"},
    }
    with prometheus.start_prometheus(
        tmp_path / "prom", scrape_configs=[scrape], remote_write=[write]
    ) as svc:
        try:
            wait_for(lambda: exporter.scrapes >= 6, 60, "six scrapes")
            stopped = time.time()
        finally:
            exporter.stop()
        yield svc.url, gateway, stopped


def test_every_scraped_sample_arrives_once_with_its_labels(scraped) -> None:
    prom_url, ours_url, at = scraped
    theirs = _raw(prom_url, at, "")
    assert len(theirs) == 9  # 3 fields x (2 GPUs + 1 MIG instance); the rest is ignored
    assert all(len(points) >= 6 for points in theirs.values())
    mine = wait_for(
        lambda: (m := _raw(ours_url, at, "/prometheus")) == theirs and m,
        90,
        "our store holding what Prometheus scraped",
    )
    pods = {dict(k).get("pod") for k in mine}
    assert pods == {"job-1", None}
    assert {dict(k).get("GPU_I_PROFILE") for k in mine} == {"1g.10gb", None}


def test_scraped_samples_are_in_the_rest_api_and_aggregate_alike(scraped) -> None:
    prom_url, ours_url, at = scraped
    theirs = _raw(prom_url, at, "")
    wait_for(lambda: _raw(ours_url, at, "/prometheus") == theirs, 90, "remote write caught up")
    gpus = {g["uuid"]: g for g in _get(f"{ours_url}/api/v1/gpus")["results"]}
    assert set(gpus) == {GPU0, GPU1, MIG}
    temps = [
        v
        for k, v in theirs.items()
        if ("__name__", "DCGM_FI_DEV_GPU_TEMP") in k and ("UUID", GPU0) in k
    ]
    rest = _get(f"{ours_url}/api/v1/gpus/{GPU0}/telemetry?metric=DCGM_FI_DEV_GPU_TEMP&limit=1000")
    assert [float(r["value"]) for r in rest["results"]] == [float(v) for _, v in temps[0]]
    query = "sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)"
    # before the exporter stopped: after it, Prometheus marks the series stale (a NaN it
    # also remote-writes, which we skip), while our lookback still finds the last sample
    params = {"query": query, "start": at - 20, "end": at - 1.5, "step": 1}
    mine = prometheus.api_get(ours_url, "/prometheus/api/v1/query_range", params)
    real = prometheus.api_get(prom_url, "/api/v1/query_range", params)
    assert mine["data"]["result"]
    assert differences(mine, real) == []  # sums may differ in the last bit (order of terms)
