"""The naive design the ingest benchmark compares against (not used by the product).

One Celery task per 100 rows, JSON rows as dicts, one etcd key (one request) per sample:
the way the original Go pipeline stored telemetry. Run as its own Celery app:
`celery -A bench.naive worker`.
"""

from __future__ import annotations

import json
import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
django.setup()

from store import kv  # noqa: E402  (after django.setup)

app = Celery("naive", broker=os.environ["CELERY_BROKER_URL"])
app.conf.update(task_serializer="json", accept_content=["json"], task_default_queue="naive")

ROOT = "/naive"


@app.task(name="naive.store_rows", acks_late=True)
def store_rows(rows: list[dict]) -> int:
    for row in rows:
        key = f"{ROOT}/{row['uuid']}/{row['timestamp']}/{row['metric_name']}"
        kv.put(key, json.dumps(row).encode())
    return len(rows)
