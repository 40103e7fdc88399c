"""End to end: two gateway processes, a WebSocket client on each, an upload to one of them."""

from __future__ import annotations

import csv
import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from websockets.sync.client import connect

from tests.conftest import start_gateway
from timeparse.timestamps import format_timestamp, parse_timestamp
from tools.generate_sample import generate


@pytest.fixture
def two_gateways(worker, etcd, redis_server, tmp_path: Path) -> Iterator[list[int]]:
    prefix = f"/e2e-{uuid.uuid4().hex[:10]}"
    started = []
    try:
        for _ in range(2):
            started.append(start_gateway(tmp_path, etcd.url, redis_server.url, ETCD_PREFIX=prefix))
        yield [svc.port for svc in started]
    finally:
        for svc in started:
            svc.stop()


def expected_rows(data: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data)))


def receive_until(ws, count: int) -> list[tuple[str, str, str, float]]:
    got: list[tuple[str, str, str, float]] = []
    while len(got) < count:
        message = json.loads(ws.recv(timeout=30))
        assert message["type"] == "samples", message
        for gpu in message["gpus"]:
            got += [
                (gpu["uuid"], s["timestamp"], s["metric_name"], s["value"]) for s in gpu["samples"]
            ]
    return got


def test_clients_on_both_gateways_get_exactly_their_samples(two_gateways):
    port_a, port_b = two_gateways
    data = (
        "\n".join(generate(hosts=3, gpus_per_host=2, samples=4, seed=21, cluster_prefix="e2e"))
        + "\n"
    )
    rows = expected_rows(data)
    gpu = rows[0]["uuid"]
    host = next(r["Hostname"] for r in rows if r["Hostname"] != rows[0]["Hostname"])

    def sample(r: dict[str, str]) -> tuple[str, str, str, float]:
        ts = format_timestamp(parse_timestamp(r["timestamp"]))
        return (r["uuid"], ts, r["metric_name"], float(r["value"]))

    want_a = sorted(sample(r) for r in rows if r["uuid"] == gpu)
    want_b = sorted(sample(r) for r in rows if r["Hostname"] == host)

    with (
        connect(f"ws://127.0.0.1:{port_a}/ws/telemetry/") as ws_a,
        connect(f"ws://127.0.0.1:{port_b}/ws/telemetry/") as ws_b,
    ):
        ws_a.send(json.dumps({"action": "subscribe", "gpus": [gpu]}))
        ws_b.send(json.dumps({"action": "subscribe", "hosts": [host]}))
        assert json.loads(ws_a.recv(timeout=30))["type"] == "ack"
        assert json.loads(ws_b.recv(timeout=30))["type"] == "ack"
        response = requests.post(
            f"http://127.0.0.1:{port_a}/api/v1/csv/upload",
            files={"file": ("e2e.csv", data.encode())},
            data={"cluster": "e2e"},
            timeout=60,
        )
        assert response.status_code == 202, response.text
        got_a = receive_until(ws_a, len(want_a))
        got_b = receive_until(ws_b, len(want_b))
        assert sorted(got_a) == want_a  # exactly: nothing else, nothing twice
        assert sorted(got_b) == want_b
        for ws in (ws_a, ws_b):
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1)
