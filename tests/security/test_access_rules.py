"""Tokens: writes need one; reads too when TELEMETRY_READ_AUTH is on. REST, WebSocket, pages."""

from __future__ import annotations

import asyncio

import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.api.api_support import generated

pytestmark = pytest.mark.django_db(transaction=True)


def api_paths() -> list[str]:
    """Every /api/v1/ route, with sample values for its parameters."""
    out: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                if route.startswith("api/v1/"):
                    out.append(
                        "/"
                        + route.replace("<str:uuid>", "GPU-x")
                        .replace("<str:hostname>", "h")
                        .replace("<str:job_id>", "1-a")
                    )

    walk(get_resolver().url_patterns, "")
    return sorted(set(out))


@pytest.fixture
def token() -> str:
    user = get_user_model().objects.create_user("ops", password="not-used-here")
    return Token.objects.create(user=user).key


@pytest.fixture
def locked(settings, live_services, etcd_root):
    settings.TELEMETRY_WRITE_AUTH = True
    settings.TELEMETRY_READ_AUTH = True


def test_every_api_route_refuses_a_caller_without_token(locked):
    paths = api_paths()
    assert len(paths) >= 9, paths
    client = APIClient()
    for path in paths:
        method = client.post if path.endswith("upload") else client.get
        response = method(path)
        assert response.status_code == 401, (path, response.status_code)
        assert (
            "authentication required" in response.json()["detail"]
            or "credentials" in response.json()["detail"]
        )
        assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("scheme", ["Bearer", "Token"])
def test_a_token_opens_reads_and_writes(locked, token, scheme):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"{scheme} {token}")
    assert client.get("/api/v1/gpus").status_code == 200
    response = client.post(
        "/api/v1/csv/upload",
        generated(hosts=1, gpus_per_host=1, samples=1),
        content_type="text/csv",
    )
    assert response.status_code == 202, response.content


def test_a_wrong_token_is_refused(locked):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer not-a-real-token")
    assert client.get("/api/v1/gpus").status_code == 401


def test_reads_are_open_by_default_and_writes_are_not(settings, live_services, etcd_root):
    settings.TELEMETRY_WRITE_AUTH = True
    settings.TELEMETRY_READ_AUTH = False
    client = APIClient()
    assert client.get("/api/v1/gpus").status_code == 200
    assert client.post("/api/v1/csv/upload", b"x", content_type="text/csv").status_code == 401


def test_websocket_follows_the_read_rule(locked, token):
    from telemetry_site.asgi import application

    async def scenario() -> None:
        refused = WebsocketCommunicator(application, "/ws/telemetry/")
        connected, code = await refused.connect(timeout=10)
        assert not connected and code == 4401
        allowed = WebsocketCommunicator(application, f"/ws/telemetry/?token={token}")
        connected, _ = await allowed.connect(timeout=10)
        assert connected
        await allowed.disconnect()
        header = WebsocketCommunicator(
            application, "/ws/telemetry/", headers=[(b"authorization", f"Bearer {token}".encode())]
        )
        connected, _ = await header.connect(timeout=10)
        assert connected
        await header.disconnect()

    asyncio.run(scenario())


def test_dashboard_pages_ask_for_login_when_reads_are_locked(locked):
    response = APIClient().get("/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_upload_throttle_answers_429(settings, live_services, etcd_root, token, monkeypatch):
    from rest_framework.throttling import ScopedRateThrottle

    from apps.accounts.throttles import HISTORIES

    settings.TELEMETRY_WRITE_AUTH = True
    # the rates are read once, when DRF's throttling module loads: set them where it looks
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"uploads": "2/min", "reads": None})
    HISTORIES.clear()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    codes = [
        client.post("/api/v1/csv/upload", b"bad", content_type="text/csv").status_code
        for _ in range(3)
    ]
    HISTORIES.clear()
    assert codes == [400, 400, 429]
