"""The Celery app (`celery -A telemetry_site worker`).

No etcd client is created here or at import time: gRPC channels do not survive
fork, so each worker child creates its own lazily (store.client) and drops any
inherited one in `worker_process_init`.
"""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")

app = Celery("telemetry_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])
app.conf.include = ["workers.tasks", "workers.upkeep"]


@worker_process_init.connect
def _drop_inherited_etcd_client(**_: object) -> None:
    from store import client

    client.reset()
