"""The dashboard in headless Chromium against a real gateway, worker, etcd and Redis.

Uploads the real DCGM export, checks the fleet grid and a GPU's chart, uploads a second
file through the page's form and watches the live update arrive on the open GPU page.
Saves the README's screenshots to docs/screenshots/ when UPDATE_SCREENSHOTS=1 (`make
screenshots`). Every wait is a deadline poll.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.api.api_support import generated
from tests.conftest import REPO, service_env
from tests.helpers import wait_for

playwright_api = pytest.importorskip("playwright.sync_api")

# The README's screenshots are refreshed on request (`make screenshots`), so that a test run
# leaves the checkout as it found it.
KEEP_SHOTS = os.environ.get("UPDATE_SCREENSHOTS") == "1"
CLUSTER = "dgx"
HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,"
    "value,labels_raw"
)
WAIT_MS = 30_000


def upload(base: str, data: bytes, name: str) -> dict:
    """Upload `data` into cluster CLUSTER and wait until the job is done."""
    response = requests.post(
        f"{base}/api/v1/csv/upload",
        files={"file": (name, data)},
        data={"cluster": CLUSTER},
        timeout=120,
    )
    assert response.status_code == 202, response.text
    job_url = f"{base}{response.headers['Location']}"

    def done() -> dict | None:
        body = requests.get(job_url, timeout=10).json()
        assert body["state"] != "failed", body
        return body if body["state"] == "done" else None

    return wait_for(done, 120, "upload stored")


def newer_samples(row: dict[str, str], count: int) -> bytes:
    """`count` seconds of utilization and temperature for the GPU of `row`, a minute after
    the real export ends; utilization climbs 1, 2, 3 ... so the last value is `count`."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    out.write(HEADER + "\n")
    for i in range(count):
        ts = f"2025-07-18T20:43:{40 + i:02d}Z"
        for metric, value in (("DCGM_FI_DEV_GPU_UTIL", i + 1), ("DCGM_FI_DEV_GPU_TEMP", 60)):
            fields = {**row, "timestamp": ts, "metric_name": metric, "value": str(value)}
            writer.writerow([fields[name] for name in HEADER.split(",")])
    return out.getvalue().encode()


def samples_shown(page, metric: str) -> int:
    return int(page.get_attribute(f'.chart[data-metric="{metric}"]', "data-samples") or 0)


def test_dashboard_shows_the_fleet_charts_a_gpu_and_follows_a_live_upload(
    gateway: str, browser, real_csv: Path, tmp_path: Path
):
    job = upload(gateway, real_csv.read_bytes(), real_csv.name)
    assert job["rows_accepted"] == 2470
    first = next(csv.DictReader(io.StringIO(real_csv.read_text())))
    gpu = first["uuid"]
    shots = REPO / "docs" / "screenshots" if KEEP_SHOTS else tmp_path / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page_errors: list[str] = []

    fleet = context.new_page()
    fleet.on("pageerror", lambda exc: page_errors.append(str(exc)))
    fleet.goto(f"{gateway}/")
    fleet.wait_for_selector(".tile", timeout=WAIT_MS)
    assert fleet.locator(".tile").count() == 247
    assert fleet.inner_text("#stat-gpus") == "247"
    fleet.wait_for_selector('#live-state[data-state="on"]', timeout=WAIT_MS)
    fleet.check('input[name=mode][value="temp"]')
    assert fleet.get_attribute("#fleet", "data-mode") == "temp"
    fleet.check('input[name=mode][value="util"]')
    fleet.screenshot(path=str(shots / "fleet-1280x800.png"))

    # Open the GPU from its tile, in a second tab: the first keeps the upload form.
    gpu_page = context.new_page()
    gpu_page.on("pageerror", lambda exc: page_errors.append(str(exc)))
    href = fleet.get_attribute(f'.tile[data-uuid="{gpu}"]', "href")
    gpu_page.goto(f"{gateway}{href}")
    util = "DCGM_FI_DEV_GPU_UTIL"
    gpu_page.wait_for_selector(f'.chart[data-metric="{util}"][data-samples]', timeout=WAIT_MS)
    before = samples_shown(gpu_page, util)
    assert before == 1  # the export has one sample of each metric per GPU
    assert gpu_page.locator(f'.chart[data-metric="{util}"] canvas').count() >= 1
    assert gpu_page.inner_text("#gpu-uuid") == gpu
    gpu_page.wait_for_selector('#live-state[data-state="on"]', timeout=WAIT_MS)

    # A second file through the form: the open GPU page gets its samples over the socket.
    extra = tmp_path / "newer.csv"
    extra.write_bytes(newer_samples(first, 10))
    fleet.set_input_files("#upload-file", str(extra))
    fleet.fill("#upload-cluster", CLUSTER)
    fleet.click("#upload-form button[type=submit]")
    fleet.wait_for_selector('#upload-status[data-state="done"]', timeout=WAIT_MS * 2)
    assert "20 rows accepted" in fleet.inner_text("#upload-message")
    gpu_page.wait_for_function(
        "([m, n]) => Number(document.querySelector(`.chart[data-metric='${m}']`)"
        ".dataset.samples) >= n",
        arg=[util, before + 10],
        timeout=WAIT_MS,
    )
    row = gpu_page.locator(f'#latest tr[data-metric="{util}"]')
    assert row.locator(".value").inner_text().startswith("10")
    assert row.locator(".at").inner_text() == "2025-07-18T20:43:49Z"
    assert gpu_page.inner_text("#last-seen") == "2025-07-18T20:43:49Z"
    # ... and the fleet page's tile for that GPU too
    fleet.wait_for_function(
        "u => document.querySelector(`.tile[data-uuid='${u}'] .val.util`).textContent === '10%'",
        arg=gpu,
        timeout=WAIT_MS,
    )
    gpu_page.screenshot(path=str(shots / "gpu-page.png"), full_page=True)

    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    phone.on("request", lambda request: requested.append(request.url))
    small = phone.new_page()
    small.goto(f"{gateway}/")
    small.wait_for_selector(".tile", timeout=WAIT_MS)
    small.screenshot(path=str(shots / "fleet-390x844.png"))
    small.goto(f"{gateway}{href}")
    small.wait_for_selector(f'.chart[data-metric="{util}"][data-samples]', timeout=WAIT_MS)
    small.screenshot(path=str(shots / "gpu-page-390x844.png"))
    for url in (f"{gateway}/", f"{gateway}{href}"):
        small.goto(url)
        small.wait_for_load_state("load")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{url} is {width}px wide on a 390px screen"

    assert not page_errors
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith("data:")}
    assert hosts == {"127.0.0.1"}, sorted(set(requested))
    context.close()
    phone.close()


