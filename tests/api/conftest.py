"""Fixtures of the API integration tests (the services come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient


@pytest.fixture
def api() -> APIClient:
    return APIClient()
