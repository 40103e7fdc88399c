"""Start the project's own long-running processes: a Celery worker and an ASGI gateway.

Used by `make run` (tools/run.py), the benchmarks (bench/harness.py) and the tests, so
that all of them run the processes the same way the docs tell operators to.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from tools import services

WS_MAX_SIZE = 1024 * 1024  # bytes of one WebSocket frame; the consumer refuses most far sooner


def start_worker(
    log_path: Path,
    env: dict[str, str],
    concurrency: int = 2,
    queues: str = "telemetry",
    extra_args: Sequence[str] = (),
    app: str = "telemetry_site",
) -> services.Service:
    """`celery -A telemetry_site worker`; returns once it logged that it is ready."""
    offset = log_path.stat().st_size if log_path.exists() else 0
    argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--loglevel",
        "INFO",
        "--concurrency",
        str(concurrency),
        "--queues",
        queues,
        "--without-gossip",
        "--without-mingle",
        *extra_args,
    ]
    return services.start_command(
        f"worker ({app})",
        argv,
        log_path=log_path,
        env=env,
        ready=lambda: services.log_contains(log_path, offset, b" ready."),
        deadline_s=60,
    )


def start_gateway(
    log_path: Path,
    env: dict[str, str],
    port: int | None = None,
    host: str = "127.0.0.1",
    log_level: str = "warning",
    app: str = "telemetry_site.asgi:application",
) -> services.Service:
    """`uvicorn telemetry_site.asgi:application`; returns once /health answers 200.

    WebSocket frames are capped at 1 MiB (`--ws-max-size`, as in deploy/entrypoint.sh).
    `app` serves another ASGI app the same way (bench/ingest.py's upload floor).
    """
    port = port or services.free_port()
    argv = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
        "--ws-max-size",
        str(WS_MAX_SIZE),
    ]
    return services.start_command(
        "gateway",
        argv,
        log_path=log_path,
        env=env,
        ready=lambda: services.http_ok("127.0.0.1", port),
        port=port,
    )
