"""The fleet: every GPU record and every GPU's latest values, one etcd round trip at any size.

Fleet views (GPU list, hosts, clusters) poll this every few seconds. `version` is
a digest of every key read and its mod revision, so it changes whenever a record
or a latest value is written, created or deleted, and callers can answer "not
modified" (or reuse what they built) without looking further. Parsed documents
are kept by (key, mod revision), so an unchanged GPU is never parsed twice.

A poll of an unchanged fleet costs one small round trip and no parsing: each read
remembers the revision it was made at, and the next one asks etcd, in the same
transaction, for the key counts only when no key changed after that revision
(else for everything, as the first read did); equal counts mean nothing was
deleted either, and the Fleet built last time is answered again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from store import kv, shards
from store.keys import Keys

# Parsed documents are kept by (key, mod revision): a changed key has a new revision.
_PARSED_MAX = 100_000


@dataclass(frozen=True)
class Fleet:
    records: list[dict[str, Any]]  # sorted by key: cluster, host, uuid
    latest: dict[str, dict[str, list]]  # uuid -> {metric: [ts, value]}
    version: str


class _Parsed:
    """JSON documents already parsed (and shaped), by (key, mod revision); bounded,
    thread-safe. Callers share the objects: read-only."""

    def __init__(self, size: int, shape: Callable[[Any], Any] = lambda doc: doc) -> None:
        self._size = size
        self._shape = shape
        self._lock = threading.Lock()
        self._docs: OrderedDict[tuple[str, int], Any] = OrderedDict()

    def __call__(self, item: kv.Item) -> Any:
        slot = (item.key, item.mod_revision)
        with self._lock:
            doc = self._docs.get(slot)
        if doc is None:
            doc = self._shape(json.loads(item.value))
            with self._lock:
                self._docs[slot] = doc
                if len(self._docs) > self._size:
                    self._docs.popitem(last=False)
        return doc


_parsed = _Parsed(_PARSED_MAX)
# A latest-values document as {metric: [ts, value]}: the upload order each value carries
# (store/write.py, for the merge) is left out.
latest_values = _Parsed(_PARSED_MAX, lambda doc: {m: entry[:2] for m, entry in doc.items()})

# (records, latest values) of one shard's read; `is` the same object while unchanged
_Parts = tuple[list[kv.Item], list[kv.Item]]
_READS_MAX = 256
_lock = threading.Lock()
# the last read of each (shard, ranges): what etcd said of it, and its parts
_reads: dict[tuple, tuple[kv.Ranges, _Parts]] = {}
# the last Fleet of each (root, cluster, host, latest): (the parts it was built from, it)
_built: dict[tuple, tuple[dict[str, _Parts], Fleet]] = {}


def _read_ranges(ranges: list[tuple[str, str]]) -> _Parts:
    """The records and latest values in `ranges` (the latter empty when not asked for):
    the parts read last time when nothing in them changed since, else read afresh."""
    slot = (shards.current(), tuple(ranges))
    with _lock:
        seen = _reads.get(slot)
    got = kv.get_ranges_since(ranges, seen[0].revision if seen else None)
    if got.items is None:
        assert seen is not None
        if got.counts == seen[0].counts and got.cluster == seen[0].cluster:
            return seen[1]
        # a key was deleted (or another etcd answered): read everything
        got = kv.get_ranges_since(ranges, None)
    assert got.items is not None
    parts = (got.items[0], got.items[1] if len(got.items) > 1 else [])
    with _lock:
        if len(_reads) >= _READS_MAX:
            _reads.clear()  # a bound, not a policy
        _reads[slot] = (got, parts)
    return parts


def read_fleet(
    keys: Keys, cluster: str | None = None, host: str | None = None, latest: bool = True
) -> Fleet:
    """Records (of one cluster, or one host of it) and, with `latest`, every GPU's latest
    values. Without `latest` the version follows the records only.

    The documents returned are shared between callers: treat them as read-only.
    With etcd shards, one cluster is read from its shard (StoreUnavailable naming
    it when down), the whole fleet from every shard at once (store/shards.py: the
    shards that do not answer are left out, the answer is marked partial, and the
    version names the shards that answered, so a partial answer never matches a
    complete one's version).
    """

    def read() -> _Parts:
        # both prefixes in one transaction: one round trip, and one revision for both
        prefixes = [keys.records_prefix(cluster, host)] + ([keys.latest_prefix()] if latest else [])
        return _read_ranges([(p, kv.prefix_end(p)) for p in prefixes])

    if cluster is not None and not shards.pinned():
        with shards.in_cluster(cluster) as shard:
            parts = {shard: read()}
    else:
        parts = shards.fan_out(read)
    built_key = (keys.root, cluster, host, latest)
    built = _built.get(built_key)
    if (
        built is not None
        and built[0].keys() == parts.keys()
        and all(built[0][shard] is part for shard, part in parts.items())
    ):
        return built[1]  # every shard's read unchanged: the same Fleet
    fleet = _build(parts)
    with _lock:
        if len(_built) >= _READS_MAX:
            _built.clear()  # a bound, not a policy
        _built[built_key] = (parts, fleet)
    return fleet


def _build(parts: dict[str, _Parts]) -> Fleet:
    records = sorted((i for r, _ in parts.values() for i in r), key=lambda i: i.key)
    latest_items = [i for _, items in parts.values() for i in items]
    digest = hashlib.blake2b(digest_size=12)
    if len(shards.names()) > 1:
        digest.update(f"shards {','.join(sorted(parts))}\n".encode())
    for item in (*records, *latest_items):
        digest.update(f"{item.key}\0{item.mod_revision}\n".encode())
    return Fleet(
        records=[_parsed(item) for item in records],
        latest={item.key.rsplit("/", 1)[-1]: latest_values(item) for item in latest_items},
        version=digest.hexdigest(),
    )
