"""etcd goes away and comes back: workers retry, nothing is lost, the API says 503 meanwhile.

This test runs its own etcd (fixed ports, so it can come back on the same data
directory), its own Redis and its own worker; the session services are never
touched.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from store import client as etcd_client
from tests.api.api_support import (
    all_gpus,
    expected_samples,
    generated,
    keys_under,
    point_producer_at,
    stored_samples,
    upload,
)
from tests.conftest import start_worker
from tests.helpers import wait_for, wait_job_done
from tools import services


@dataclass
class Outage:
    etcd: services.Service
    redis: services.Service
    tmp: Path
    etcd_port: int
    peer_port: int

    def restart_etcd(self) -> None:
        self.etcd = services.start_etcd(
            self.tmp / "etcd", port=self.etcd_port, peer_port=self.peer_port
        )


@pytest.fixture
def outage(settings, tmp_path: Path) -> Iterator[Outage]:
    """Own etcd and Redis, with this process's settings and Celery producer pointed at them."""
    from telemetry_site.celery import app

    services.ensure_binaries()
    etcd_port = services.free_port()
    peer_port = services.free_port()
    etcd = services.start_etcd(tmp_path / "etcd", port=etcd_port, peer_port=peer_port)
    redis = services.start_redis(tmp_path / "redis")
    state = Outage(etcd, redis, tmp_path, etcd_port, peer_port)
    old_broker = app.conf.broker_url
    settings.ETCD_ENDPOINTS = [etcd.url]
    settings.ETCD_PREFIX = "/outage"
    settings.ETCD_TIMEOUT = 2.0
    settings.CELERY_BROKER_URL = redis.url
    settings.INGEST_CHUNK_ROWS = 200  # several chunks, so retries overlap
    point_producer_at(redis.url)
    etcd_client.reset()
    try:
        yield state
    finally:
        point_producer_at(old_broker)
        etcd_client.reset()
        state.etcd.stop()
        redis.stop()


def test_workers_retry_until_etcd_is_back_and_store_everything_once(outage, sent_tasks):
    api = APIClient()
    data = generated(hosts=2, gpus_per_host=4, samples=12, seed=31)
    response = upload(api, data, "before-outage.csv")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    chunks = response.json()["chunks_expected"]
    assert chunks > 2
    # No worker yet: every chunk is still queued when etcd goes away.
    outage.etcd.stop()
    sent_before = len(sent_tasks)

    # While etcd is down the API says so, with a clear body, and accepts nothing.
    for path in ("/api/v1/gpus", f"/api/v1/ingest/jobs/{job_id}", "/api/v1/clusters"):
        down = api.get(path)
        assert down.status_code == 503, (path, down.content)
        assert "etcd is unavailable" in down.json()["detail"]
        assert down["Retry-After"]
    other = generated(hosts=1, gpus_per_host=2, samples=3, seed=32, cluster_prefix="late")
    refused = upload(api, other, "during-outage.csv")
    assert refused.status_code == 503, refused.content
    assert "etcd" in refused.json()["detail"]
    assert len(sent_tasks) == sent_before, "chunks of a refused upload were enqueued"

    with start_worker(
        outage.tmp, outage.etcd.url, outage.redis.url, concurrency=2, ETCD_TIMEOUT="1s"
    ) as worker:
        wait_for(
            lambda: services.log_contains(worker.log_path, worker.log_offset, b"Retry in"),
            deadline_s=60,
            what="a worker retry while etcd is down",
        )
        outage.restart_etcd()
        # gRPC backs off between reconnects, so the API may answer 503 a few seconds more.
        wait_for(
            lambda: api.get(f"/api/v1/ingest/jobs/{job_id}").status_code == 200,
            deadline_s=60,
            what="the API answering again after etcd came back",
        )
        job = wait_job_done(api, job_id, deadline_s=120)

    rows = 2 * 4 * 12 * 10
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (rows, rows, 0)
    assert job["chunks_done"] == job["chunks_expected"] == chunks
    assert len(keys_under("chunks")) == chunks
    expected = expected_samples(data)
    gpus = all_gpus(api)
    assert {g["uuid"] for g in gpus} == set(expected)  # nothing of the refused upload
    for gpu in gpus:
        assert stored_samples(api, gpu["uuid"]) == expected[gpu["uuid"]]
        assert gpu["last_seen"] == "2025-07-18T20:01:50Z"
    assert keys_under("jobs") == [f"/outage/jobs/{job_id}"]
