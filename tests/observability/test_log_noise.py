"""Logs a person reads: each line once, no empty `[job=]`, no per-request warning from
streamed answers, and an `ingest --wait` on a terminal whose log lines sit above its
progress bars instead of running through them."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
import uuid
from pathlib import Path

import requests

from tests.api.api_support import generated
from tests.conftest import REPO, service_env
from tests.helpers import wait_for
from tools import processes


def test_a_debug_gateway_logs_each_warning_once_and_streams_csv_without_warning(
    worker, etcd, redis_server, tmp_path: Path
):
    prefix = f"/noise-{uuid.uuid4().hex[:8]}"
    env = {**service_env(etcd.url, redis_server.url, ETCD_PREFIX=prefix), "DJANGO_DEBUG": "true"}
    log = tmp_path / "gateway.log"
    gateway = processes.start_gateway(log, env)
    base = f"http://127.0.0.1:{gateway.port}"
    try:
        data = generated(hosts=1, gpus_per_host=1, samples=400, seed=5)
        job = requests.post(
            f"{base}/api/v1/csv/upload", data=data, headers={"Content-Type": "text/csv"}, timeout=60
        ).json()

        def done() -> bool:
            return requests.get(job["url"], timeout=30).json()["state"] == "done"

        wait_for(done, 90, "job done")
        uuid_ = requests.get(f"{base}/api/v1/gpus", timeout=30).json()["results"][0]["uuid"]
        csv = requests.get(f"{base}/api/v1/gpus/{uuid_}/telemetry?format=csv", timeout=60)
        assert csv.status_code == 200 and csv.headers["Content-Type"].startswith("text/csv")
        lines = csv.text.strip().splitlines()
        assert lines[0] == "timestamp,metric_name,value"
        assert len(lines) - 1 == job["samples"]  # every sample, through the async stream
        assert requests.get(f"{base}/no-such-page", timeout=30).status_code == 404
        text = wait_for(lambda: log.read_text() if "no-such-page" in log.read_text() else "", 10)
    finally:
        gateway.stop()
    assert "must consume synchronous iterators" not in text, text[-3000:]
    assert text.count("Not Found: /no-such-page") == 1, text[-3000:]
    assert "[job=]" not in text


def screen_lines(raw: bytes) -> list[str]:
    """What a terminal shows: each line as left by its last carriage return, no colours."""
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", raw.decode(errors="replace"))
    return [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]


def run_in_terminal(argv: list[str], env: dict[str, str], deadline_s: float = 180) -> bytes:
    """Run `argv` with stdout and stderr on a pseudo-terminal (tqdm draws bars there)."""
    leader, follower = pty.openpty()
    # a terminal of 30 rows and 120 columns (a new pty has none: tqdm would draw nothing)
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=follower, stderr=follower)
    os.close(follower)
    out = bytearray()
    end = time.monotonic() + deadline_s
    try:
        while time.monotonic() < end:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == 0, bytes(out[-3000:]).decode(errors="replace")
    finally:
        os.close(leader)
        if proc.poll() is None:
            proc.kill()
    return bytes(out)


def test_ingest_wait_on_a_terminal_keeps_log_lines_off_its_progress_bars(
    worker, etcd, redis_server, tmp_path: Path
):
    path = tmp_path / "metrics.csv"
    path.write_bytes(generated(hosts=2, gpus_per_host=2, samples=300, seed=9))
    env = service_env(etcd.url, redis_server.url, ETCD_PREFIX=f"/tty-{uuid.uuid4().hex[:8]}")
    env["INGEST_CHUNK_ROWS"] = "500"  # several chunks: the stored bar moves
    raw = run_in_terminal(
        [sys.executable, "manage.py", "ingest", str(path), "--cluster", "tty", "--wait"], env
    )
    lines = [line for line in screen_lines(raw) if line.strip()]
    logs = [line for line in lines if re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ", line)]
    assert logs, lines  # the service logs the start and the end of the parse
    assert all(re.match(r"\d{4}-\d\d-\d\d ", line) for line in logs), logs  # not after a bar
    stored = [line for line in lines if line.startswith("stored")]
    assert len(stored) == 1 and "100%" in stored[0], "\n".join(lines)
    assert any(re.fullmatch(r"job \S+: done", line) for line in lines), lines
