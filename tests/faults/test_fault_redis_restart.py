"""Redis restarted with persistence on (appendonly yes): queued chunks survive.

Chunks are enqueued while no worker runs, Redis is stopped (SIGTERM: it flushes its
append-only file and exits) and started again on the same port and data directory, and
only then does a worker start: it finds every chunk in the queue and stores it. The
contrast: without persistence the same restart empties the queue, and the job never
completes (docs/RELIABILITY.md).
"""

from __future__ import annotations

from observability.health import queue_depth
from tests.api.api_support import expected_samples, generated
from tests.faults.conftest import Lab, assert_stored_exactly, task_events


def test_queued_chunks_survive_a_redis_restart_with_appendonly(lab: Lab):
    lab.settings.INGEST_CHUNK_ROWS = 300
    lab.start_etcd()
    redis = lab.start_redis(appendonly=True)
    data = generated(hosts=2, gpus_per_host=4, samples=20, seed=81)
    job = lab.upload(data, "queued.csv")
    chunks = job["chunks_expected"]
    assert chunks >= 5
    assert queue_depth() == chunks

    lab.restart_redis(appendonly=True)
    assert lab.redis is not None and lab.redis.proc.pid != redis.proc.pid
    assert lab.redis.port == redis.port
    assert queue_depth() == chunks  # read back from the append-only file
    assert lab.chunks_done(job["id"]) == 0

    worker = lab.start_worker(concurrency=2)
    lab.wait_chunks_done(job["id"], chunks, deadline_s=30)
    assert queue_depth() == 0
    assert_stored_exactly(lab.root, expected_samples(data))
    assert lab.job(job["id"])["state"] == "done"
    assert sum(e == "received" for _, e in task_events(worker)) == chunks


def test_without_persistence_a_redis_restart_loses_the_queued_chunks(lab: Lab):
    lab.start_etcd()
    lab.start_redis(appendonly=False)
    job = lab.upload(generated(hosts=1, gpus_per_host=2, samples=5, seed=82), "lost.csv")
    assert queue_depth() == job["chunks_expected"] > 0
    lab.restart_redis(appendonly=False)
    assert queue_depth() == 0
    # The job is saved and says what it expects; nothing will ever complete it.
    status = lab.job(job["id"])
    assert (status["state"], status["chunks_done"]) == ("running", 0)
