"""A real worker mirrors the GPUs it registers into the database DATABASE_URL names."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from apps.read import queries
from tests.conftest import service_env
from tests.helpers import wait_for
from tests.worker_support import chunk_payload, own_worker


@pytest.fixture
def mirror_worker(etcd, redis_server, live_services, tmp_path: Path):
    """A worker of its own (own queue, own migrated SQLite file); yields (queue, db path)."""
    db = tmp_path / "inventory.sqlite3"
    env = service_env(etcd.url, redis_server.url, DATABASE_URL=f"sqlite:///{db}")
    with own_worker(env, tmp_path / "mirror-worker.log", "mirror", "--pool", "solo") as queue:
        yield queue, db


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
