"""A real worker mirrors the GPUs it registers into the database DATABASE_URL names."""

from __future__ import annotations

import contextlib
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from apps.read import queries
from tests.conftest import REPO, service_env
from tests.helpers import wait_for
from tools import services


@contextlib.contextmanager
def own_worker(env: dict[str, str], log: Path, name: str, *pool: str) -> Iterator[str]:
    """Migrate the database `env` names, then start a worker of its own on a queue of its
    own (`pool`: its pool options); yields the queue."""
    queue = f"{name}-{uuid.uuid4().hex[:8]}"
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
    subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
    argv = [sys.executable, "-m", "celery", "-A", "telemetry_site", "worker", *pool]
    argv += ["--without-gossip", "--without-mingle", "--queues", queue, "--loglevel", "INFO"]
    with services.start_command(
        name,
        argv,
        log_path=log,
        env=env,
        ready=lambda: services.log_contains(log, 0, b" ready."),
    ):
        yield queue


@pytest.fixture
def mirror_worker(etcd, redis_server, live_services, tmp_path: Path):
    """A worker of its own (own queue, own migrated SQLite file); yields (queue, db path)."""
    db = tmp_path / "inventory.sqlite3"
    env = service_env(etcd.url, redis_server.url, DATABASE_URL=f"sqlite:///{db}")
    with own_worker(env, tmp_path / "mirror-worker.log", "mirror", "--pool", "solo") as queue:
        yield queue, db


def chunk_payload(root: str, job: str, gpus: list[dict]) -> dict:
    """A persist_chunk payload (workers/payload.py's format): one sample per GPU."""
    return {
        "v": 1,
        "root": root,
        "job": job,
        "seq": 0,
        "names": ["DCGM_FI_DEV_GPU_UTIL"],
        "gpus": [
            {
                "f": facts,
                "t": np.array([1_752_871_354_000], "<i8").tobytes(),
                "m": np.array([0], "<i4").tobytes(),
                "x": np.array([55.0], "<f8").tobytes(),
            }
            for facts in gpus
        ],
    }


def test_a_worker_writes_the_inventory_rows_of_the_gpus_it_registers(mirror_worker, etcd_root):
    from telemetry_site.celery import app

    queue, db = mirror_worker
    gpus = [
        {
            "uuid": f"GPU-mirror-{i}",
            "cluster": "lab",
            "host": f"<host-{i}>",
            "gpu_index": i,
            "device": f"nvidia{i}",
            "model": "NVIDIA L4",
            "driver": "550",
            "labels": {},
        }
        for i in range(3)
    ]
    payload = chunk_payload(etcd_root, "mirror-job", gpus)
    app.send_task("workers.persist_chunk", args=[payload], queue=queue, serializer="msgpack")

    def mirrored() -> list[tuple]:
        with sqlite3.connect(db) as conn:
            return conn.execute(
                "SELECT uuid, host, cluster, model, gpu_index FROM gpus_gpu ORDER BY uuid"
            ).fetchall()

    rows = wait_for(lambda: len(mirrored()) == 3 and mirrored(), 60, "inventory rows")
    assert rows == [(f"GPU-mirror-{i}", f"<host-{i}>", "lab", "NVIDIA L4", i) for i in range(3)]
    assert queries.get_gpu("GPU-mirror-0")["latest"]["DCGM_FI_DEV_GPU_UTIL"]["value"] == 55.0
