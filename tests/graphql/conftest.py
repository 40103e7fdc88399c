"""Fixtures of the GraphQL tests (the services come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tests.api.api_support import upload
from tests.helpers import wait_job_done


@pytest.fixture
def api() -> APIClient:
    return APIClient()


@pytest.fixture
def real_fleet(pipeline: str, real_csv, api: APIClient) -> str:
    """The real DCGM export (247 GPUs) uploaded through the API into this test's root."""
    response = upload(api, real_csv.read_bytes(), real_csv.name)
    assert response.status_code == 202, response.content
    job = wait_job_done(api, response.json()["id"])
    assert job["rows_accepted"] == 2470, job
    return pipeline


# store.kv's reads; get_many is one etcd round trip per MAX_TXN_OPS keys.
KV_READS = (
    "get",
    "get_prefix",
    "get_range",
    "get_many",
    "count_prefix",
    "keys_in_range",
    "get_together",
    "get_ranges_since",
    "get_range_rev",
    "revision",
)


@pytest.fixture
def kv_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the etcd reads this process makes from now on (still made for real)."""
    from store import kv

    made: list[str] = []

    def spy(name: str, real):
        def counted(*args, **kwargs):
            trips = -(-len(args[0]) // kv.MAX_TXN_OPS) if name == "get_many" else 1
            made.extend([name] * trips)
            return real(*args, **kwargs)

        return counted

    for name in KV_READS:
        monkeypatch.setattr(kv, name, spy(name, getattr(kv, name)))
    return made
