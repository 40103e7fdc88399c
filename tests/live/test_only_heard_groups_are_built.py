"""A stored chunk's live payloads are built and published only for the groups some gateway
subscribes to: Redis (PUBSUB NUMSUB) is asked, through the real pub/sub channel layer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from channels.layers import channel_layers, get_channel_layer

from apps.read import live
from store.codec import samples_from_rows
from store.write import GpuBatch

GPUS = {"GPU-a1": "host-a", "GPU-a2": "host-a", "GPU-b1": "host-b"}


def batches(cluster: str) -> list[GpuBatch]:
    rows = [(1_700_000_000_000 + i * 1000, "DCGM_FI_DEV_GPU_UTIL", float(i)) for i in range(3)]
    return [
        GpuBatch({"uuid": uuid, "host": host, "cluster": cluster}, samples_from_rows(rows))
        for uuid, host in GPUS.items()
    ]


def uuids(event: dict) -> set[str]:
    return {gpu["uuid"] for gpu in event["gpus"]}


async def listening(group: str, cluster: str) -> dict[str, dict]:
    """chunk_to_publish while a channel of this process's layer is in `group`."""
    layer = get_channel_layer()
    channel = await layer.new_channel()
    await layer.group_add(group, channel)
    try:
        # the layer's SUBSCRIBE and our NUMSUB travel on two connections: poll, with a deadline
        deadline = time.monotonic() + 10
        while not (events := live.chunk_to_publish("job:1", batches(cluster))):
            assert time.monotonic() < deadline, f"Redis never showed a subscriber of {group}"
            await asyncio.sleep(0.02)
        return events
    finally:
        await layer.group_discard(group, channel)
        await layer.flush()


@pytest.fixture
def fresh_layer(live_services: None) -> Iterator[None]:
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


def test_nothing_is_built_when_no_gateway_listens(fresh_layer):
    assert live.chunk_to_publish("job:1", batches("quiet")) == {}


def test_a_host_subscriber_gets_its_hosts_gpus_and_nothing_else_is_built(fresh_layer):
    host_a = live.group_name("host", "host-a")
    events = asyncio.run(listening(host_a, "hosts"))
    assert set(events) == {host_a}
    assert uuids(events[host_a]) == {"GPU-a1", "GPU-a2"}


def test_a_cluster_subscriber_gets_every_gpu_of_the_chunk(fresh_layer):
    cluster = live.group_name("cluster", "whole")
    events = asyncio.run(listening(cluster, "whole"))
    assert set(events) == {cluster}
    assert uuids(events[cluster]) == set(GPUS)


@pytest.mark.parametrize("address", ["redis://127.0.0.1:1/0", "nonsense://nowhere"])
def test_when_redis_cannot_tell_every_group_is_published(fresh_layer, settings, address):
    hosts = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"]
    settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = [{"address": address}]
    try:
        events = live.chunk_to_publish("job:1", batches("dark"))
    finally:
        settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"] = hosts
    expected = {
        g
        for uuid, host in GPUS.items()
        for g in live.groups_of({"uuid": uuid, "host": host, "cluster": "dark"})
    }
    assert set(events) == expected
