"""How many samples each writer may send a day: INGEST_QUOTA_SAMPLES_PER_DAY.

etcd's quota bounds the store's disk for all writers together; reaching it stops every
writer. This bounds each one: a user (token or session; `anonymous`, one count for them all,
when writes need no login) adds at most the quota of samples per UTC day, counted in the
broker's Redis so every gateway and worker shares the count. Uploads are charged chunk by
chunk before each is enqueued, remote write requests before their samples are; the chunk or
request that would pass the quota is refused whole (429, Retry-After until the next UTC
day), what came before it stays stored. Counts live two days, then expire.

Each charge is one Lua script (check and add at once: two writers near the quota cannot
both be refused when one fits). An upload's chunks are charged once per job and chunk: the
parse of a large upload, delivered again after its worker died, parses from the start and
is not charged again for the chunks it had reached.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import redis
from django.conf import settings

from apps.ingest.jobs import BrokerUnavailable
from observability.clients import redis_client
from store.errors import Answer

DAY_S = 86_400
_TTL_S = 2 * DAY_S
_COUNT = "telemetry:quota:{owner}:{day}"
_JOBS = "telemetry:quota:{owner}:{day}:jobs"  # job id -> the highest chunk charged
_TIMEOUT_S = 2.0

# KEYS: count, jobs. ARGV: samples, most, ttl, job ('' for none), chunk.
# Returns {1, total} charged, {0, total} already charged (that job's chunk), {-1, total} refused.
_CHARGE = """
local samples, most, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local job, chunk = ARGV[4], tonumber(ARGV[5])
local total = tonumber(redis.call('GET', KEYS[1]) or '0')
if job ~= '' then
  local reached = redis.call('HGET', KEYS[2], job)
  if reached and tonumber(reached) >= chunk then return {0, total} end
end
if total + samples > most then return {-1, total} end
redis.call('SET', KEYS[1], total + samples, 'EX', ttl)
if job ~= '' then
  redis.call('HSET', KEYS[2], job, chunk)
  redis.call('EXPIRE', KEYS[2], ttl)
end
return {1, total + samples}
"""

# KEYS: count, jobs. ARGV: samples, job ('' for none), chunk. Never below zero; a day's
# count that expired stays gone; the job's chunk is charged again if it is sent again.
_REFUND = """
local total = redis.call('GET', KEYS[1])
if total then
  redis.call('SET', KEYS[1], math.max(tonumber(total) - tonumber(ARGV[1]), 0), 'KEEPTTL')
end
local chunk = tonumber(ARGV[3])
if ARGV[2] ~= '' and tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '-1') == chunk then
  redis.call('HSET', KEYS[2], ARGV[2], chunk - 1)
end
return 0
"""


class QuotaExceeded(ValueError):
    """The writer's samples of the day would pass INGEST_QUOTA_SAMPLES_PER_DAY."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.answer = Answer(429, "QUOTA_EXCEEDED", retry_after=retry_after)
        self.details: dict[str, object] = {}


@dataclass(frozen=True)
class Charge:
    """What `charge` counted, for `refund` (the day it counted on, whatever the hour now)."""

    owner: str
    samples: int
    day: int
    job: str = ""
    chunk: int = 0


def owner_of(user: object) -> str:
    """Whose quota a request's writes count against: the user's id, or `anonymous`."""
    if getattr(user, "is_authenticated", False):
        return f"user-{user.pk}"  # type: ignore[attr-defined]
    return "anonymous"


def charge(
    owner: str | None, samples: int, job: str = "", chunk: int = 0, now: float | None = None
) -> Charge | None:
    """Count `samples` against `owner`'s day (once per `job` and `chunk` when given);
    QuotaExceeded (nothing counted) when they would pass the quota. None when nothing was
    counted: no owner (the server's own sources: stream, scrape), a quota of 0, or that
    job's chunk counted before."""
    most = settings.INGEST_QUOTA_SAMPLES_PER_DAY
    if owner is None or not most or samples <= 0:
        return None
    now = time.time() if now is None else now
    day = int(now // DAY_S)
    status, total = _run(_CHARGE, owner, day, samples, most, _TTL_S, job, chunk)
    if status == -1:
        raise _exceeded(most, int(total), samples, day, now)
    return Charge(owner, samples, day, job, chunk) if status == 1 else None


def refund(given: Charge | None) -> None:
    """Give back a charge whose samples were not sent after all (the broker or etcd failed
    them: the client sends them again). Best effort: Redis may be why they failed."""
    if given is not None:
        with contextlib.suppress(redis.RedisError, BrokerUnavailable):
            _run(_REFUND, given.owner, given.day, given.samples, given.job, given.chunk)


def check_room(owner: str | None, now: float | None = None) -> None:
    """QuotaExceeded when `owner` has no sample left today (a large upload is refused before
    it is spooled and queued, not in its worker after)."""
    most = settings.INGEST_QUOTA_SAMPLES_PER_DAY
    if owner is None or not most:
        return
    now = time.time() if now is None else now
    taken = used(owner, now)
    if taken >= most:
        raise _exceeded(most, taken, 1, int(now // DAY_S), now)


def used(owner: str, now: float | None = None) -> int:
    """Samples `owner` sent today (UTC)."""
    day = int((time.time() if now is None else now) // DAY_S)
    try:
        return int(_client().get(_COUNT.format(owner=owner, day=day)) or 0)
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"the task broker is unavailable: {exc}") from exc


def _exceeded(most: int, taken: int, samples: int, day: int, now: float) -> QuotaExceeded:
    return QuotaExceeded(
        f"this writer's samples of the day (UTC) would pass INGEST_QUOTA_SAMPLES_PER_DAY "
        f"({most:,}): {taken:,} taken so far, {samples:,} more refused; send again after "
        "midnight UTC, or ask the operator for a larger quota",
        retry_after=int((day + 1) * DAY_S - now) + 1,
    )


def _run(script: str, owner: str, day: int, *args: object) -> list:
    keys = [_COUNT.format(owner=owner, day=day), _JOBS.format(owner=owner, day=day)]
    try:
        return _client().eval(script, 2, *keys, *args)  # type: ignore[no-any-return]
    except redis.RedisError as exc:
        raise BrokerUnavailable(f"the task broker is unavailable: {exc}") from exc


def _client() -> redis.Redis:
    return redis_client(settings.CELERY_BROKER_URL, _TIMEOUT_S)
