"""/metrics after an ingest shows the counts of that ingest."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from tests.api.api_support import generated
from tests.conftest import start_gateway, start_worker
from tests.helpers import wait_for, wait_job_done


def sample_value(text: str, name: str, **labels: str) -> float:
    """The value of one sample of the exposition (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_the_rows_of_an_ingest_in_this_process(pipeline):
    client = APIClient()
    before = client.get("/metrics").content.decode()
    data = generated(hosts=1, gpus_per_host=2, samples=3, seed=44)
    bad = data + b'"2025-07-18T20:42:34Z","m","0","d","GPU-x","M","h","","","","oops",""\n'
    response = client.post("/api/v1/csv/upload", bad, content_type="text/csv")
    assert response.status_code == 202
    wait_job_done(client, response.json()["id"])
    after = client.get("/metrics")
    assert after["Content-Type"].startswith("text/plain")
    text = after.content.decode()
    accepted = sample_value(text, "telemetry_rows_total", outcome="accepted")
    assert accepted - sample_value(before, "telemetry_rows_total", outcome="accepted") == 60
    assert (
        sample_value(text, "telemetry_rows_total", outcome="rejected")
        - sample_value(before, "telemetry_rows_total", outcome="rejected")
        == 1
    )
    uploads = sample_value(
        text,
        "telemetry_http_requests_total",
        method="POST",
        route="/api/v1/csv/upload",
        status="202",
    )
    assert uploads >= 1
    assert sample_value(text, "telemetry_etcd_request_seconds_count", op="put") >= 1
    assert re.search(r"^telemetry_queue_depth \d+", text, re.M)


def test_gateway_metrics_add_up_the_worker_processes(etcd, redis_server, tmp_path: Path):
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    broker = (
        redis_server.url.rsplit("/", 1)[0] + "/5"
    )  # its own queue: the session worker must not take the chunks
    env = dict(
        ETCD_PREFIX=f"/metrics-{uuid.uuid4().hex[:8]}", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)
    )
    worker = start_worker(tmp_path, etcd.url, broker, **env)
    gateway = start_gateway(tmp_path, etcd.url, broker, **env)
    port = gateway.port
    base = f"http://127.0.0.1:{port}"
    try:
        data = generated(hosts=2, gpus_per_host=2, samples=5, seed=45)
        job = requests.post(
            f"{base}/api/v1/csv/upload", data=data, headers={"Content-Type": "text/csv"}, timeout=60
        )
        assert job.status_code == 202, job.text

        def stored() -> str | None:
            text = requests.get(f"{base}/metrics", timeout=10).text
            return text if sample_value(text, "telemetry_samples_stored_total") >= 200 else None

        text = wait_for(stored, 60, "worker samples in the gateway's /metrics")
        assert sample_value(text, "telemetry_samples_stored_total") == 200
        assert (
            sample_value(text, "telemetry_chunks_total", outcome="stored")
            == job.json()["chunks_expected"]
        )
        assert sample_value(text, "telemetry_chunk_seconds_count") == job.json()["chunks_expected"]
        assert sample_value(text, "telemetry_rows_total", outcome="accepted") == 200
    finally:
        gateway.stop()
        worker.stop()
