"""/health answers while the process lives; /ready names the dependency that is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from store import client as etcd_client
from tools import services


@pytest.fixture
def own_services(
    live_services, settings, tmp_path: Path
) -> Iterator[tuple[services.Service, services.Service]]:
    """An etcd and a Redis of this test alone, with settings pointing at them."""
    with (
        services.start_etcd(tmp_path / "etcd") as etcd,
        services.start_redis(tmp_path / "redis") as redis,
    ):
        settings.ETCD_ENDPOINTS = [etcd.url]
        settings.CELERY_BROKER_URL = redis.url
        settings.ETCD_TIMEOUT = 2.0
        etcd_client.reset()
        try:
            yield etcd, redis
        finally:
            etcd_client.reset()  # the next user connects with the restored settings


def test_health_answers_200_even_with_every_dependency_down(own_services, api):
    for service in own_services:
        service.stop()
    response = api.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_answers_200_when_etcd_and_the_broker_answer(own_services, api):
    response = api.get("/ready")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["etcd"]["ok"] is True
    assert body["checks"]["etcd"]["version"]
    assert body["checks"]["broker"] == {"ok": True}


def test_ready_answers_503_naming_etcd_when_it_is_down(own_services, api):
    etcd, _ = own_services
    etcd.stop()
    response = api.get("/ready")
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["status"] == "unavailable"
    assert "etcd" in body["detail"]
    assert "broker" not in body["detail"]
    assert body["checks"]["etcd"]["ok"] is False
    assert "etcd" in body["checks"]["etcd"]["error"]
    assert body["checks"]["broker"]["ok"] is True


def test_ready_answers_503_naming_the_broker_when_redis_is_down(own_services, api):
    _, redis = own_services
    redis.stop()
    response = api.get("/ready")
    assert response.status_code == 503, response.content
    body = response.json()
    assert "broker" in body["detail"]
    assert "etcd" not in body["detail"]
    assert body["checks"]["broker"]["ok"] is False
    assert "broker" in body["checks"]["broker"]["error"]
    assert body["checks"]["etcd"]["ok"] is True
