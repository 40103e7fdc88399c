"""LOG_FORMAT=json: JSON lines, with the job id on every ingest line (ingest and worker)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from observability.logs import JobFilter, JsonFormatter, job_context, logging_config
from tests.api.api_support import generated
from tests.conftest import REPO, service_env, start_worker
from tests.helpers import wait_for


def test_json_formatter_carries_job_and_extra_fields():
    record = logging.makeLogRecord(
        {"name": "x", "levelname": "INFO", "msg": "hello %s", "args": ("you",)}
    )
    with job_context("123-abc"):
        JobFilter().filter(record)
    record.rows = 5
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello you" and line["job"] == "123-abc" and line["rows"] == 5


def test_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        logging_config("xml", "INFO")


def test_ingest_and_worker_lines_name_the_job(etcd, redis_server, tmp_path: Path):
    broker = redis_server.url.rsplit("/", 1)[0] + "/6"  # its own queue, its own worker
    env = {"ETCD_PREFIX": f"/logs-{uuid.uuid4().hex[:8]}", "LOG_FORMAT": "json"}
    worker = start_worker(tmp_path, etcd.url, broker, **env)
    try:
        csv_path = tmp_path / "in.csv"
        csv_path.write_bytes(generated(hosts=1, gpus_per_host=2, samples=2, seed=46))
        done = subprocess.run(
            [sys.executable, "manage.py", "ingest", str(csv_path), "--wait", "--no-progress"],
            cwd=REPO,
            env=service_env(etcd.url, broker, **env),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        job_id = done.stdout.split("job ")[1].split(":")[0]
        lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
        ingest_lines = [line for line in lines if line["logger"] == "apps.ingest.service"]
        assert len(ingest_lines) >= 2 and all(line["job"] == job_id for line in ingest_lines)

        def worker_lines() -> list[dict]:
            text = worker.log_path.read_text()
            found = [json.loads(x) for x in text.splitlines() if x.startswith("{") and "chunk" in x]
            return [x for x in found if x.get("logger") == "workers.tasks"]

        stored = wait_for(worker_lines, 30, "worker's JSON lines")
        assert all(line["job"] == job_id for line in stored)
    finally:
        worker.stop()
