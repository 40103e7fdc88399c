"""A job whose parsing process died ends as failed, with the counts it reached."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from rest_framework.test import APIClient

from store import default_keys, kv
from tests.api.api_support import generated, keys_under
from tests.conftest import REPO, service_env
from tests.helpers import wait_for


def saved_job() -> dict:
    """The job document as the ingesting process last saved it ({} before it was)."""
    items = kv.get_prefix(default_keys().jobs_prefix())
    return json.loads(items[0].value) if items else {}


def test_a_job_whose_ingest_process_was_killed_ends_failed(pipeline, etcd, redis_server, settings):
    data = generated(hosts=1, gpus_per_host=2, samples=30, seed=12)  # 600 rows
    lines = data.decode().splitlines(keepends=True)
    env = service_env(
        etcd.url,
        redis_server.url,
        ETCD_PREFIX=pipeline,
        INGEST_CHUNK_ROWS="50",
        INGEST_BUFFER_ROWS="50",
        INGEST_JOB_HEARTBEAT="50ms",
        # the row parser reads as the bytes come (the columnar one waits for 8 MiB blocks);
        # the heartbeat is the Job's, the same for both
        INGEST_PARSER="rows",
    )
    argv = [sys.executable, "manage.py", "ingest", "-", "--no-progress"]
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdin=subprocess.PIPE)
    try:
        # The heartbeat saves only while rows come in: feed the first half of the file a few
        # rows at a time, paced past the heartbeat, until the counts and a chunk are stored.
        proc.stdin.write(lines[0].encode())
        pending = iter(range(1, 301, 10))
        deadline = time.monotonic() + 180
        while not (saved_job().get("chunks_expected") and keys_under("chunks")):
            assert time.monotonic() < deadline, "the counts were never saved mid-parse"
            first = next(pending, None)
            if first is not None:
                proc.stdin.write("".join(lines[first : first + 10]).encode())
                proc.stdin.flush()
            time.sleep(0.06)  # pacing the input past INGEST_JOB_HEARTBEAT (50 ms)
    finally:
        proc.kill()  # the process dies mid-parse: nothing more is saved
        proc.wait(timeout=30)
    [job_key] = keys_under("jobs")
    job_id = job_key.rsplit("/", 1)[-1]
    api = APIClient()
    assert api.get(f"/api/v1/ingest/jobs/{job_id}").json()["state"] == "running"

    settings.INGEST_JOB_STALE = 1.0
    body = wait_for(
        lambda: (b := api.get(f"/api/v1/ingest/jobs/{job_id}").json())["state"] == "failed" and b,
        30,
        "the stale job shown failed",
    )
    assert "stopped reporting" in body["error"] and "INGEST_JOB_STALE" in body["error"]
    assert 0 < body["rows_read"] <= 300 and body["rows_accepted"] == body["rows_read"]
    assert body["chunks_expected"] >= 1 and body["chunks_done"] >= 1
