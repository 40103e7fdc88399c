"""A worker killed with SIGKILL in the middle of a chunk: the chunk is done again, once.

Two kills: the pool process executing the chunk (the worker's main process notices,
~5 s later, and the task being `reject_on_worker_lost`, puts the message back), and
the whole worker, main process included (nobody is left to put it back: the message
stays unacknowledged in Redis until the visibility timeout passes, then a second worker
takes it).

How "in the middle" is made deterministic without a hook in the code: chunks are large
(30 GPUs, 60 s blocks, so about 600 blocks and several etcd transactions per chunk, the
chunk marker in the last; ~0.4 s of writing), the chunks are queued before the worker
starts, and the test polls etcd until it sees blocks that no chunk marker accounts for,
i.e. a chunk whose write has started and not finished, and kills at that moment. The
poll counts blocks first and markers second, so a chunk finishing between the two reads
can only make it miss a moment, never kill outside one. If every chunk finished before
the test saw one half-written, it uploads new data and tries again.
"""

from __future__ import annotations

import time

from store import kv
from tests.api.api_support import Expected, expected_samples, generated
from tests.faults.conftest import (
    Lab,
    assert_stored_exactly,
    child_pids,
    chunk_markers,
    event_times,
    log_text,
    sigkill,
    task_events,
)
from tests.helpers import wait_for
from tools import services

WINDOW_S = 60  # 6 timestamps per block: many blocks per chunk
HOSTS, GPUS_PER_HOST = 12, 10
SAMPLES = 120  # 20 minutes at 10 s: 20 blocks per GPU
CHUNK_ROWS = 30 * 8 * SAMPLES  # 30 GPUs of 8 wide metrics per chunk: 4-5 chunks
VISIBILITY_S = 8
ATTEMPTS = 3


def _setup(lab: Lab) -> None:
    lab.use_window(WINDOW_S)
    lab.settings.INGEST_CHUNK_ROWS = CHUNK_ROWS
    lab.start_etcd()
    lab.start_redis()


def _queue(lab: Lab, seed: int) -> tuple[dict, Expected]:
    data = generated(
        hosts=HOSTS, gpus_per_host=GPUS_PER_HOST, samples=SAMPLES, seed=seed, fmt="wide"
    )
    job = lab.upload(data, f"kill-{seed}.csv")
    assert job["chunks_expected"] >= 4, job
    return job, expected_samples(data)


def _half_written(lab: Lab, job_id: str) -> tuple[int, int] | None:
    """(blocks stored, blocks covered by markers) while a chunk of the job is half-written."""
    blocks = kv.count_prefix(f"{lab.root}/blocks/")
    markers = chunk_markers(lab.root, job_id)
    covered = sum(m["blocks"] for m in markers.values())
    return (blocks, covered) if blocks > covered else None


def _catch_mid_chunk(lab: Lab, job_id: str, chunks: int, deadline_s: float = 30) -> tuple | None:
    """Poll until a chunk is half-written (returns the counts) or the job is done (None)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        caught = _half_written(lab, job_id)
        if caught:
            return caught
        if lab.chunks_done(job_id) == chunks:
            return None
        time.sleep(0.005)
    raise AssertionError(f"job {job_id} neither half-written nor done within {deadline_s}s")


def _running_task(worker: services.Service) -> str:
    """The task the worker received last and has not finished (concurrency 1)."""
    events = task_events(worker)
    finished = {t for t, e in events if e == "succeeded"}
    running = [t for t, e in events if e == "received" and t not in finished]
    assert running, events
    return running[-1]


def _finished(worker: services.Service, task: str) -> list[str] | None:
    """The task's events in the worker log once it succeeded there, else None."""
    events = [e for t, e in task_events(worker) if t == task]
    return events if events and events[-1] == "succeeded" else None


def test_pool_process_killed_mid_chunk_redoes_the_chunk_once(lab: Lab):
    _setup(lab)
    uploads: list[tuple[dict, Expected]] = []
    worker = None
    caught = None
    for attempt in range(ATTEMPTS):
        job, expected = _queue(lab, seed=41 + attempt)
        uploads.append((job, expected))
        if worker is None:
            worker = lab.start_worker(concurrency=1)
            # found before the poll, not after: a scan of /proc between catching a chunk
            # half-written and the kill gave the chunk time to finish (the kill then hit
            # the process between two tasks)
            (child,) = child_pids(worker.proc.pid)
        caught = _catch_mid_chunk(lab, job["id"], job["chunks_expected"])
        if caught:
            sigkill(child)
            killed_task = _running_task(worker)
            break
    assert caught, f"no chunk caught half-written in {ATTEMPTS} uploads"
    assert worker is not None

    for job, _ in uploads:
        lab.wait_chunks_done(job["id"], job["chunks_expected"], deadline_s=60)
    # The same message came back (same task id) and was then done, once.
    redone = wait_for(
        lambda: _finished(worker, killed_task), deadline_s=30, what="the killed chunk's redo"
    )
    assert redone == ["received", "received", "succeeded"]
    log = log_text(worker)
    assert "WorkerLostError" in log and "signal 9 (SIGKILL)" in log, log[-3000:]
    blocks, covered = caught
    print(f"killed with {blocks - covered} blocks of an unfinished chunk in etcd")

    merged: Expected = {}
    for _, expected in uploads:
        merged.update(expected)  # seeds give distinct GPUs
    assert len(merged) == HOSTS * GPUS_PER_HOST * len(uploads)
    assert_stored_exactly(lab.root, merged, get_json=None)
    for job, _ in uploads:
        assert lab.job(job["id"])["state"] == "done"


def test_whole_worker_killed_mid_chunk_its_chunk_is_taken_by_another(lab: Lab):
    _setup(lab)
    uploads: list[tuple[dict, Expected]] = []
    caught = None
    first = None
    for attempt in range(ATTEMPTS):
        job, expected = _queue(lab, seed=51 + attempt)
        uploads.append((job, expected))
        first = first or lab.start_worker(
            concurrency=1, CELERY_VISIBILITY_TIMEOUT=f"{VISIBILITY_S}s"
        )
        caught = _catch_mid_chunk(lab, job["id"], job["chunks_expected"])
        if caught:
            first.kill()  # SIGKILL to the main process and its pool, together
            killed_at = time.monotonic()
            killed_task = _running_task(first)
            break
    assert caught, f"no chunk caught half-written in {ATTEMPTS} uploads"
    job, _ = uploads[-1]
    stuck = lab.chunks_done(job["id"])
    assert stuck < job["chunks_expected"]

    second = lab.start_worker(concurrency=1, CELERY_VISIBILITY_TIMEOUT=f"{VISIBILITY_S}s")
    for job, _ in uploads:
        lab.wait_chunks_done(job["id"], job["chunks_expected"], deadline_s=60)
    redone = wait_for(
        lambda: _finished(second, killed_task), deadline_s=30, what="the killed chunk's redo"
    )
    took = time.monotonic() - killed_at
    assert redone == ["received", "succeeded"]
    # Redelivered once the visibility timeout had passed since the first delivery.
    (first_delivery,) = event_times(first, killed_task, "received")
    (second_delivery,) = event_times(second, killed_task, "received")
    assert second_delivery - first_delivery >= VISIBILITY_S - 0.1
    print(f"the killed worker's chunk was stored {took:.1f}s after the kill")

    merged: Expected = {}
    for _, expected in uploads:
        merged.update(expected)
    assert_stored_exactly(lab.root, merged, get_json=None)
