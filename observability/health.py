"""Health, readiness and metrics of a gateway: the checks and the three views.

`/health` checks nothing, `/ready` runs the checks the site passes it (telemetry_site/urls.py:
etcd's comes from the store, the broker's is here), `/metrics` is the Prometheus text of this
machine's processes plus the broker's queue depth read now.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST

from observability.metrics import exposition

_TIMEOUT_S = 2.0


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


Check = Callable[[], dict[str, Any]]  # {"ok": bool, ...; "error" when not ok}


def metrics_view(
    request: HttpRequest, more: Sequence[Callable[[], list[str]]] = ()
) -> HttpResponse:
    """Prometheus text: this machine's processes, plus the queue depth read now, plus the
    lines of each `more` (the site passes those that read other parts, e.g. the store)."""
    depth = queue_depth()
    extra = [
        "# HELP telemetry_queue_depth Chunk tasks waiting in the broker queue\n",
        "# TYPE telemetry_queue_depth gauge\n",
        f"telemetry_queue_depth {depth if depth is not None else 'NaN'}\n",
    ]
    for lines in more:
        extra += lines()
    return HttpResponse(exposition(extra), content_type=CONTENT_TYPE_LATEST)


def health_view(request: HttpRequest) -> JsonResponse:
    """Alive: the process answers. No dependency is checked."""
    return JsonResponse({"status": "ok"})


def ready_view(request: HttpRequest, checks: dict[str, Check]) -> JsonResponse:
    """Ready: every check answers ok; 503 naming the ones that do not."""
    results = {name: check() for name, check in checks.items()}
    down = [name for name, result in results.items() if not result["ok"]]
    body = {"status": "ready" if not down else "unavailable", "checks": results}
    if down:
        body["detail"] = f"not ready: {', '.join(down)} unreachable"
    return JsonResponse(body, status=503 if down else 200)
