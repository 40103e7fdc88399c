"""A per-process cache of decoded immutable blocks, bounded in bytes.

Block and rollup keys end in a digest of their content (docs/STORAGE.md), so a
key names one byte string forever: an entry can never be stale, only unused.
A compaction writes a new key and deletes the old ones; the old entries are
then never asked for again and fall out as least recently used.

Every reader (REST, GraphQL, the dashboard, the Prometheus API) reaches it
through store/read.py. Thread-safe: the gateway serves requests from threads.
Size is `READ_CACHE_BYTES` (0 turns it off); an entry's cost is the bytes of its
numpy arrays plus a fixed overhead.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from django.conf import settings

from observability.metrics import READ_CACHE, READ_CACHE_SIZE, child
from store import inline

_ENTRY_OVERHEAD = 512  # key string, dataclass and dict slot: a rough constant


def _cost(key: str, value: Any) -> int:
    """Bytes held by a decoded block (a dataclass of numpy arrays, as Samples and Buckets),
    plus its `extra_bytes` when it holds more than arrays."""
    arrays = [getattr(value, f.name) for f in dataclasses.fields(value)]
    held = sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))
    return _ENTRY_OVERHEAD + len(key) + held + getattr(value, "extra_bytes", 0)


class BlockCache:
    """Least-recently-used map from block key to decoded value, at most `capacity` bytes.

    An entry may belong to a group (the blocks of one GPU's window): when a read
    of that window finds other keys there (a compaction merged them), `settle`
    drops the entries that are gone at once instead of waiting for them to age out.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[Any, int, str | None]] = OrderedDict()
        self._groups: dict[str, set[str]] = {}
        self.size = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: str) -> Any | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
        inline.counted(functools.partial(self._count, entry is not None))
        return None if entry is None else entry[0]

    def _count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1
        child(READ_CACHE, "hit" if hit else "miss").inc()

    def put(self, key: str, value: Any, group: str | None = None) -> None:
        """Keep `value` (its arrays become read-only: every reader shares them)."""
        for f in dataclasses.fields(value):
            array = getattr(value, f.name)
            if isinstance(array, np.ndarray):
                array.flags.writeable = False
        cost = _cost(key, value)
        if cost > self.capacity:
            return  # larger than the whole cache: caching it would only evict everything
        with self._lock:
            self._drop(key)
            self._entries[key] = (value, cost, group)
            self.size += cost
            if group is not None:
                self._groups.setdefault(group, set()).add(key)
            while self.size > self.capacity:
                self._drop(next(iter(self._entries)))
                self.evictions += 1
                child(READ_CACHE, "evicted").inc()
            READ_CACHE_SIZE.set(self.size)

    def settle(self, group: str, present: set[str]) -> None:
        """Forget the entries of `group` whose keys are no longer among `present`."""
        with self._lock:
            for key in self._groups.get(group, set()) - present:
                self._drop(key)
                self.evictions += 1
                child(READ_CACHE, "replaced").inc()
            READ_CACHE_SIZE.set(self.size)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        self.size -= entry[1]
        group = entry[2]
        if group is not None:
            members = self._groups[group]
            members.discard(key)
            if not members:
                del self._groups[group]

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._groups.clear()
            self.size = 0


_shared: BlockCache | None = None
_shared_lock = threading.Lock()


def shared() -> BlockCache:
    """This process's cache, sized from READ_CACHE_BYTES when first used (or resized)."""
    global _shared
    capacity = int(settings.READ_CACHE_BYTES)
    with _shared_lock:
        if _shared is None or _shared.capacity != capacity:
            _shared = BlockCache(capacity)
        return _shared
