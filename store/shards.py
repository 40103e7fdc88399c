"""etcd shards: the data of a GPU cluster lives in the etcd named for it.

`ETCD_SHARDS` (`prod-a=http://etcd-a:2379,...;prod-b=...`) names the shards; a
cluster with a shard of its name lives there, every other cluster in the
`default` shard (`ETCD_ENDPOINTS`). Keys are the same in every shard.

Which shard a store call talks to is the *current* shard of the calling context
(`use(name)`, a context variable, `default` unless set): store functions stay
shard-agnostic, and callers pick the shard once (a chunk's cluster, a GPU's
locator). Fleet reads (`fan_out`) run in every shard concurrently; the shards
that do not answer are left out of the result and recorded in the request's
`Partial` collector, so answers are marked partial (docs/API.md), never
silently short.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from django.conf import settings

from store import inline
from store.errors import NotFound, StoreUnavailable

log = logging.getLogger(__name__)
DEFAULT = "default"
T = TypeVar("T")

_current: contextvars.ContextVar[str | None] = contextvars.ContextVar("etcd_shard", default=None)
_partial: contextvars.ContextVar[Partial | None] = contextvars.ContextVar(
    "etcd_partial", default=None
)


def names() -> list[str]:
    """Every shard: `default` first, then ETCD_SHARDS in their configured order."""
    return [DEFAULT, *settings.ETCD_SHARDS]


def endpoints(shard: str) -> list[str]:
    if shard == DEFAULT:
        return list(settings.ETCD_ENDPOINTS)
    try:
        return list(settings.ETCD_SHARDS[shard])
    except KeyError:
        raise StoreUnavailable(f"no etcd shard named {shard!r} (ETCD_SHARDS)") from None


def for_cluster(cluster: str) -> str:
    """The shard holding a GPU cluster's data."""
    return cluster if cluster in settings.ETCD_SHARDS else DEFAULT


def current() -> str:
    return _current.get() or DEFAULT


def pinned() -> bool:
    """True inside `use()`: fleet reads then stay in that shard instead of fanning out."""
    return _current.get() is not None


@contextlib.contextmanager
def use(shard: str) -> Iterator[str]:
    """Store calls in this block (this thread, this context) go to `shard`."""
    token = _current.set(shard)
    try:
        yield shard
    finally:
        _current.reset(token)


def in_cluster(cluster: str) -> contextlib.AbstractContextManager[str]:
    return use(for_cluster(cluster))


class Partial:
    """Shards a request could not read (collected by fan-outs; see apps/read/middleware.py)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.missing: dict[str, str] = {}

    def add(self, shard: str, error: str) -> None:
        with self._lock:
            self.missing[shard] = error


@contextlib.contextmanager
def collecting() -> Iterator[Partial]:
    """Record the shards that fan-outs in this block had to leave out."""
    holder = Partial()
    token = _partial.set(holder)
    try:
        yield holder
    finally:
        _partial.reset(token)


def missing() -> list[str]:
    """The shards this request's fan-outs left out so far (sorted; empty outside one)."""
    holder = _partial.get()
    return sorted(holder.missing) if holder is not None else []


def fan_out(work: Callable[[], T]) -> dict[str, T]:
    """`work()` in every shard, concurrently; {shard: result} of the shards that answered.

    A shard that does not answer is recorded in the current `Partial` collector
    and left out. When no shard answers, the first error is raised. Inside `use()`
    only that shard is read (compaction and per-shard upkeep stay in their shard).
    """
    shards = names()
    if pinned():
        return {current(): work()}
    if len(shards) == 1:
        return {DEFAULT: work()}
    inline.check("a fan-out to every shard")  # threads, which wait on etcd
    holder = _partial.get()

    def run(shard: str) -> tuple[str, T | StoreUnavailable]:
        try:
            with use(shard):
                return shard, work()
        except StoreUnavailable as exc:
            return shard, exc

    with ThreadPoolExecutor(max_workers=len(shards), thread_name_prefix="shard") as pool:
        answers = list(pool.map(run, shards))
    results = {s: r for s, r in answers if not isinstance(r, StoreUnavailable)}
    failed = [(s, r) for s, r in answers if isinstance(r, StoreUnavailable)]
    if failed and not results:
        raise failed[0][1]
    for shard, exc in failed:
        if holder is not None:
            holder.add(shard, str(exc))
        else:  # no request to mark: at least say so
            log.warning("answer without etcd shard %s: %s", shard, exc)
    return results


# Which shard holds a GPU: found through its locator, remembered for a while.
_GPU_TTL_S = 60.0
_gpus: dict[str, tuple[str, float]] = {}
_gpus_lock = threading.Lock()


def of_gpu(uuid: str, find: Callable[[], bool]) -> str:
    """The shard whose `find()` (run in each shard) is true for this GPU; cached 60 s.

    Raises NotFound when every shard answered no, StoreUnavailable naming the
    shards that did not answer when none said yes (the GPU may be there).
    """
    with _gpus_lock:
        hit = _gpus.get(uuid)
    if hit and hit[1] > time.monotonic():
        return hit[0]
    if len(names()) == 1:
        return DEFAULT
    with collecting() as partial:
        found = [s for s, yes in fan_out(find).items() if yes]
    if not found:
        if partial.missing:
            shards = ", ".join(sorted(partial.missing))
            raise StoreUnavailable(f"etcd shard {shards} is unavailable: GPU {uuid!r} may be there")
        raise NotFound(f"no GPU with uuid {uuid!r}")
    with _gpus_lock:
        _gpus[uuid] = (found[0], time.monotonic() + _GPU_TTL_S)
    return found[0]


def forget() -> None:
    """Drop the GPU -> shard memory (tests, settings changes)."""
    with _gpus_lock:
        _gpus.clear()
