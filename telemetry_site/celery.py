"""The Celery app (`celery -A telemetry_site worker`).

No etcd client is created here or at import time: gRPC channels do not survive
fork, so each worker child creates its own lazily (store.client) and drops any
inherited one in `worker_process_init`.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_process_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")

app = Celery("telemetry_site")
# The default app of every thread, not only this one: ingest enqueues through
# `celery.current_app` (by task name, without importing the site), also from the
# gateway's worker threads and the scraper's endpoint threads.
app.set_default()
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
# apps.ingest.tasks: the parse of large uploads (it uses the ingest app; workers/ must not)
app.conf.include = ["workers.tasks", "workers.upkeep", "apps.ingest.tasks"]


@worker_process_init.connect
def _drop_inherited_etcd_client(**_: object) -> None:
    from store import client

    client.reset()


@worker_process_shutdown.connect
def _forget_metrics_of_exiting_child(pid: int | None = None, **_: object) -> None:
    if pid and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)


@worker_init.connect
def _serve_worker_metrics(**_: object) -> None:
    """With WORKER_METRICS_PORT, the worker's main process serves /metrics (all its children)."""
    port = os.environ.get("WORKER_METRICS_PORT", "").strip()
    if not port:
        return
    from prometheus_client import start_http_server

    from observability.metrics import registry

    start_http_server(int(port), registry=registry())
