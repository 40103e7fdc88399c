"""A chunk task's message, as the broker holds it: its shown arguments name the chunk and its
job, never a repr of the payload's bytes; the payload itself goes whole."""

from __future__ import annotations

from array import array

import pytest
from celery.signals import before_task_publish

from apps.ingest.chunking import Chunk, GpuBuffer
from apps.ingest.jobs import PERSIST_TASK, enqueue
from store import kv
from store.keys import Keys
from tests.helpers import wait_for
from workers import payload


@pytest.mark.parametrize("version", [2, 1])
def test_a_chunk_task_shows_its_job_and_chunk_and_carries_the_whole_payload(
    pipeline, settings, version
):
    """In the payload version CHUNK_PAYLOAD_VERSION names (1 while older workers still run),
    which a worker stores either way."""
    settings.CHUNK_PAYLOAD_VERSION = version
    facts = {"uuid": "GPU-7", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    gpu = GpuBuffer(facts, array("q", [1_000, 2_000]), array("i", [0, 0]), array("d", [1.5, 2.5]))
    chunk = Chunk(3, ["DCGM_FI_DEV_GPU_UTIL"], [gpu])
    published: list[tuple[dict, object]] = []

    def seen(sender=None, headers=None, body=None, **_):
        if sender == PERSIST_TASK:
            published.append((headers, body))

    before_task_publish.connect(seen, weak=False)
    try:
        enqueue(chunk, pipeline, f"job-{version}", upload=1)
    finally:
        before_task_publish.disconnect(seen)
    [(headers, body)] = published
    assert headers["argsrepr"] == f"(chunk 3 of job job-{version}: 2 samples)"
    sent = body[0][0]
    assert sent["v"] == version and ("z" in sent) == (version == 2)
    assert payload.decode(sent).batches[0].samples.value.tolist() == [1.5, 2.5]
    # and a worker stores it
    wait_for(lambda: kv.get(Keys(pipeline).chunk(f"job-{version}", 3)), 30, "chunk 3 stored")
