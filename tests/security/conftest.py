"""A gateway process of its own for the attack tests: spool folder, small limits, a token."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bench.attacks import ProcessMeter
from tests.conftest import REPO, service_env
from tools import processes, services

UPLOAD_LIMIT = 8 * 1024 * 1024


@dataclass
class Gateway:
    url: str
    port: int
    service: services.Service
    spool: Path
    meter: ProcessMeter
    redis_url: str

    def log(self) -> str:
        return self.service.log_path.read_text(errors="replace")


def make_token(etcd_url: str, broker_url: str) -> str:
    """A user and its API token in the database the children share (manage.py, as operators do)."""
    name = f"attack-{uuid.uuid4().hex[:8]}"
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({name!r}, password='x')"
    )
    env = service_env(etcd_url, broker_url)
    run = dict(cwd=REPO, env=env, check=True, timeout=120, capture_output=True, text=True)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], **run)
    return subprocess.run([sys.executable, "manage.py", "api_token", name], **run).stdout.strip()


def start(tmp: Path, etcd_url: str, redis_url: str, log_level: str = "warning", **env: str):
    spool = tmp / f"spool-{uuid.uuid4().hex[:6]}"
    spool.mkdir()
    settings = {
        "ETCD_PREFIX": f"/attack-{uuid.uuid4().hex[:10]}",
        "TMPDIR": str(spool),
        "FILE_UPLOAD_TEMP_DIR": str(spool),
        "INGEST_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        "HTTP_BODY_GRACE": "2s",
        "TELEMETRY_WRITE_AUTH": "true",  # the test session turns it off for its own clients
        "THROTTLE_UPLOADS": "off",
        "THROTTLE_READS": "off",
    }
    environment = service_env(etcd_url, redis_url, **(settings | env))
    log = tmp / f"gateway-{uuid.uuid4().hex[:8]}.log"
    svc = processes.start_gateway(log, environment, log_level=log_level)
    return Gateway(
        f"http://127.0.0.1:{svc.port}", svc.port, svc, spool, ProcessMeter(svc.proc.pid), redis_url
    )


@pytest.fixture
def hostile_gateway(worker, etcd, redis_server, tmp_path: Path) -> Iterator[Gateway]:
    """A uvicorn gateway: 8 MiB upload limit, 2 s body grace, bodies spooled under tmp_path."""
    gateway = start(tmp_path, etcd.url, redis_server.url)
    try:
        yield gateway
    finally:
        gateway.service.stop()


@pytest.fixture
def attack_token(worker, etcd, redis_server) -> str:
    return make_token(etcd.url, redis_server.url)
