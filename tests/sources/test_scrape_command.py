"""`manage.py scrape` against HTTP servers of the test, with the real pipeline behind it.

The good endpoint serves, as dcgm-exporter would, one sample per GPU and metric
of the real DCGM export (labels from its labels_raw), plus a MIG instance and a
label value with escaped quotes, backslash and newline. Others answer 500,
garbage, or nothing at all.
"""

from __future__ import annotations

import csv
import http.server
import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.ingest.management.commands.scrape import Command as ScrapeCommand
from apps.ingest.parsing import parse_labels_raw
from tests.api.api_support import all_gpus, stored_samples, telemetry
from tests.helpers import wait_for
from tests.sources.sources_support import Running
from tools.services import free_port

POD = 'train "llama" \\ run\nsecond line'
MIG_PROFILE, MIG_ID = "1g.10gb", "3"
MIG_VALUES = {"DCGM_FI_DEV_GPU_UTIL": 42.0, "DCGM_FI_DEV_FB_USED": 9000.0}
GARBAGE = b"<html><body>\x00\xff not metrics {{{ \n at all</body></html>\n"


def escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def series(name: str, labels: dict[str, str], value: str) -> str:
    inside = ",".join(f'{k}="{escape(v)}"' for k, v in labels.items())
    return f"{name}{{{inside}}} {value}"


def exporter_text(real_csv: Path) -> tuple[str, dict[str, dict[str, float]], str]:
    """The exposition text; the values each GPU uuid should get; the uuid with the pod label."""
    first: dict[tuple[str, str], dict[str, str]] = {}
    with open(real_csv, newline="") as fh:
        for row in csv.DictReader(fh):
            first.setdefault((row["metric_name"], row["uuid"]), row)
    expected: dict[str, dict[str, float]] = {}
    by_metric: dict[str, list[str]] = {}
    podded = min(uuid for _, uuid in first)
    for (metric, uuid), row in sorted(first.items()):
        labels = parse_labels_raw(row["labels_raw"])
        for dropped in ("__name__", "instance", "job"):  # added by Prometheus, not the exporter
            labels.pop(dropped, None)
        if uuid == podded:
            labels["pod"] = POD
        by_metric.setdefault(metric, []).append(series(metric, labels, row["value"]))
        expected.setdefault(uuid, {})[metric] = float(row["value"])
        if uuid == podded and metric in MIG_VALUES:
            mig = {**labels, "GPU_I_PROFILE": MIG_PROFILE, "GPU_I_ID": MIG_ID}
            del mig["pod"]
            by_metric[metric].append(series(metric, mig, f"{MIG_VALUES[metric]:g}"))
    expected[f"MIG-{podded}-{MIG_ID}"] = dict(MIG_VALUES)
    lines = [
        "# HELP go_goroutines Number of goroutines that currently exist.",
        "# TYPE go_goroutines gauge",
        "go_goroutines 23",
    ]
    for metric, samples in by_metric.items():
        lines += [f"# HELP {metric} {metric} of the GPU.", f"# TYPE {metric} gauge", *samples]
    return "\n".join(lines) + "\n", expected, podded


class Exporter(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, body: bytes) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.body = body
        self.hits: dict[str, list[float]] = {}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class Handler(http.server.BaseHTTPRequestHandler):
    server: Exporter

    def do_GET(self) -> None:
        self.server.hits.setdefault(self.path, []).append(time.monotonic())
        if self.path == "/metrics":
            self._answer(200, self.server.body)
        elif self.path == "/broken":
            self._answer(500, b"internal error\n")
        elif self.path == "/garbage":
            self._answer(200, GARBAGE)
        else:
            self._answer(404, b"not found\n")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def exporter(body: bytes) -> Iterator[Exporter]:
    server = Exporter(body)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def served(real_csv: Path) -> Iterator[tuple[Exporter, dict[str, dict[str, float]], str]]:
    text, expected, podded = exporter_text(real_csv)
    with exporter(text.encode()) as server:
        yield server, expected, podded


