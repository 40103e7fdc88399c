"""How many samples each writer may send a day: INGEST_QUOTA_SAMPLES_PER_DAY.

etcd's quota bounds the store's disk for all writers together; reaching it stops every
writer. This bounds each one: a user (token or session; `anonymous` when writes need no
login) adds at most the quota of samples per UTC day, counted in the broker's Redis so every
gateway and worker shares the count. Uploads are charged chunk by chunk before each is
enqueued, remote write requests before their samples are; the chunk or request that would
pass the quota is refused whole (429, Retry-After until the next UTC day), what came before
it stays stored. Counts live two days, then expire.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time

import redis
from django.conf import settings

from apps.ingest.jobs import BrokerUnavailable
from store.errors import Answer

DAY_S = 86_400
_KEY = "telemetry:quota:{owner}:{day}"
_TIMEOUT_S = 2.0


class QuotaExceeded(ValueError):
    """The writer's samples of the day would pass INGEST_QUOTA_SAMPLES_PER_DAY."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.answer = Answer(429, "QUOTA_EXCEEDED", retry_after=retry_after)
        self.details: dict[str, object] = {}


def owner_of(user: object) -> str:
    """Whose quota a request's writes count against: the user's id, or `anonymous`."""
    if getattr(user, "is_authenticated", False):
        return f"user-{user.pk}"  # type: ignore[attr-defined]
    return "anonymous"


def charge(owner: str | None, samples: int, now: float | None = None) -> None:
    """Count `samples` against `owner`'s day; QuotaExceeded (nothing counted) when they
    would pass the quota. None owner (the server's own sources: stream, scrape) or a
    quota of 0: not counted."""
    most = settings.INGEST_QUOTA_SAMPLES_PER_DAY
    if owner is None or not most or samples <= 0:
        return
    now = time.time() if now is None else now
    day = int(now // DAY_S)
    key = _KEY.format(owner=owner, day=day)
    try:
        client = _client()
        with client.pipeline() as pipe:
            total, _ = pipe.incrby(key, samples).expire(key, 2 * DAY_S).execute()
        if total > most:
            client.decrby(key, samples)  # refused whole: not counted
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"the task broker is unavailable: {exc}") from exc
    if total > most:
        used = total - samples
        raise QuotaExceeded(
            f"this writer's samples of the day (UTC) would pass INGEST_QUOTA_SAMPLES_PER_DAY "
            f"({most:,}): {used:,} taken so far, {samples:,} more refused; send again after "
            "midnight UTC, or ask the operator for a larger quota",
            retry_after=int((day + 1) * DAY_S - now) + 1,
        )


def refund(owner: str | None, samples: int, now: float | None = None) -> None:
    """Give back a charge whose samples were not sent after all (the broker or etcd failed
    them, and the client will send them again). Best effort: Redis may be why it failed."""
    if owner is None or not settings.INGEST_QUOTA_SAMPLES_PER_DAY or samples <= 0:
        return
    day = int((time.time() if now is None else now) // DAY_S)
    with contextlib.suppress(redis.RedisError):
        _client().decrby(_KEY.format(owner=owner, day=day), samples)


def used(owner: str, now: float | None = None) -> int:
    """Samples `owner` sent today (UTC)."""
    day = int((time.time() if now is None else now) // DAY_S)
    return int(_client().get(_KEY.format(owner=owner, day=day)) or 0)


_lock = threading.Lock()
_held: tuple[int, str, redis.Redis] | None = None


def _client() -> redis.Redis:
    """One client a process and broker URL (made after a fork, never inherited)."""
    global _held
    url = settings.CELERY_BROKER_URL
    with _lock:
        if _held is None or _held[:2] != (os.getpid(), url):
            client = redis.Redis.from_url(
                url, socket_timeout=_TIMEOUT_S, socket_connect_timeout=_TIMEOUT_S
            )
            _held = (os.getpid(), url, client)
        return _held[2]
