"""Fixtures of the API integration tests (the services come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api() -> APIClient:
    return APIClient()


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