# --- What a new user sees in the first hour: every page clean, tables that fit, charts
# whose labels can be read, GraphiQL that starts with a query that works.

PAGES = ["/", "/admin/", "/admin/gpus/gpu/", "/admin/gpus/ingestjob/", "/swagger/", "/graphql"]

LABEL_OVERLAPS = """
(box) => {
  const u = box.uplot, axis = u.axes[0];
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.font = axis.font[0];
  const width = (text) =>
    Math.max(...String(text).split("\\n").map((l) => ctx.measureText(l).width));
  const labels = axis._splits.map((v, i) => ({ x: u.valToPos(v, "x"), w: width(axis._values[i]) }))
    .filter((l) => l.x >= 0 && l.x <= u.bbox.width / devicePixelRatio);
  const overlaps = [];
  for (let i = 1; i < labels.length; i++) {
    const gap = labels[i].x - labels[i - 1].x - (labels[i].w + labels[i - 1].w) / 2;
    if (gap < 4) overlaps.push([axis._values[i - 1], axis._values[i], gap]);
  }
  return { count: labels.length, overlaps };
}
"""

ONE_LINE = """
(cells) => cells.filter((cell) => {
  const range = document.createRange();
  range.selectNodeContents(cell);
  const lines = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return lines.size > 1;
}).map((cell) => cell.textContent.trim())
"""

FITS = "(box) => box.scrollWidth <= box.clientWidth"

HEADER_GAPS = """
(heads) => heads.slice(1).map((th, i) => {
  const text = (el) => {
    const r = document.createRange();
    r.selectNodeContents(el);
    return r.getBoundingClientRect();
  };
  return text(th).left - text(heads[i]).right;
})
"""