def test_it_scrapes_the_exporter_and_survives_broken_endpoints(pipeline, served):
    server, expected, podded = served
    refused = f"http://127.0.0.1:{free_port()}/metrics"
    api = APIClient()
    run = Running(
        ScrapeCommand(),
        server.url("/metrics"),
        server.url("/broken"),
        server.url("/garbage"),
        refused,
        "--interval",
        "200ms",
        "--timeout",
        "2s",
        "--max-backoff",
        "1s",
        "--cluster",
        "live",
        "--no-progress",
        "--status-every",
        "200ms",
    )

    def every_gpu_arrived() -> bool:
        gpus = all_gpus(api, cluster="live")
        return len(gpus) == len(expected) and all(
            set(g["latest"]) == set(expected[g["uuid"]]) for g in gpus
        )

    def reported() -> bool:
        err = run.err.getvalue()
        return all(
            f"scrape {url}: {what}" in err
            for url, what in (
                (server.url("/broken"), "HTTP 500"),
                (server.url("/garbage"), "not Prometheus text"),
                (refused, "cannot connect"),
            )
        )

    wait_for(every_gpu_arrived, 90, "every GPU of the exporter stored")
    wait_for(reported, 30, "the three failing endpoints reported")
    wait_for(lambda: len(server.hits.get("/metrics", [])) >= 4, 30, "polling went on")
    out = run.stop()

    gpus = {g["uuid"]: g for g in all_gpus(api, cluster="live")}
    assert set(gpus) == set(expected)  # 247 GPUs and the MIG instance
    for uuid, values in expected.items():
        assert {m: v["value"] for m, v in gpus[uuid]["latest"].items()} == values, uuid
    # the pod is a workload period of the GPU, not one of its fixed labels (escapes undone)
    assert "pod" not in gpus[podded]["labels"]
    assert {w["pod"] for w in telemetry(api, podded)["workloads"]} == {POD}
    mig = gpus[f"MIG-{podded}-{MIG_ID}"]
    assert mig["labels"]["GPU_I_PROFILE"] == MIG_PROFILE
    assert mig["labels"]["UUID"] == podded
    assert (mig["host"], mig["driver"]) == (gpus[podded]["host"], gpus[podded]["driver"])
    samples = stored_samples(api, podded)
    assert {v for (_, metric), v in samples.items() if metric == "DCGM_FI_DEV_GPU_UTIL"} == {
        expected[podded]["DCGM_FI_DEV_GPU_UTIL"]
    }

    # the status lines and the summary count the errors and name the endpoints' state
    assert "endpoints up" in out
    assert f"{server.url('/metrics')}: up" in out
    assert f"{server.url('/broken')}: down" in out and "last error: HTTP 500" in out
    assert f"{refused}: down" in out
    # failing endpoints back off: polled less often than the good one
    assert len(server.hits["/broken"]) < len(server.hits["/metrics"])


def test_a_failing_endpoint_is_retried_with_growing_delays(pipeline, served):
    server, _, _ = served
    run = Running(
        ScrapeCommand(),
        server.url("/broken"),
        "--interval",
        "100ms",
        "--max-backoff",
        "400ms",
        "--max-rounds",
        "5",
        "--no-progress",
    )
    with pytest.raises(AssertionError, match="no endpoint gave any telemetry"):
        run.join()
    hits = server.hits["/broken"]
    gaps = [b - a for a, b in itertools.pairwise(hits)]
    assert len(hits) == 5
    # 0.1, 0.2, 0.4, 0.4 (capped); loose lower bounds, the machine may be slow
    for gap, least in zip(gaps, [0.09, 0.18, 0.36, 0.36], strict=True):
        assert gap >= least, gaps
    assert "failure 5 in a row" in run.err.getvalue()


def test_one_round_per_endpoint_makes_one_job(pipeline, served):
    server, expected, _ = served
    run = Running(
        ScrapeCommand(),
        server.url("/metrics"),
        "--max-rounds",
        "1",
        "--job-span",
        "0",
        "--no-progress",
    )
    out = run.join()
    assert "1 job(s)" in out
    api = APIClient()
    job_id = out.split("last job ")[1].split()[0]
    job = api.get(f"/api/v1/ingest/jobs/{job_id}").json()
    samples = sum(len(v) for v in expected.values())
    assert (job["format"], job["rows_accepted"], job["rows_rejected"]) == (
        "prometheus",
        samples,
        0,
    )
    wait_for(lambda: api.get(f"/api/v1/ingest/jobs/{job_id}").json()["state"] == "done", 60, "done")
