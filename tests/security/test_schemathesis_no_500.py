"""schemathesis against the running server's own OpenAPI schema: no request gets a 500."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import requests

from tests.api.api_support import generated
from tests.conftest import service_env
from tools import processes


def test_schemathesis_finds_no_server_error(worker, etcd, redis_server, tmp_path: Path):
    env = service_env(etcd.url, redis_server.url, ETCD_PREFIX=f"/fuzz-{uuid.uuid4().hex[:8]}")
    gateway = processes.start_gateway(tmp_path / "gateway.log", env)
    port = gateway.port
    base = f"http://127.0.0.1:{port}"
    try:
        data = generated(hosts=2, gpus_per_host=2, samples=5, seed=3)
        upload = requests.post(
            f"{base}/api/v1/csv/upload", data=data, headers={"Content-Type": "text/csv"}, timeout=60
        )
        assert upload.status_code == 202, upload.text
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{base}/api/schema/",
                "--checks",
                "not_a_server_error",
                "--max-examples",
                "40",
                "--seed",
                "1",
                "--request-timeout",
                "30",
                "--phases",
                "examples,fuzzing",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
        report = done.stdout[-4000:] + done.stderr[-2000:]
        assert done.returncode == 0, report
        assert "Server error" not in done.stdout and " passed" in done.stdout, report
        assert "Internal Server Error" not in gateway.log_tail(), gateway.log_tail()
    finally:
        gateway.stop()
