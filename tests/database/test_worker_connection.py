"""A worker process keeps its database connection from chunk to chunk, and not a broken one."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import service_env
from tests.helpers import wait_for
from tests.worker_support import chunk_payload, own_worker


@pytest.fixture
def pg_worker(etcd, redis_server, live_services, postgres, tmp_path: Path) -> Iterator[tuple]:
    """A prefork worker of one process on its own queue, its database PostgreSQL;
    yields (queue, its log)."""
    env = service_env(etcd.url, redis_server.url, DATABASE_URL=postgres.url)
    log = tmp_path / "worker.log"
    with own_worker(env, log, "pg-conn", "--concurrency", "1") as queue:
        yield queue, log


def gpu(name: str) -> dict:
    return {"uuid": name, "cluster": "lab", "host": "node-1", "gpu_index": 0, "labels": {}}


def test_a_worker_keeps_one_connection_and_drops_one_that_broke(pg_worker, postgres, etcd_root):
    from telemetry_site.celery import app

    queue, log = pg_worker

    with psycopg.connect(postgres.url, autocommit=True) as db:

        def send(job: str, names: list[str]) -> None:
            chunk = chunk_payload(etcd_root, job, [gpu(n) for n in names])
            app.send_task("workers.persist_chunk", args=[chunk], queue=queue)

        def mirrored(name: str) -> bool:
            found = db.execute("SELECT 1 FROM gpus_gpu WHERE uuid = %s", [name]).fetchone()
            return found is not None

        def worker_backends() -> set[int]:
            sql = (
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
            )
            return {pid for (pid,) in db.execute(sql).fetchall()}

        prefix = uuid.uuid4().hex[:6]
        backends = []
        for n in range(3):  # each chunk registers a GPU of its own: each is mirrored
            send(f"job-{prefix}-{n}", [f"GPU-{prefix}-{n}"])
            wait_for(lambda n=n: mirrored(f"GPU-{prefix}-{n}"), 60, f"GPU {n} mirrored")
            backends.append(worker_backends())
        assert len(backends[0]) == 1, backends  # open after its task ended
        assert backends[0] == backends[1] == backends[2], backends  # and the same session

        # the session dies under the worker (a restart, an administrator): the next mirror
        # fails and is logged, the one after it reconnects
        (killed,) = backends[0]
        db.execute("SELECT pg_terminate_backend(%s)", [killed])
        wait_for(lambda: killed not in worker_backends(), 30, "the session terminated")
        send(f"job-{prefix}-lost", [f"GPU-{prefix}-lost"])
        send(f"job-{prefix}-after", [f"GPU-{prefix}-after"])
        wait_for(lambda: mirrored(f"GPU-{prefix}-after"), 60, "a GPU mirrored after the failure")
        assert not mirrored(f"GPU-{prefix}-lost")
        assert "inventory mirror of 1 GPU(s) failed" in log.read_text()
        assert killed not in worker_backends()
