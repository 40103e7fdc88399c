"""Shared by benchmarks: start etcd, Redis, workers and a gateway in a temporary folder."""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tools import services

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Stack:
    tmp: Path
    etcd: services.Service
    redis: services.Service
    env: dict[str, str]
    started: list[services.Service]

    def start_worker(self, concurrency: int = 2, name: str = "worker") -> services.Service:
        log = self.tmp / f"{name}.log"
        argv = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "telemetry_site",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(concurrency),
            "--queues",
            "telemetry",
            "--without-gossip",
            "--without-mingle",
        ]
        svc = services.start_command(
            name,
            argv,
            log_path=log,
            env=self.env,
            ready=lambda: services.log_contains(log, 0, b" ready."),
            deadline_s=60,
        )
        self.started.append(svc)
        return svc

    def start_gateway(self, name: str = "gateway") -> int:
        port = services.free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "telemetry_site.asgi:application",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        svc = services.start_command(
            name,
            argv,
            log_path=self.tmp / f"{name}.log",
            env=self.env,
            ready=lambda: services.http_ok("127.0.0.1", port),
            port=port,
        )
        self.started.append(svc)
        return port


@contextlib.contextmanager
def stack(**extra_env: str) -> Iterator[Stack]:
    """etcd and Redis on free ports under a temporary folder; stopped on exit."""
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
            yield st
        except BaseException:
            for svc in st.started[2:]:
                print(f"--- last lines of {svc.name} ({svc.log_path}):\n{svc.log_tail()}")
            raise
        finally:
            for svc in reversed(st.started):
                svc.stop()


def configure_this_process(st: Stack) -> None:
    """Point this process's Django settings at the stack (for in-process producers)."""
    os.environ.update({k: v for k, v in st.env.items() if k not in ("PYTHONPATH",)})
    import django

    django.setup()
