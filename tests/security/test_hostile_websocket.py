"""WebSocket attacks on a real gateway and the real Redis: frames, subscription floods, drops.

Redis is asked directly (PUBSUB CHANNELS) whether a connection's groups are gone, and the
gateway's /metrics whether `telemetry_websocket_clients` came back to 0. Issue 14, point 5-6.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
import redis
import requests

from bench.attacks import (
    nested_frame,
    poll,
    subscribe_frame,
    ws_abrupt,
    ws_frames,
)
from tests.security.conftest import make_token, start


def channels(gateway) -> int:
    return len(redis.Redis.from_url(gateway.redis_url).pubsub_channels())


def clients_gauge(gateway) -> float:
    text = requests.get(f"{gateway.url}/metrics", timeout=10).text
    match = re.search(r"^telemetry_websocket_clients (\S+)$", text, re.MULTILINE)
    assert match, "the gauge is missing from /metrics"
    return float(match.group(1))


def test_deeply_nested_frames_get_an_error_frame_and_the_connection_lives_on(hostile_gateway):
    baseline = channels(hostile_gateway)
    frames = [
        subscribe_frame(0, 50),
        nested_frame(100_000),  # over the frame limit
        nested_frame(30_000),  # under it, but nested past any parser's stack
        '{"action": "list", "id": ' + nested_frame(500) + "}",  # not echoed back
        json.dumps({"action": "list", "id": 3}),
    ]
    out = ws_frames(hostile_gateway.port, frames)
    answers = [json.loads(a) if a.startswith("{") else a for a in out.answers]
    assert answers[0]["type"] == "ack" and answers[0]["counts"]["gpus"] == 50
    assert answers[1]["type"] == "error" and "LIVE_MAX_FRAME_BYTES" in answers[1]["error"]
    assert answers[2]["type"] == "error" and "not valid JSON" in answers[2]["error"]
    assert answers[3]["type"] == "error" and "'id'" in answers[3]["error"]
    assert answers[4]["type"] == "ack" and answers[4]["id"] == 3
    assert len(answers[4]["subscriptions"]["gpus"]) == 50
    assert poll(lambda: channels(hostile_gateway) <= baseline, 10), channels(hostile_gateway)
    assert poll(lambda: clients_gauge(hostile_gateway) == 0, 10)


def test_one_connection_cannot_hold_more_than_the_cap(hostile_gateway):
    baseline = channels(hostile_gateway)
    frames = [subscribe_frame(i * 300, 300) for i in range(10)]  # 3,000 targets asked for
    out = ws_frames(hostile_gateway.port, frames)
    answers = [json.loads(a) for a in out.answers]
    assert [a["type"] for a in answers] == ["ack"] * 3 + ["error"] * 7
    assert "LIVE_MAX_SUBSCRIPTIONS" in answers[3]["error"]
    assert answers[2]["counts"]["gpus"] == 900
    assert max(len(a) for a in out.answers) < 1000, "an acknowledgement echoed a list"
    assert poll(lambda: channels(hostile_gateway) <= baseline, 10)


def test_a_dropped_connection_leaves_no_subscription_in_redis(hostile_gateway):
    baseline = channels(hostile_gateway)
    out = ws_abrupt(hostile_gateway.port, [subscribe_frame(0, 250), subscribe_frame(250, 250)])
    assert json.loads(out.answers[-1])["counts"]["gpus"] == 500
    assert poll(lambda: channels(hostile_gateway) <= baseline, 15), channels(hostile_gateway)
    assert poll(lambda: clients_gauge(hostile_gateway) == 0, 10)


def test_the_websocket_token_stays_out_of_the_access_log(worker, etcd, redis_server, tmp_path):
    token = make_token(etcd.url, redis_server.url)
    gateway = start(
        tmp_path, etcd.url, redis_server.url, log_level="info", TELEMETRY_READ_AUTH="true"
    )
    try:
        from websockets.sync.client import connect

        with connect(f"ws://127.0.0.1:{gateway.port}/ws/telemetry/?token={token}") as ws:
            ws.send(json.dumps({"action": "list"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "ack"
        requests.get(f"{gateway.url}/health?token={token}", timeout=10)
        assert poll(lambda: "token=[redacted]" in gateway.log(), 10), gateway.log()[-2000:]
        assert token not in gateway.log()
    finally:
        gateway.service.stop()


@pytest.mark.django_db(transaction=True)  # consumers close old DB connections per message
def test_a_consumer_that_crashes_still_leaves_its_groups(live_services, monkeypatch):
    """A bug raising inside the consumer (here: filtering an event) ends the connection;
    its Redis subscriptions and its count in the gauge go with it."""
    import asyncio

    from channels.layers import get_channel_layer
    from channels.testing import WebsocketCommunicator
    from django.conf import settings

    from apps.read import live
    from observability.metrics import WEBSOCKET_CLIENTS
    from telemetry_site.asgi import application

    client = redis.Redis.from_url(
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]["address"]
    )
    gpu = f"GPU-crash-{uuid.uuid4().hex}"
    group = live.group_name("gpu", gpu)

    def broken(self, event):
        raise RuntimeError("a bug in the consumer")

    async def scenario() -> None:
        clients = WEBSOCKET_CLIENTS._value.get()
        comm = WebsocketCommunicator(application, "/ws/telemetry/")
        assert (await comm.connect(timeout=10))[0]
        await comm.send_json_to({"action": "subscribe", "gpus": [gpu]})
        assert (await comm.receive_json_from(timeout=10))["type"] == "ack"
        assert len(client.pubsub_channels(f"*{group}")) == 1  # the layer prefixes the name
        assert WEBSOCKET_CLIENTS._value.get() == clients + 1
        monkeypatch.setattr(live.Subscriptions, "filter", broken)
        event = {"type": live.EVENT_TYPE, "chunk": "c", "gpus": []}
        await get_channel_layer().group_send(group, event)
        with pytest.raises(RuntimeError, match="a bug in the consumer"):
            await comm.wait(timeout=10)
        assert client.pubsub_channels(f"*{group}") == []
        assert WEBSOCKET_CLIENTS._value.get() == clients

    asyncio.run(scenario())
