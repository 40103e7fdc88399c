"""The /graphql route: ENABLE_GRAPHQL, GraphiQL from local files, CSRF, the REST read rule."""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth import get_user_model
from django.test import Client, override_settings
from django.urls import clear_url_caches
from rest_framework.authtoken.models import Token
from rest_framework.throttling import ScopedRateThrottle

from apps.accounts.throttles import HISTORIES
from tests.graphql.gql_support import post

TYPENAME = "{ __typename }"


def reload_urls() -> None:
    import telemetry_site.urls

    clear_url_caches()
    importlib.reload(telemetry_site.urls)


@pytest.fixture
def graphql_off() -> Iterator[None]:
    """ENABLE_GRAPHQL=false with the URLconf rebuilt from it; the normal one restored after."""
    try:
        with override_settings(ENABLE_GRAPHQL=False):
            reload_urls()
            yield
    finally:
        reload_urls()


def test_it_answers_when_enabled(api):
    response = post(api, TYPENAME)
    assert response.status_code == 200
    assert response.json() == {"data": {"__typename": "Query"}}


def test_enable_graphql_false_removes_the_route(graphql_off, api):
    assert post(api, TYPENAME).status_code == 404
    assert api.get("/graphql", HTTP_ACCEPT="text/html").status_code == 404
    assert api.get("/health").status_code == 200


def test_it_is_back_after_the_setting_returns(api):
    assert post(api, TYPENAME).status_code == 200


def test_post_needs_no_csrf_token_like_rest():
    client = Client(enforce_csrf_checks=True)
    response = client.post("/graphql", {"query": TYPENAME}, content_type="application/json")
    assert response.status_code == 200, response.content


def test_get_runs_a_query_and_refuses_nothing_else(api):
    response = api.get("/graphql", {"query": TYPENAME}, HTTP_ACCEPT="application/json")
    assert response.json() == {"data": {"__typename": "Query"}}
    response = api.put("/graphql", {"query": TYPENAME}, format="json")
    assert response.status_code == 405


def test_graphiql_loads_only_local_files_whose_hashes_match(api):
    response = api.get("/graphql", HTTP_ACCEPT="text/html")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<title>GraphiQL" in html
    tags = re.findall(r'<(?:script|link)\b[^>]*\b(?:src|href)="[^"]+"[^>]*>', html)
    # 7 vendored files, graphene-django's graphiql.js and the site's favicon
    assert len(tags) == 9, tags
    for tag in tags:
        url = re.search(r'(?:src|href)="([^"]+)"', tag)[1]
        assert url.startswith("/static/") and "//" not in url, url
        body = b"".join(api.get(url).streaming_content)
        assert body, url
        integrity = re.search(r'integrity="sha256-([^"]+)"', tag)
        if url.startswith("/static/graphiql/"):  # vendored: the hash graphene-django pins
            assert base64.b64encode(hashlib.sha256(body).digest()).decode() == integrity[1], url
    # (every asset is checked local above) and no CDN host named anywhere in the page: a URL
    # searched, not the letters "cdn", which the page's random CSRF token holds now and then
    assert not re.search(r"(?:https?:)?//[\w.-]*cdn", html, re.IGNORECASE)


@pytest.fixture
def locked(settings) -> None:
    settings.TELEMETRY_READ_AUTH = True


@pytest.mark.django_db
def test_it_follows_the_rest_read_rule(locked, api):
    refused = post(api, TYPENAME)
    assert refused.status_code == 401
    assert refused["WWW-Authenticate"].startswith("Bearer")
    assert "authentication required" in refused.json()["errors"][0]["message"]
    assert api.get("/api/v1/gpus").status_code == 401  # REST says the same

    page = api.get("/graphql", HTTP_ACCEPT="text/html")
    assert page.status_code == 302 and "/admin/login/" in page["Location"]

    user = get_user_model().objects.create_user("reader", password="not-used-here")
    token = Token.objects.create(user=user).key
    for scheme in ("Bearer", "Token"):
        allowed = post(api, TYPENAME, HTTP_AUTHORIZATION=f"{scheme} {token}")
        assert allowed.status_code == 200, allowed.content
    assert post(api, TYPENAME, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_reads_are_throttled_in_the_rest_reads_scope(api, monkeypatch):
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"reads": "2/min"})
    HISTORIES.clear()
    assert [post(api, TYPENAME).status_code for _ in range(3)] == [200, 200, 429]
    assert int(post(api, TYPENAME)["Retry-After"]) > 0
    HISTORIES.clear()
