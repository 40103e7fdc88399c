"""`manage.py stream` as its own process: SIGTERM finishes the batch in hand and exits 0."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

from rest_framework.test import APIClient

from tests.conftest import REPO, service_env
from tests.helpers import wait_for, wait_job_done
from tests.sources.sources_support import stored_count
from tools.generate_sample import write

BATCH = 400


def test_sigterm_finishes_the_batch_in_hand_and_exits_0(pipeline, etcd, redis_server, tmp_path):
    path = tmp_path / "long.csv"
    rows = write(path, hosts=4, gpus_per_host=5, samples=60, seed=9)  # 12,000 rows: 30 batches
    argv = [sys.executable, "manage.py", "stream", "--file", str(path)]
    argv += ["--batch-size", str(BATCH), "--interval", "150ms", "--timestamps", "source"]
    argv += ["--no-loop", "--no-progress", "--job-span", "1h"]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        env=service_env(etcd.url, redis_server.url, ETCD_PREFIX=pipeline),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    api = APIClient()
    try:
        wait_for(lambda: stored_count(api) >= 2 * BATCH, 90, "two batches stored")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"{out}\n{err}"
    done = re.search(r"stream: stopped: (\d+) batches, (\d+) rows sent", out)
    assert done, f"{out}\n{err}"
    batches, sent = int(done[1]), int(done[2])
    assert sent == batches * BATCH  # whole batches only
    assert 2 * BATCH <= sent < rows  # it did stop early

    job = wait_job_done(api, re.search(r"last job (\S+)", out)[1])
    assert job["rows_accepted"] == sent
    assert stored_count(api) == sent  # every batch sent is stored, nothing more
