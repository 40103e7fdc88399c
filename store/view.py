"""What changed in the store, followed by an etcd watch: answers kept in memory stay exact.

A strict read asks etcd first (one round trip, ~1 ms of CPU on each side here), even when
nothing changed since the same read a moment ago: a dashboard polling a GPU, or the fleet,
pays it at every refresh. Each gateway process instead follows every write with one watch
of the whole keyspace (from the revision it started at) and remembers, per store root,
the revision at which each GPU's keys, the fleet's keys, or any other read key last
changed (store/keys.py::touched). An answer built after revision `s` (its stamp: the
view's revision when the build started, before its reads) is still the store's answer
while nothing it reads changed after `s`: Kubernetes' API server serves reads from its
watch cache on the same ground.

How old the view may be is bounded, never assumed. A watch delivers a revision's events
after that revision is committed, and can stall (a slow consumer, a partition), so the
view answers only while it is *confirmed*: etcd was asked its revision (a linearizable
read) less than READ_VIEW_LAG ago and the watch had delivered up to it. etcd 3.4's
progress notifications cannot stand in for this (before 3.4.25 one can overtake events
it covers). A confirming thread asks every READ_VIEW_LAG / 2 while the view is used, so
an answer from the view misses no write acknowledged more than READ_VIEW_LAG before the
request. And an answer from the view is never older than what this process has already
been told by etcd (store/client.py::observed): an upload's client that saw its job done
through this process then reads what the job wrote.

Not in the view: sharded stores (ETCD_SHARDS; each shard would need its own watch) and
READ_VIEW_LAG=0; their reads ask etcd every time, as before.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from typing import Any, NamedTuple

from django.conf import settings
from django.core.signals import setting_changed
from pyetcd import etcdrpc

from store import client
from store.keys import touched

log = logging.getLogger(__name__)

# A process follows this many store roots at most (tests make one per test; a gateway
# uses one), and this many GPUs' changes: past either, it starts over, as after a
# restart of its watch (every answer kept before is dropped).
MAX_ROOTS = 64
MAX_GPUS = 200_000
# A view unused this long stops confirming (no etcd read while nobody asks).
IDLE_S = 60.0
RETRY_S = 0.5  # between a broken watch and the next, doubled while it keeps breaking
MAX_PAUSE_S = 30.0


class Verdict(enum.Enum):
    UNCHANGED = "unchanged"  # nothing the answer read changed: it is the store's answer
    CHANGED = "changed"  # a write to what it read was delivered (or the watch restarted)
    UNKNOWN = "unknown"  # the view cannot vouch now (unconfirmed, or behind this process)


class Stamp(NamedTuple):
    """When an answer's build started: the view's follow (a restarted watch, or a store
    restored with lower revisions, is another) and every event applied by then."""

    epoch: int
    revision: int


class View:
    """The changes of one etcd (the default shard's client of this process), as a watch
    delivers them. Thread-safe; two threads of its own (the watch, the confirmations)."""

    def __init__(self, etcd: Any, lag_s: float) -> None:
        self.etcd = etcd  # the client it follows: a new client (settings, fork) is a new view
        self.lag_s = lag_s
        self._cond = threading.Condition()
        self.start = 0  # revision the running watch follows from (0: none running)
        self.epoch = 0  # moved by every follow: a stamp of another follow is refused
        self.seen = 0  # every event up to this revision has been applied
        self.confirmed = -1e18  # monotonic time of the last confirmation's request
        self.used = time.monotonic()
        self._roots: dict[str, int] = {}  # root -> the revision it has been followed from
        self._gpus: dict[tuple[str, str], int] = {}  # (root, uuid) -> last change
        self._fleet: dict[str, int] = {}  # root -> last change of a record or latest values
        self._other: dict[str, int] = {}  # root -> last change of another read key
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._stream: Any = None
        self._done: threading.Event | None = None  # ends the running stream's requests
        for target, name in ((self._watch, "store-view"), (self._confirm, "store-view-confirm")):
            threading.Thread(target=target, name=name, daemon=True).start()

    # --- asked by readers ---------------------------------------------------------------
    def stamp(self, root: str) -> Stamp | None:
        """The revision an answer built from now on (its reads made after this call) may be
        kept under; None while no watch runs. A build reads etcd at this revision or later,
        so a stamp behind the store only makes the answer's check stricter."""
        with self._cond:
            self.used = time.monotonic()
            if not self.start:
                self._kick.set()
                return None
            if root not in self._roots:
                if len(self._roots) >= MAX_ROOTS:
                    self._forget()
                self._roots[root] = self.seen
            return Stamp(self.epoch, self.seen)

    def check(
        self, root: str, made: Stamp, uuid: str | None = None, fleet: bool = False
    ) -> Verdict:
        """Whether an answer stamped `made` (reading `uuid`'s keys, or the fleet's, and
        the root's other read keys) is still the store's answer."""
        with self._cond:
            since = self._roots.get(root)
            stamp = made.revision
            if (
                made.epoch != self.epoch
                or since is None
                or since > stamp
                or self._other.get(root, 0) > stamp
                or (uuid is not None and self._gpus.get((root, uuid), 0) > stamp)
                or (fleet and self._fleet.get(root, 0) > stamp)
            ):
                return Verdict.CHANGED
            return Verdict.UNCHANGED if self._vouches() else Verdict.UNKNOWN

    def _vouches(self) -> bool:
        now = time.monotonic()
        self.used = now
        fresh = self.start and now - self.confirmed <= self.lag_s
        if not fresh or now - self.confirmed > self.lag_s / 2:
            self._kick.set()
        return bool(fresh) and self.seen >= client.observed()

    def _forget(self) -> None:
        """Drop what is followed: every stamp made before is refused from now on."""
        self._roots.clear()
        self._gpus.clear()
        self._fleet.clear()
        self._other.clear()

    # --- the watch ------------------------------------------------------------------
    def _watch(self) -> None:
        pause = RETRY_S
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self._follow()
            except Exception as exc:  # etcd away, stream broken, no permission: start over
                if not self._stop.is_set():
                    reason = getattr(exc, "details", lambda: None)() or exc
                    log.warning("store view: watch ended (%s); reads ask etcd meanwhile", reason)
            with self._cond:
                self.start = 0
                self._cond.notify_all()
            # a watch that keeps failing at once (no read permission on every key, say)
            # is retried less and less often; one that lasted starts the pauses over
            if time.monotonic() - began > MAX_PAUSE_S:
                pause = RETRY_S
            self._stop.wait(pause)
            pause = min(pause * 2, MAX_PAUSE_S)

    def _revision(self) -> int:
        """etcd's revision now (a linearizable read through the followed client's channel;
        not noted as seen by this process: only the view's own business)."""
        etcd = self.etcd
        response = etcd.kvstub.Range(  # pyetcd's stub: it follows a failover
            etcdrpc.RangeRequest(key=b"\0", count_only=True),
            etcd.timeout,
            credentials=etcd.call_credentials,
            metadata=etcd.metadata,
        )
        return int(response.header.revision)

    def _follow(self) -> None:
        asked = time.monotonic()
        start = self._revision()  # every write acknowledged before `asked` is at or below
        with self._cond:
            self._forget()
            self.epoch += 1
            self.start = self.seen = start
            self.confirmed = asked
        create = etcdrpc.WatchCreateRequest(key=b"\0", range_end=b"\0", start_revision=start + 1)
        done = threading.Event()

        def requests() -> Any:
            yield etcdrpc.WatchRequest(create_request=create)
            done.wait()  # the stream's requests end with it (or with the view)

        etcd = self.etcd
        self._done = done
        stream = None
        try:
            stream = etcdrpc.WatchStub(etcd.channel).Watch(
                requests(), credentials=etcd.call_credentials, metadata=etcd.metadata
            )
            self._stream = stream
            if self._stop.is_set():
                stream.cancel()
            for response in stream:
                if response.canceled or response.compact_revision:
                    reason = response.cancel_reason or "compacted"
                    raise RuntimeError(f"etcd ended the watch: {reason}")
                if response.events:
                    self._apply(response.events)
        finally:
            done.set()
            if stream is not None:
                stream.cancel()
            self._stream = None

    def _apply(self, events: Any) -> None:
        with self._cond:
            roots = list(self._roots)
        top = 0
        gpus: dict[tuple[str, str], int] = {}
        fleet: dict[str, int] = {}
        other: dict[str, int] = {}
        for event in events:  # classified outside the lock: readers on the event loop wait on it
            revision = event.kv.mod_revision
            top = max(top, revision)
            key = event.kv.key.decode(errors="replace")
            for root in roots:
                what = touched(root, key)
                if what is None:
                    continue
                for uuid in what.uuids:
                    gpus[(root, uuid)] = revision
                if what.fleet:
                    fleet[root] = revision
                if what.other:
                    other[root] = revision
        with self._cond:
            for root in self._roots.keys() - set(roots):
                # followed since this batch was classified: its stamps so far are refused
                self._roots[root] = max(self._roots[root], top)
            self._gpus.update(gpus)
            self._fleet.update(fleet)
            self._other.update(other)
            if len(self._gpus) > MAX_GPUS:
                self._forget()
            self.seen = max(self.seen, top)
            self._cond.notify_all()

    # --- confirmations ----------------------------------------------------------------
    def _confirm(self) -> None:
        behind, last = 0, (0, 0)  # confirmations in a row the watch did not move in
        while not self._stop.is_set():
            idle = time.monotonic() - self.used > IDLE_S
            self._kick.wait(None if idle else self.lag_s / 2)
            if self._stop.is_set() or not self.start:
                self._kick.clear()
                continue
            asked = time.monotonic()
            try:
                now = self._revision()
            except Exception:  # etcd away: unconfirmed, reads ask etcd (and fail as it does)
                self._kick.clear()
                self._stop.wait(RETRY_S)
                continue
            with self._cond:
                caught_up = self._cond.wait_for(
                    lambda now=now: self.seen >= now or not self.start, self.lag_s
                )
                if caught_up and self.start:
                    self.confirmed = max(self.confirmed, asked)
            self._kick.clear()  # kicks made while confirming are answered by this one
            # behind and not moving (a slow watch under load moves: it is waited for)
            moved = (self.start, self.seen) != last
            behind = 0 if caught_up or moved else behind + 1
            last = (self.start, self.seen)
            stream = self._stream
            if behind >= 2 and stream is not None:  # an open stream delivering nothing
                log.warning("store view: the watch delivers nothing; following it again")
                stream.cancel()
                behind = 0

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        if self._done is not None:
            self._done.set()
        if self._stream is not None:
            self._stream.cancel()


_lock = threading.Lock()
_view: tuple[int, View] | None = None  # (pid, its view)


def get() -> View | None:
    """This process's view of the default shard's etcd, started on first use; None when
    there is none: READ_VIEW_LAG=0, etcd shards, or no client made yet (the view never
    connects: it may be asked on the event loop, where a connection must not be waited for;
    the first store read, on a thread, makes the client)."""
    global _view
    lag = float(settings.READ_VIEW_LAG)
    if lag <= 0 or settings.ETCD_SHARDS:
        if _view is not None:
            reset()
        return None
    etcd = client.existing()
    if etcd is None:
        return None
    held = _view
    if _fits(held, etcd, lag):
        return held[1]  # type: ignore[index]
    with _lock:
        held = _view
        if _fits(held, etcd, lag):
            return held[1]  # type: ignore[index]
        if held is not None and held[0] == os.getpid():
            held[1].stop()  # another etcd or lag (tests change settings): a new view
        # (a view made by the parent before fork is dropped, never stopped: its threads are
        # not in this process)
        made = View(etcd, lag)
        _view = (os.getpid(), made)
        return made


def _fits(held: tuple[int, View] | None, etcd: Any, lag: float) -> bool:
    if held is None or held[0] != os.getpid():
        return False
    return held[1].etcd is etcd and held[1].lag_s == lag


def reset(**signal: Any) -> None:
    """Stop and forget this process's view (settings changed; tests start from nothing)."""
    global _view
    with _lock:
        held, _view = _view, None
    if held is not None and held[0] == os.getpid():
        held[1].stop()


setting_changed.connect(reset)