def admin_login() -> tuple[str, str]:
    """A new superuser in the database the test gateways share: (name, password)."""
    name, password = f"ui-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    # createsuperuser touches only the database: the services' addresses do not matter
    env = service_env("127.0.0.1:1", "redis://127.0.0.1:1/0", DJANGO_SUPERUSER_PASSWORD=password)
    done = subprocess.run(
        [
            sys.executable,
            "manage.py",
            "createsuperuser",
            "--noinput",
            "--username",
            name,
            "--email",
            f"{name}@localhost",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return name, password


MIG_ROWS = "\n".join(
    [
        "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,GPU_I_ID,GPU_I_PROFILE,value",
        *(
            "2025-07-18T20:00:00Z,DCGM_FI_DEV_GPU_UTIL,0,nvidia0,"
            "GPU-5fd4f087-86f3-7a43-b711-4771313afc50,NVIDIA H100 80GB HBM3,"
            f"ui-09-dgx1-hgpu-031,{instance},{profile},{n}"
            for n, (instance, profile) in enumerate([("", ""), ("1", "1g.10gb"), ("2", "3g.40gb")])
        ),
        "",
    ]
)


def test_every_page_is_clean_tables_fit_1280_and_charts_stay_readable(gateway: str, browser):
    data = generated(hosts=2, gpus_per_host=4, samples=120, seed=21, cluster_prefix="ui")
    job = upload(gateway, data, "ui.csv")
    assert job["state"] == "done"
    # the widest row a fleet shows: a MIG instance (46-character uuid) on a long host name
    assert upload(gateway, MIG_ROWS.encode(), "ui-mig.csv")["state"] == "done"
    gpus = requests.get(f"{gateway}/api/v1/gpus", timeout=30).json()["results"]
    name, password = admin_login()

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    problems: list[str] = []
    page = context.new_page()
    page.on(
        "console", lambda m: problems.append(f"{m.type}: {m.text}") if m.type == "error" else None
    )
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.goto(f"{gateway}/admin/login/")
    page.fill("#id_username", name)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"{gateway}/admin/", timeout=WAIT_MS)
    for path in [*PAGES, f"/gpus/{gpus[0]['uuid']}/"]:
        page.goto(f"{gateway}{path}")
        page.wait_for_load_state("networkidle", timeout=WAIT_MS)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1280, f"{path} is {width}px wide at 1280px"
    assert problems == [], problems  # the favicon among them: no 404 in any console

    # this test's rows only: the session's other tests mirror their GPUs into the same admin
    # database, and which of them ran before this one depends on the order of files
    page.goto(f"{gateway}/admin/gpus/gpu/?q=ui-0")
    page.wait_for_selector("#result_list .field-uuid a", timeout=WAIT_MS)
    rows = len(page.query_selector_all("#result_list tbody tr"))
    assert rows == 11  # 2 hosts x 4 GPUs, and a GPU with its 2 MIG instances
    cells = "#result_list tbody td, #result_list tbody th, #result_list thead .text > *"
    wrapped = page.eval_on_selector_all(cells, ONE_LINE)
    assert wrapped == [], f"cells over several lines at 1280px: {wrapped[:5]}"
    widths = page.eval_on_selector(".results", "(box) => [box.scrollWidth, box.clientWidth]")
    assert widths[0] <= widths[1], f"the GPU table scrolls sideways at 1280px: {widths}"
    page.goto(f"{gateway}/admin/gpus/ingestjob/")
    page.wait_for_selector("#result_list", timeout=WAIT_MS)
    gaps = page.eval_on_selector_all("#result_list thead th", HEADER_GAPS)
    assert gaps and min(gaps) >= 8, f"job headers run together: {gaps}"
    assert page.eval_on_selector(".results", FITS), "the job table scrolls sideways at 1280px"

    # GraphiQL: a first visit opens on an example query of this schema, and it runs.
    graphiql = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    graphiql.on("pageerror", lambda exc: problems.append(str(exc)))
    graphiql.goto(f"{gateway}/graphql")
    graphiql.wait_for_selector(".graphiql-execute-button", timeout=WAIT_MS)
    editor = graphiql.locator(".graphiql-query-editor").inner_text()
    assert "clusters" in editor and "gpus(first: 3)" in editor, editor
    graphiql.click(".graphiql-execute-button")
    graphiql.wait_for_function(
        "() => (document.querySelector('.graphiql-response') || {}).innerText"
        "?.includes('\"totalCount\": 11')",  # 8 GPUs, and one with its 2 MIG instances
        timeout=WAIT_MS,
    )
    assert '"errors"' not in graphiql.locator(".graphiql-response").inner_text()

    # Charts on narrow windows: the time labels of every chart keep apart, whatever the
    # time window (5 minutes: labels with seconds, 7 days: labels with dates).
    for viewport in ({"width": 360, "height": 800}, {"width": 700, "height": 800}):
        narrow = browser.new_context(viewport=viewport).new_page()
        narrow.goto(f"{gateway}/gpus/{gpus[0]['uuid']}/")
        narrow.wait_for_selector(".chart[data-samples]", timeout=WAIT_MS)
        for window in ("5m", "1h", "7d"):
            narrow.select_option("#window", window)
            narrow.wait_for_load_state("networkidle", timeout=WAIT_MS)
            narrow.wait_for_selector(".chart[data-samples]", timeout=WAIT_MS)
            for chart in narrow.query_selector_all(".chart[data-samples]"):
                labels = chart.evaluate(LABEL_OVERLAPS)
                assert labels["count"] >= 1, (viewport, window, labels)
                assert labels["overlaps"] == [], (viewport, window, labels)
    assert problems == [], problems
