"""The WebSocket protocol, through the real ASGI app, Redis channel layer and worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from timeparse.timestamps import format_timestamp
from tools.generate_sample import generate

TIMEOUT = 30
# Channels' consumers close stale DB connections on every message (token auth reads the DB).
pytestmark = pytest.mark.django_db(transaction=True)


def sample_csv(**kw: Any) -> bytes:
    return ("\n".join(generate(**kw)) + "\n").encode()


def rows_by_gpu(data: bytes) -> dict[str, set[tuple[str, str, float]]]:
    import csv
    import io

    from timeparse.timestamps import parse_timestamp

    out: dict[str, set[tuple[str, str, float]]] = {}
    for row in csv.DictReader(io.StringIO(data.decode())):
        ts = format_timestamp(parse_timestamp(row["timestamp"]))
        out.setdefault(row["uuid"], set()).add((ts, row["metric_name"], float(row["value"])))
    return out


def host_of(data: bytes) -> dict[str, str]:
    import csv
    import io

    return {r["uuid"]: r["Hostname"] for r in csv.DictReader(io.StringIO(data.decode()))}


def upload(data: bytes, cluster: str = "live") -> dict:
    response = APIClient().post(
        f"/api/v1/csv/upload?cluster={cluster}", data, content_type="text/csv"
    )
    assert response.status_code == 202, response.content
    return response.json()


async def connect(path: str = "/ws/telemetry/") -> WebsocketCommunicator:
    from telemetry_site.asgi import application

    comm = WebsocketCommunicator(application, path)
    connected, _ = await comm.connect(timeout=TIMEOUT)
    assert connected
    return comm


async def collect(comm: WebsocketCommunicator, expected: int) -> set[tuple[str, str, str, float]]:
    """Receive sample messages until `expected` samples came; fail on any duplicate."""
    got: set[tuple[str, str, str, float]] = set()
    while len(got) < expected:
        message = await comm.receive_json_from(timeout=TIMEOUT)
        assert message["type"] == "samples", message
        for gpu in message["gpus"]:
            for s in gpu["samples"]:
                item = (gpu["uuid"], s["timestamp"], s["metric_name"], s["value"])
                assert item not in got, f"sample received twice: {item}"
                got.add(item)
    return got


def test_subscriber_gets_exactly_its_gpu_samples(pipeline):
    data = sample_csv(hosts=2, gpus_per_host=2, samples=3, seed=11)
    expected = rows_by_gpu(data)
    target = sorted(expected)[0]

    async def scenario() -> None:
        comm = await connect()
        await comm.send_json_to({"action": "subscribe", "gpus": [target], "id": 7})
        ack = await comm.receive_json_from(timeout=TIMEOUT)
        assert ack["type"] == "ack" and ack["id"] == 7
        assert ack["counts"] == {"gpus": 1, "hosts": 0, "clusters": 0}
        await comm.send_json_to({"action": "list"})
        listed = await comm.receive_json_from(timeout=TIMEOUT)
        assert listed["subscriptions"]["gpus"] == [{"name": target, "metrics": None}]
        await sync_to_async(upload)(data)
        got = await collect(comm, len(expected[target]))
        assert got == {(target, *s) for s in expected[target]}
        assert await comm.receive_nothing(timeout=1)
        await comm.disconnect()

    asyncio.run(scenario())


def test_host_and_gpu_subscriptions_overlap_without_duplicates_and_metric_filter(pipeline):
    data = sample_csv(hosts=2, gpus_per_host=2, samples=2, seed=12, cluster_prefix="ovl")
    expected = rows_by_gpu(data)
    hosts = host_of(data)
    gpu = next(u for u in sorted(expected) if hosts[u] == "ovl-02")

    async def scenario() -> None:
        comm = await connect()
        await comm.send_json_to(
            {"action": "subscribe", "hosts": ["ovl-01"], "metrics": ["DCGM_FI_DEV_GPU_TEMP"]}
        )
        await comm.receive_json_from(timeout=TIMEOUT)
        await comm.send_json_to(
            {"action": "subscribe", "gpus": [gpu], "metrics": ["DCGM_FI_DEV_GPU_TEMP"]}
        )
        await comm.receive_json_from(timeout=TIMEOUT)
        await sync_to_async(upload)(data)
        # GPUs of host ovl-01 plus the one GPU, temperature only, each sample once
        want = {
            (uuid, *sample)
            for uuid, samples in expected.items()
            if uuid == gpu or hosts[uuid] == "ovl-01"
            for sample in samples
            if sample[1] == "DCGM_FI_DEV_GPU_TEMP"
        }
        got = await collect(comm, len(want))
        assert got == want
        assert await comm.receive_nothing(timeout=1)
        await comm.disconnect()

    asyncio.run(scenario())


def test_malformed_commands_get_errors_and_the_connection_stays_open(live_services):
    async def scenario() -> None:
        comm = await connect()
        for bad, words in [
            ("{not json", "not valid JSON"),
            ('["a list"]', "JSON object"),
            ('{"action": "dance"}', "unknown action"),
            ('{"action": "subscribe"}', "at least one"),
            ('{"action": "subscribe", "gpus": [1, 2]}', "list of non-empty strings"),
        ]:
            await comm.send_to(text_data=bad)
            reply = await comm.receive_json_from(timeout=TIMEOUT)
            assert reply["type"] == "error" and words in reply["error"], (bad, reply)
        await comm.send_json_to({"action": "subscribe", "clusters": ["c1"], "id": "x"})
        ack = await comm.receive_json_from(timeout=TIMEOUT)
        assert ack["type"] == "ack" and ack["id"] == "x" and ack["counts"]["clusters"] == 1
        await comm.send_json_to({"action": "unsubscribe", "clusters": ["c1"]})
        ack = await comm.receive_json_from(timeout=TIMEOUT)
        assert ack["counts"]["clusters"] == 0 and "subscriptions" not in ack
        await comm.disconnect()

    asyncio.run(scenario())


def test_gpu_shortcut_route_subscribes_on_connect(live_services):
    async def scenario() -> None:
        comm = await connect("/ws/gpus/GPU-abc/")
        ack = await comm.receive_json_from(timeout=TIMEOUT)
        assert ack["type"] == "ack" and ack["counts"]["gpus"] == 1
        await comm.send_json_to({"action": "list"})
        listed = await comm.receive_json_from(timeout=TIMEOUT)
        assert listed["subscriptions"]["gpus"] == [{"name": "GPU-abc", "metrics": None}]
        await comm.disconnect()

    asyncio.run(scenario())


def test_foreign_browser_origin_is_refused(live_services, settings):
    settings.ALLOWED_HOSTS = ["dashboard.example"]

    async def scenario() -> None:
        from telemetry_site.asgi import application

        comm = WebsocketCommunicator(
            application, "/ws/telemetry/", headers=[(b"origin", b"http://evil.example")]
        )
        connected, _ = await comm.connect(timeout=TIMEOUT)
        assert not connected
        ok = WebsocketCommunicator(
            application, "/ws/telemetry/", headers=[(b"origin", b"http://dashboard.example")]
        )
        connected, _ = await ok.connect(timeout=TIMEOUT)
        assert connected
        await ok.disconnect()

    asyncio.run(scenario())


def test_slow_client_loses_oldest_messages_and_is_told(live_services, settings):
    from apps.read.live import gpu_payload, group_name

    settings.LIVE_CLIENT_BUFFER = 2

    async def scenario() -> None:
        from channels.layers import get_channel_layer

        comm = await connect()
        await comm.send_json_to({"action": "subscribe", "clusters": ["slow"]})
        await comm.receive_json_from(timeout=TIMEOUT)
        layer = get_channel_layer()
        gpu = gpu_payload({"uuid": "GPU-s", "host": "h", "cluster": "slow"}, [(0, "m", 1.0)])
        for i in range(6):
            await layer.group_send(
                group_name("cluster", "slow"),
                {"type": "telemetry.samples", "chunk": f"c{i}", "gpus": [gpu]},
            )
        received = []
        total_dropped = 0
        while len(received) + total_dropped < 6:
            msg = await comm.receive_json_from(timeout=TIMEOUT)
            received.append(msg["chunk"])
            total_dropped += msg["dropped"]
        assert len(received) + total_dropped == 6
        assert received == sorted(received)
        await comm.disconnect()

    asyncio.run(scenario())
