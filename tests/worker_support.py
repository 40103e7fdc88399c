"""Shared by tests that start a Celery worker of their own and hand it chunks directly."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path

from apps.ingest.chunking import Chunk, GpuBuffer
from tests.conftest import REPO
from tools import services
from workers import payload


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


def chunk_payload(root: str, job: str, gpus: list[dict]) -> dict:
    """A persist_chunk payload, as ingest encodes it: one sample per GPU (`gpus`: facts)."""
    buffers = [
        GpuBuffer(facts, array("q", [1_752_871_354_000]), array("i", [0]), array("d", [55.0]))
        for facts in gpus
    ]
    return payload.encode(Chunk(0, ["DCGM_FI_DEV_GPU_UTIL"], buffers), root, job)
