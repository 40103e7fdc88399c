"""Fixtures that start the real parts: etcd, Redis and a Celery worker, on free ports.

Each test that stores data gets its own etcd root (`ETCD_PREFIX`), so tests never
see each other's keys; chunk payloads carry the root, so the shared worker writes
where the test's gateway code decided.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tools import processes, services

REPO = Path(__file__).resolve().parents[1]
REAL_CSV = REPO.parent / "shared" / "peers-data" / "dcgm_metrics_20250718_134233.csv"


# One file per pytest process: `make test` runs two (pytest-xdist), each migrating its own.
CHILDREN_DB = REPO / "var" / f"test-children{os.environ.get('PYTEST_XDIST_WORKER', '')}.sqlite3"


def service_env(etcd_url: str, broker_url: str, **extra: str) -> dict[str, str]:
    """Environment for a child process (worker, server) of the test session."""
    base = {
        "DJANGO_SECRET_KEY": django_settings.SECRET_KEY,
        "DJANGO_DEBUG": "false",
        "DJANGO_ALLOWED_HOSTS": "*",
        "DATABASE_URL": f"sqlite:///{CHILDREN_DB}",
    }
    return services.child_env(etcd_url, broker_url, REPO, **{**base, **extra})


def migrate_children_db(etcd_url: str, broker_url: str) -> None:
    """The SQLite file that worker and gateway children share gets Django's tables."""
    (REPO / "var").mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO,
        env=service_env(etcd_url, broker_url),
        check=True,
        timeout=120,
    )


def start_worker(
    tmp: Path,
    etcd_url: str,
    broker_url: str,
    concurrency: int = 2,
    queues: str = "telemetry",
    **env: str,
) -> services.Service:
    log = tmp / f"worker-{uuid.uuid4().hex[:8]}.log"
    environment = service_env(etcd_url, broker_url, **env)
    return processes.start_worker(log, environment, concurrency, queues)


def start_gateway(tmp: Path, etcd_url: str, broker_url: str, **env: str) -> services.Service:
    log = tmp / f"gateway-{uuid.uuid4().hex[:8]}.log"
    return processes.start_gateway(log, service_env(etcd_url, broker_url, **env))


@pytest.fixture(scope="session")
def service_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def etcd(service_dir: Path) -> Iterator[services.Service]:
    services.ensure_binaries()
    with services.start_etcd(service_dir / "etcd") as svc:
        yield svc


@pytest.fixture(scope="session")
def postgres(service_dir: Path) -> Iterator[services.Service]:
    """A real PostgreSQL on a free port; `.url` is a DATABASE_URL (database `telemetry`)."""
    from tools import postgres as pg

    if pg.bin_dir() is None:
        pytest.skip(f"PostgreSQL is not installed ({pg.APT_HINT}; `make install` adds it)")
    server = pg.start_postgres(service_dir / "postgres")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(service_dir: Path) -> Iterator[services.Service]:
    with services.start_redis(service_dir / "redis") as svc:
        yield svc


@pytest.fixture(scope="session")
def live_services(etcd: services.Service, redis_server: services.Service) -> Iterator[None]:
    """Point this process's settings, etcd client and Celery producer at the test services."""
    from channels.layers import channel_layers

    from store import client
    from telemetry_site.celery import app

    django_settings.ETCD_ENDPOINTS = [etcd.url]
    django_settings.CELERY_BROKER_URL = redis_server.url
    django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"] = redis_server.url
    channel_layers.backends.clear()
    app.conf.broker_url = redis_server.url
    client.reset()
    yield
    client.reset()


@pytest.fixture(scope="session")
def worker(
    live_services: None, etcd: services.Service, redis_server: services.Service, service_dir: Path
) -> Iterator[services.Service]:
    migrate_children_db(etcd.url, redis_server.url)
    with start_worker(service_dir, etcd.url, redis_server.url) as svc:
        yield svc


@pytest.fixture
def etcd_root(live_services: None, settings: object) -> str:
    """A fresh etcd root for this test (settings.ETCD_PREFIX)."""
    root = f"/test-{uuid.uuid4().hex[:12]}"
    settings.ETCD_PREFIX = root  # type: ignore[attr-defined]
    return root


@pytest.fixture
def pipeline(worker: services.Service, etcd_root: str) -> str:
    """etcd, Redis and a worker running, and a fresh root: the whole ingest path."""
    return etcd_root


@pytest.fixture
def real_csv() -> Path:
    if not REAL_CSV.exists():
        pytest.skip(f"the real DCGM export is not here ({REAL_CSV}); it lives in ../shared/")
    return REAL_CSV


@pytest.fixture
def sent_tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the Celery tasks this process sends during the test (still sent for real)."""
    from telemetry_site.celery import app

    sent: list[str] = []
    real = app.send_task

    def spy(name: str, *args, **kwargs):
        sent.append(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(app, "send_task", spy)
    return sent


@pytest.fixture
def gateway(
    worker: services.Service, etcd: services.Service, redis_server: services.Service, tmp_path: Path
) -> Iterator[str]:
    """A real uvicorn gateway process on a fresh etcd root; yields its base URL."""
    prefix = f"/gw-{uuid.uuid4().hex[:10]}"
    with start_gateway(tmp_path, etcd.url, redis_server.url, ETCD_PREFIX=prefix) as svc:
        yield f"http://127.0.0.1:{svc.port}"


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def browser() -> Iterator[object]:
    """Headless Debian Chromium driven by Playwright (never `playwright install`)."""
    if not Path(CHROMIUM).exists():
        pytest.skip("chromium is not installed: `make install` adds Debian's chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()
