"""GraphiQL in headless Chromium against a real gateway: it loads, runs queries, stays local.

The page is opened with a query in its URL and run with the execute button; a second
query is typed into the editor and run with Ctrl-Enter. Every request the browser makes
must go to the gateway itself (no CDN), and the page must raise no script error.
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from tests.api.api_support import generated
from tests.conftest import service_env
from tests.helpers import wait_for
from tools import services

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make install adds it)"
)


@pytest.fixture
def gateway(worker, etcd, redis_server, tmp_path: Path) -> Iterator[str]:
    """A uvicorn gateway on a fresh etcd root, holding 6 generated GPUs; yields its base URL."""
    port = services.free_port()
    argv = [sys.executable, "-m", "uvicorn", "telemetry_site.asgi:application"]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    prefix = f"/graphiql-{uuid.uuid4().hex[:10]}"
    with services.start_command(
        "gateway-graphiql",
        argv,
        log_path=tmp_path / "gateway.log",
        env=service_env(etcd.url, redis_server.url, ETCD_PREFIX=prefix),
        ready=lambda: services.http_ok("127.0.0.1", port),
        port=port,
    ):
        base = f"http://127.0.0.1:{port}"
        data = generated(hosts=2, gpus_per_host=3, samples=3, seed=11, cluster_prefix="gql")
        response = requests.post(
            f"{base}/api/v1/csv/upload",
            files={"file": ("g.csv", data)},
            data={"cluster": "gql"},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        job_url = f"{base}/api/v1/ingest/jobs/{response.json()['id']}"
        wait_for(lambda: requests.get(job_url, timeout=10).json()["state"] == "done", 120)
        yield base


@pytest.fixture
def browser() -> Iterator[object]:
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def response_text(page) -> str:
    return page.locator(".graphiql-response").inner_text().replace("\xa0", " ")


def test_graphiql_runs_queries_from_local_files_only(gateway, browser):
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
