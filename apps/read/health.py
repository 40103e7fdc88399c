"""Readiness checks of the services the gateway depends on."""

from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from store import kv, shards
from store.errors import StoreUnavailable

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
    """etcd (`etcd`, or `etcd:<shard>` for each shard when there are several) and the broker."""
    names = shards.names()
    checks: dict[str, dict[str, Any]] = {}
    if len(names) == 1:
        checks["etcd"] = check_etcd()
    else:
        for name in names:
            with shards.use(name):
                checks[f"etcd:{name}"] = check_etcd()
    checks["broker"] = check_broker()
    return checks
