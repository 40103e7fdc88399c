"""Shared by benchmarks: start etcd, Redis, workers and a gateway in a temporary folder."""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools import processes, services

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    tmp: Path
    etcd: services.Service
    redis: services.Service
    env: dict[str, str]
    started: list[services.Service]

    def start_worker(self, concurrency: int = 2, name: str = "worker") -> services.Service:
        svc = processes.start_worker(self.tmp / f"{name}.log", self.env, concurrency)
        self.started.append(svc)
        return svc

    def start_gateway(self, name: str = "gateway") -> int:
        svc = processes.start_gateway(self.tmp / f"{name}.log", self.env)
        self.started.append(svc)
        return svc.port


@contextlib.contextmanager
def stack(**extra_env: str) -> Iterator[Stack]:
    """etcd and Redis on free ports under a temporary folder; stopped on exit.

    Benchmarks measure the pipeline, not access rules: uploads need no token and
    throttles are off unless `extra_env` says otherwise.
    """
    extra_env = {
        "TELEMETRY_WRITE_AUTH": "false",
        "THROTTLE_UPLOADS": "off",
        "THROTTLE_READS": "off",
        **extra_env,
    }
    services.ensure_binaries()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp_name:
        tmp = Path(tmp_name)
        etcd = services.start_etcd(tmp / "etcd")
        redis = services.start_redis(tmp / "redis")
        env = services.child_env(
            etcd.url,
            redis.url,
            REPO,
            DJANGO_SECRET_KEY=secrets.token_hex(32),
            DJANGO_DEBUG="false",
            DJANGO_ALLOWED_HOSTS="*",
            DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
            **extra_env,
        )
        st = Stack(tmp, etcd, redis, env, [etcd, redis])
        try:
            _migrated_database(tmp / "db.sqlite3", env)
            yield st
        except BaseException:
            for svc in st.started[2:]:
                print(f"--- last lines of {svc.name} ({svc.log_path}):\n{svc.log_tail()}")
            raise
        finally:
            for svc in reversed(st.started):
                svc.stop()


_TEMPLATE: list[Path] = []


def _migrated_database(path: Path, env: dict[str, str]) -> None:
    """The stack's SQLite database with Django's tables, as `make run` leaves it: workers
    mirror new GPUs into it (the admin's inventory), a cost every first upload pays. Migrated
    once per benchmark process, then copied (a migration takes seconds)."""
    if not _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="bench-db-"))
        atexit.register(shutil.rmtree, folder, True)
        template = folder / "db.sqlite3"
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            cwd=REPO,
            env={**env, "DATABASE_URL": f"sqlite:///{template}"},
            check=True,
            timeout=300,
        )
        _TEMPLATE.append(template)
    shutil.copyfile(_TEMPLATE[0], path)


def configure_this_process(st: Stack) -> None:
    """Point this process's Django settings at the stack (for in-process producers)."""
    os.environ.update({k: v for k, v in st.env.items() if k not in ("PYTHONPATH",)})
    import django

    django.setup()
