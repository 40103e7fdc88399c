"""An upload while the task broker is down: 503 naming the broker, and the job marked failed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import default_keys
from store.jobs import load_job
from tests.api.api_support import generated, keys_under, point_producer_at, upload
from tools import services


@pytest.fixture
def dead_broker(etcd_root, settings, tmp_path: Path) -> Iterator[None]:
    """The session etcd, but a Redis of this test alone, already stopped."""
    from telemetry_site.celery import app

    redis = services.start_redis(tmp_path / "redis")
    redis.stop()
    old = app.conf.broker_url
    settings.CELERY_BROKER_URL = redis.url
    point_producer_at(redis.url)
    try:
        yield
    finally:
        point_producer_at(old)


def test_it_answers_503_naming_the_broker_and_marks_the_job_failed(dead_broker, api):
    response = upload(api, generated(hosts=1, gpus_per_host=1, samples=2), "x.csv")
    assert response.status_code == 503, response.content
    assert "broker" in response.json()["detail"]
    # The job was saved before its first chunk was queued; it says why it failed.
    [key] = keys_under("jobs")
    job = load_job(default_keys(), key.rsplit("/", 1)[-1])
    assert job["state"] == "failed"
    assert job["error"]
    assert api.get(f"/api/v1/ingest/jobs/{job['id']}").json()["state"] == "failed"
    assert keys_under("gpus") == []
