"""The guard decides who may send a body from the headers: tokens, sessions, and neither.

A gateway with both access rules on (TELEMETRY_WRITE_AUTH, TELEMETRY_READ_AUTH).
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
import requests

from bench.attacks import MiB, chunked_post
from tests.api.api_support import generated
from tests.conftest import REPO, service_env
from tests.security.conftest import Gateway, start


@pytest.fixture
def locked_gateway(worker, etcd, redis_server, tmp_path) -> Iterator[Gateway]:
    gateway = start(tmp_path, etcd.url, redis_server.url, TELEMETRY_READ_AUTH="true")
    try:
        yield gateway
    finally:
        gateway.service.stop()


def staff_user(etcd_url: str, broker_url: str) -> tuple[str, str]:
    name, password = f"staff-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    code = (
        "from django.contrib.auth import get_user_model; "
        f"get_user_model().objects.create_user({name!r}, password={password!r}, is_staff=True)"
    )
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=REPO,
        env=service_env(etcd_url, broker_url),
        check=True,
        timeout=120,
        capture_output=True,
    )
    return name, password


def logged_in(base: str, name: str, password: str) -> requests.Session:
    """A browser-like session: the admin login form, then its cookies."""
    session = requests.Session()
    session.get(f"{base}/admin/login/", timeout=10)
    response = session.post(
        f"{base}/admin/login/",
        data={
            "username": name,
            "password": password,
            "csrfmiddlewaretoken": session.cookies["csrftoken"],
            "next": "/",
        },
        headers={"Referer": f"{base}/admin/login/"},
        timeout=10,
    )
    assert response.status_code == 200 and "sessionid" in session.cookies, response.text[:300]
    return session


def test_a_logged_in_session_uploads_through_the_guard(locked_gateway, etcd, redis_server):
    base = locked_gateway.url
    session = logged_in(base, *staff_user(etcd.url, redis_server.url))
    response = session.post(
        f"{base}/api/v1/csv/upload",
        files={"file": ("fleet.csv", generated(hosts=1, gpus_per_host=1, samples=2))},
        headers={"X-CSRFToken": session.cookies["csrftoken"], "Referer": base + "/"},
        timeout=30,
    )
    assert response.status_code == 202, response.text


def test_a_made_up_session_is_refused_before_the_body(locked_gateway):
    before = locked_gateway.meter.read()
    out = chunked_post(
        locked_gateway.port,
        "/api/v1/csv/upload",
        32 * MiB,
        headers={"Cookie": "sessionid=not-a-session; csrftoken=x"},
    )
    assert out.answers == [401]
    assert locked_gateway.meter.read().written - before.written < 1 * MiB


def test_graphql_refuses_an_anonymous_body_when_reads_need_a_token(locked_gateway):
    before = locked_gateway.meter.read()
    out = chunked_post(locked_gateway.port, "/graphql", 32 * MiB)
    assert out.answers == [401]
    assert locked_gateway.meter.read().written - before.written < 1 * MiB
    response = requests.post(
        f"{locked_gateway.url}/graphql", json={"query": "{ __typename }"}, timeout=10
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "authentication required" in response.json()["errors"][0]["message"]
