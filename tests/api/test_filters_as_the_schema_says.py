"""The cluster and host filters refuse what the schema's FILTER pattern forbids (400 naming
it) instead of answering an empty page: a control character (also at either end, where a
trim once hid it), '/', '.' or '..'."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

BAD = ["\x1f\u00f0x", "prod\x1c", "prod\n", "\tprod", "a/b", ".", "..", "x\x7f", "\x00", "a" * 201]


@pytest.mark.parametrize("value", BAD)
@pytest.mark.parametrize("path", ["/api/v1/gpus", "/api/v1/hosts", "/api/v1/hosts/h1/gpus"])
def test_a_filter_the_schema_forbids_is_refused(live_services, path, value):
    response = APIClient().get(path, {"cluster": value})
    assert response.status_code == 400, (path, value, response.content)
    assert "cluster" in response.content.decode(), response.content


@pytest.mark.parametrize("value", ["prod", " prod ", "dc-1.rack_2", "é"])
def test_a_filter_the_schema_allows_is_answered(live_services, value):
    for path in ("/api/v1/gpus", "/api/v1/hosts"):
        response = APIClient().get(path, {"cluster": value})
        assert response.status_code == 200, (path, value, response.content)
    assert APIClient().get("/api/v1/gpus", {"host": "a/b"}).status_code == 400
