"""Fixtures of the Prometheus API tests: a real Prometheus and our store over the same samples."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.conf import settings as django_settings

from store.keys import Keys
from tests.prometheus import oracle_support
from tools import prometheus


@dataclass(frozen=True)
class Oracle:
    url: str  # the real Prometheus
    root: str  # our etcd root holding the same samples


@pytest.fixture(scope="session")
def oracle_data(live_services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Oracle]:
    if not prometheus.available():
        pytest.skip(f"prometheus/promtool not installed ({prometheus.APT_HINT})")
    root = f"/oracle-{uuid.uuid4().hex[:10]}"
    window = int(django_settings.BLOCK_WINDOW_SECONDS) * 1000
    oracle_support.load_store(Keys(root), window)
    with oracle_support.start_oracle(tmp_path_factory.mktemp("oracle")) as svc:
        yield Oracle(svc.url, root)


@pytest.fixture
def oracle(oracle_data: Oracle, settings: object) -> Oracle:
    """The oracle, with this process reading our store at its root."""
    settings.ETCD_PREFIX = oracle_data.root  # type: ignore[attr-defined]
    return oracle_data
