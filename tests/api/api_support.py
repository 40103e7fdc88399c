"""Helpers for the API integration tests: uploads, generated data, reading answers back.

Not a test module; imported as `tests.api.api_support` by tests/api, tests/ingest_cmd
and tests/workers.
"""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from typing import Any

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.ingest.formats import WIDE_METRICS
from store import default_keys, kv
from timeparse.timestamps import parse_timestamp
from tools.generate_sample import generate

UPLOAD_URL = "/api/v1/csv/upload"

Expected = dict[str, dict[tuple[int, str], float]]


def generated(**kwargs: Any) -> bytes:
    """A CSV from tools/generate_sample.py as bytes (same arguments as `generate`)."""
    return ("\n".join(generate(**kwargs)) + "\n").encode()


def upload(client: APIClient, data: bytes, name: str = "upload.csv", **fields: str):
    """Multipart upload with the file in field `file` plus extra form fields."""
    return client.post(
        UPLOAD_URL, {"file": SimpleUploadedFile(name, data), **fields}, format="multipart"
    )


def expected_samples(data: bytes) -> Expected:
    """{uuid: {(ts, metric): value}} straight from a long or wide CSV, the test's own reading."""
    rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    out: Expected = defaultdict(dict)
    for row in rows:
        row = {k.lower(): v for k, v in row.items()}
        ts = parse_timestamp(row["timestamp"])
        if "metric_name" in row:
            out[row["uuid"]][(ts, row["metric_name"])] = float(row["value"])
            continue
        for column, metric in WIDE_METRICS.items():
            if row.get(column, "").strip():
                out[row["uuid"]][(ts, metric)] = float(row[column])
    return out


def telemetry(client: APIClient, uuid: str, **params: Any) -> dict:
    response = client.get(f"/api/v1/gpus/{uuid}/telemetry", params)
    assert response.status_code == 200, response.content
    return response.json()


def stored_samples(client: APIClient, uuid: str) -> dict[tuple[int, str], float]:
    body = telemetry(client, uuid, limit=10_000)
    assert body["next"] is None
    return {
        (parse_timestamp(r["timestamp"]), r["metric_name"]): r["value"] for r in body["results"]
    }


def all_gpus(client: APIClient, **params: Any) -> list[dict]:
    body = client.get("/api/v1/gpus", {"limit": 1000, **params}).json()
    assert body["count"] == len(body["results"]), body
    return body["results"]


def keys_under(section: str) -> list[str]:
    """Keys of the test's etcd root under `{root}/{section}/`."""
    return [item.key for item in kv.get_prefix(f"{default_keys().root}/{section}/")]


def point_producer_at(broker_url: str) -> None:
    """Make this process's Celery producer send to `broker_url` from now on.

    Celery caches its connection pool and producer pool on first use, and
    `app.close()` (5.7) drops only the first, so both are forgotten here. They
    are not closed: kombu keeps pools per broker in a global registry and would
    hand the closed one back when the test switches back.
    """
    from telemetry_site.celery import app

    app.conf.broker_url = broker_url
    app._pool = None
    app.amqp._producer_pool = None
