"""The Prometheus API's series catalog is bounded (PROMETHEUS_MAX_SERIES): a store holding
more series (GPUs x metrics x workloads kept) answers 422 `execution` naming the setting,
instead of growing every gateway process without end; the rest of the API is unaffected.
On real etcd, Redis and a Celery worker."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.read.prometheus.catalog import _CATALOG
from tests.api.api_support import upload
from tests.helpers import wait_job_done
from tests.prometheus.test_workload_periods import GPU, T0, _csv


@pytest.fixture
def loaded(pipeline: str) -> str:
    api = APIClient()
    response = upload(api, _csv(), "pods.csv")  # one metric, idle + two pods: 3 series
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    _CATALOG.clear()
    return pipeline


def _query() -> tuple[int, dict]:
    response = Client().get(
        "/prometheus/api/v1/query_range",
        {"query": "DCGM_FI_DEV_GPU_UTIL", "start": T0, "end": T0 + 120, "step": 10},
    )
    return response.status_code, response.json()


def test_a_store_past_the_series_bound_is_refused_by_name(loaded, settings) -> None:
    settings.PROMETHEUS_MAX_SERIES = 2
    status, body = _query()
    assert status == 422 and body["errorType"] == "execution", body
    assert "PROMETHEUS_MAX_SERIES (2)" in body["error"] and "3 series" in body["error"]
    labels = Client().get("/prometheus/api/v1/labels").json()
    assert labels["status"] == "error"  # every catalog reader, not only queries
    assert APIClient().get(f"/api/v1/gpus/{GPU}").status_code == 200  # REST is unaffected

    settings.PROMETHEUS_MAX_SERIES = 3
    _CATALOG.clear()  # else the refusal is kept CATALOG_TTL_S, as a listing is
    status, body = _query()
    assert status == 200, body
    assert len(body["data"]["result"]) == 3
