"""Readiness checks of the services the gateway depends on."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from store import kv
from store.errors import StoreUnavailable
from store.upkeep import last_run

_TIMEOUT_S = 2.0


def check_etcd() -> dict[str, Any]:
    try:
        status = kv.status()
    except StoreUnavailable as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "version": status["version"]}


def check_broker() -> dict[str, Any]:
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
    )
    try:
        client.ping()
    except redis.RedisError as exc:
        return {"ok": False, "error": f"broker is unavailable: {exc}"}
    finally:
        client.close()
    return {"ok": True}


def queue_depth() -> int | None:
    """Chunk tasks waiting in the broker's queue (a Redis list), or None if unreachable."""
    client = redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
    )
    try:
        return int(client.llen(settings.CELERY_TASK_DEFAULT_QUEUE))
    except redis.RedisError:
        return None
    finally:
        client.close()


def check_all() -> dict[str, dict[str, Any]]:
    return {"etcd": check_etcd(), "broker": check_broker()}


def upkeep_lines() -> list[str]:
    """The last storage upkeep run as gauges (read from etcd: any process may have run it)."""
    run = last_run()
    at = run["at"] / 1000 if run else "NaN"
    failures = run["failures"] if run else "NaN"
    return [
        "# HELP telemetry_upkeep_last_run_timestamp_seconds When the last upkeep run ended\n",
        "# TYPE telemetry_upkeep_last_run_timestamp_seconds gauge\n",
        f"telemetry_upkeep_last_run_timestamp_seconds {at}\n",
        "# HELP telemetry_upkeep_last_run_failures GPU steps that failed in the last upkeep run\n",
        "# TYPE telemetry_upkeep_last_run_failures gauge\n",
        f"telemetry_upkeep_last_run_failures {failures}\n",
    ]
