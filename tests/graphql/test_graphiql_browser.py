"""GraphiQL in headless Chromium against a real gateway: it loads, runs queries, stays local.

The page is opened with a query in its URL and run with the execute button; a second
query is typed into the editor and run with Ctrl-Enter. Every request the browser makes
must go to the gateway itself (no CDN), and the page must raise no script error.
"""

from __future__ import annotations

from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.api.api_support import generated
from tests.helpers import wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

WAIT_MS = 30_000


@pytest.fixture
def loaded_gateway(gateway: str) -> str:
    """The shared gateway fixture, holding 6 generated GPUs."""
    data = generated(hosts=2, gpus_per_host=3, samples=3, seed=11, cluster_prefix="gql")
    response = requests.post(
        f"{gateway}/api/v1/csv/upload",
        files={"file": ("g.csv", data)},
        data={"cluster": "gql"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job_url = f"{gateway}/api/v1/ingest/jobs/{response.json()['id']}"
    wait_for(lambda: requests.get(job_url, timeout=10).json()["state"] == "done", 120)
    return gateway


def response_text(page) -> str:
    return page.locator(".graphiql-response").inner_text().replace("\xa0", " ")


def test_graphiql_runs_queries_from_local_files_only(loaded_gateway, browser):
    gateway = loaded_gateway
    page = browser.new_page()
    requested: list[str] = []
    page_errors: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda exc: page_errors.append(str(exc)))

    query = "{ gpus(first: 2) { totalCount edges { node { uuid cluster } } } }"
    page.goto(f"{gateway}/graphql#query={quote(query)}")
    page.wait_for_selector(".graphiql-execute-button", timeout=WAIT_MS)
    page.click(".graphiql-execute-button")
    page.wait_for_function(
        "() => (document.querySelector('.graphiql-response') || {}).innerText"
        "?.includes('\"totalCount\": 6')",
        timeout=WAIT_MS,
    )
    assert '"cluster": "gql"' in response_text(page)

    editor = page.locator(".graphiql-query-editor .CodeMirror").first
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.type("{ clusters { name gpuCount hostCount ")
    page.keyboard.press("Control+Enter")
    page.wait_for_function(
        "() => (document.querySelector('.graphiql-response') || {}).innerText"
        "?.includes('\"hostCount\": 2')",
        timeout=WAIT_MS,
    )
    assert '"gpuCount": 6' in response_text(page)

    assert page_errors == []
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, sorted(set(requested))
    assert any(url.endswith("/static/graphiql/graphiql.min.js") for url in requested)
