"""etcd unreachable for a whole minute: tasks wait and retry, the API answers 503, and
everything is stored exactly once when etcd is back.

tests/workers/test_etcd_outage.py covers a short outage; this one holds etcd down (killed
with SIGKILL, not stopped cleanly) for OUTAGE_S seconds, long enough for the tasks'
exponential backoff to reach its 30 s cap, checks the API all along, and reads the
worker's log to prove the retries happened throughout the outage.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from datetime import datetime

from rest_framework.test import APIClient

from tests.api.api_support import expected_samples, generated, upload
from tests.faults.conftest import Lab, assert_stored_exactly, log_text, task_events
from tests.helpers import wait_for

OUTAGE_S = 60.0
RETRY_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Task workers\.persist_chunk\[([0-9a-f-]+)\] "
    r"retry: Retry in",
    re.MULTILINE,
)


def _assert_unavailable(api: APIClient, job_id: str) -> None:
    for path in ("/api/v1/gpus", f"/api/v1/ingest/jobs/{job_id}", "/api/v1/clusters"):
        down = api.get(path)
        assert down.status_code == 503, (path, down.content)
        assert "etcd is unavailable" in down.json()["detail"], down.content
        assert down["Retry-After"]


def _retries(log: str) -> dict[str, list[float]]:
    """Wall-clock times of each task's retries, from the worker's log."""
    out: dict[str, list[float]] = defaultdict(list)
    for stamp, task in RETRY_LINE.findall(log):
        out[task].append(datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp())
    return out


def _successes(events: list[tuple[str, str]]) -> int:
    return sum(e == "succeeded" for _, e in events)


def test_a_minute_without_etcd_delays_ingest_and_loses_nothing(lab: Lab):
    lab.settings.INGEST_CHUNK_ROWS = 200
    lab.start_etcd()
    lab.start_redis()
    api = APIClient()
    data = generated(hosts=2, gpus_per_host=4, samples=15, seed=61)
    job = lab.upload(data, "before-outage.csv")
    chunks = job["chunks_expected"]
    assert chunks >= 5

    # The chunks are queued (no worker yet) when etcd dies.
    lab.etcd[0].kill()
    down_at = time.time()
    _assert_unavailable(api, job["id"])
    refused = upload(api, generated(hosts=1, gpus_per_host=1, samples=2, seed=62), "late.csv")
    assert refused.status_code == 503, refused.content
    assert "etcd is unavailable" in refused.json()["detail"]

    worker = lab.start_worker(concurrency=2)
    # Hold the outage for the whole minute, checking the API answers 503 throughout.
    while time.time() - down_at < OUTAGE_S:
        _assert_unavailable(api, job["id"])
        time.sleep(min(5.0, max(0.0, OUTAGE_S - (time.time() - down_at))))
    lab.restart_etcd()
    up_at = time.time()

    wait_for(
        lambda: api.get(f"/api/v1/ingest/jobs/{job['id']}").status_code == 200,
        deadline_s=30,
        what="the API answering again after etcd came back",
    )
    # The longest wait is one backoff step (at most 30 s) plus the write.
    lab.wait_chunks_done(job["id"], chunks, deadline_s=45)
    stored_at = time.time()

    # Every chunk's task retried while etcd was down, again and again until it was back
    # (the backoff is capped at 30 s, so each retried within the outage's last 35 s).
    retries = _retries(log_text(worker))
    assert len(retries) == chunks, retries.keys()
    for task, times in retries.items():
        assert len(times) >= 3, (task, times)
        assert down_at <= times[0] < down_at + 15, (task, times, down_at)
        assert any(up_at - 35 < t for t in times), (task, times, up_at)
    # ...and each then succeeded exactly once.
    wait_for(
        lambda: _successes(task_events(worker)) >= chunks,
        deadline_s=10,
        what="every task's success in the worker log",
    )
    events = task_events(worker)
    assert _successes(events) == chunks
    for task in retries:
        assert [e for t, e in events if t == task].count("succeeded") == 1

    assert_stored_exactly(lab.root, expected_samples(data))
    done = lab.job(job["id"])
    rows = 2 * 4 * 15 * 10
    assert (done["state"], done["rows_accepted"], done["chunks_done"]) == ("done", rows, chunks)
    print(
        f"outage {up_at - down_at:.0f}s; {sum(len(t) for t in retries.values())} retries; "
        f"all stored {stored_at - up_at:.1f}s after etcd came back"
    )
