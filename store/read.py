"""Reads of one GPU's history: raw samples window by window, and downsampled buckets.

Memory stays bounded by the window, not by the query: callers consume windows
until they have a page.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from store import client, fleet, kv, shards
from store.cache import shared as shared_cache
from store.codec import Samples, decode_block, merge
from store.errors import NotFound
from store.keys import Keys, window_span
from store.order import block_order, merge_blocks
from store.rollup import Buckets, aggregate, concat, decode_rollup, rebucket, select
from store.tiers import Tier
from store.workloads import Period, periods_of

T = TypeVar("T")


def _by_window(infos: list[kv.KeyInfo], window_ms: int, start: int, end: int) -> dict[int, list]:
    out: dict[int, list[kv.KeyInfo]] = defaultdict(list)
    for info in infos:
        name = Keys.parse_block(info.key)
        if name.t_last >= start and name.t_first <= end:
            out[name.t_first // window_ms].append(info)
    return out


# Windows whose missing blocks are fetched together (one transaction per 120 keys):
# few round trips for a long query, memory still bounded by this many windows.
_WINDOWS_PER_FETCH = 24


class Vanished(Exception):
    """A listed block is gone (a compaction merged it) or evicted unread: read again."""


def _decoded(
    key: str, data: bytes | None, decode: Callable[[bytes], T], group: str | None = None
) -> T:
    """Decode through the shared cache: a block key names its content forever. `data` None:
    the block was cached when it was planned (`_planned_items`); evicted since, it is read
    now, and Vanished when it is gone."""
    cache = shared_cache()
    hit = cache.get(key)
    if hit is None:
        if data is None:
            item = kv.get(key)
            if item is None:
                raise Vanished(key)
            data = item.value
        hit = decode(data)
        cache.put(key, hit, group)
    return hit


def _merge_ordered(parts: list[tuple[tuple[int, int, int], Samples]]) -> Samples:
    """Merge blocks given as (block_order, samples): the newest upload wins (store/order.py,
    the one rule that compaction follows too)."""
    if len(parts) == 1:
        return parts[0][1]  # a decoded block is already canonical: skip the re-sort
    return merge([s for _, s in sorted(parts, key=lambda p: p[0])])


def _merged(items: list[kv.Item]) -> Samples:
    """Merge blocks; the newest upload wins (store/order.py)."""
    return _merge_ordered(
        [
            (block_order(it.key, it.mod_revision), _decoded(it.key, it.value, decode_block))
            for it in items
        ]
    )


def _span_items(prefix: str, first: int, last: int) -> list[kv.Item]:
    """Every block starting in [first, last], read at one revision (one range read).

    Reading a window's keys by name instead could race a compaction that merged
    them in between and come back empty: the range finds the merged block.
    """
    return kv.get_range(*window_span(prefix, first, last))


def _clip(s: Samples, start: int, end: int) -> Samples:
    if not len(s) or (s.ts[0] >= start and s.ts[-1] <= end):
        return s  # rows are sorted by time: the ends decide
    lo = int(np.searchsorted(s.ts, start, side="left"))
    hi = int(np.searchsorted(s.ts, end, side="right"))
    return Samples(s.ts[lo:hi], s.metric[lo:hi], s.value[lo:hi], s.names)


def _fetch_missing(infos: list[kv.KeyInfo]) -> dict[str, kv.Item]:
    """Values of the planned blocks that the cache does not hold (one read per 120 keys)."""
    cache = shared_cache()
    missing = [i.key for i in infos if i.key not in cache]
    return kv.get_many(missing) if missing else {}


def _window(
    prefix: str,
    w: int,
    window_ms: int,
    infos: list[kv.KeyInfo],
    fetched: dict[str, kv.Item],
    strict: bool = False,
) -> Samples:
    """One window's blocks merged: from the cache and `fetched`, else one consistent range read.

    A planned key that is neither cached nor fetched was merged away by a
    compaction after the plan: the window is then read again by range (`strict`: Vanished,
    for a caller keeping what it makes under the plan's name).
    """
    cache = shared_cache()
    group = f"{prefix}{w}"
    if strict:
        return _merge_ordered(_listed_blocks(group, infos, fetched))
    cache.settle(group, {i.key for i in infos})  # blocks a compaction merged away
    parts = _held_blocks(group, infos, fetched)
    if parts is not None:
        return _merge_ordered(parts)
    items = _span_items(prefix, w * window_ms, (w + 1) * window_ms - 1)
    cache.settle(group, {i.key for i in items})
    return _merge_ordered(
        [
            (block_order(i.key, i.mod_revision), _decoded(i.key, i.value, decode_block, group))
            for i in items
        ]
    )


def _listed_blocks(
    group: str, infos: Sequence[kv.KeyInfo], fetched: dict[str, kv.Item]
) -> list[tuple[tuple[int, int, int], Samples]]:
    """`_held_blocks` of exactly the listed blocks: those the cache dropped since they were
    fetched or found are read again (one read per 120 keys); Vanished when one is gone, the
    cache then left as it is (the listing is stale, newer blocks may be cached)."""
    parts = _held_blocks(group, infos, fetched)
    if parts is None:
        cache = shared_cache()
        evicted = [i for i in infos if i.key not in fetched and i.key not in cache]
        got = kv.get_many([i.key for i in evicted])
        if any(i.key not in got or got[i.key].mod_revision != i.mod_revision for i in evicted):
            raise Vanished(group)
        parts = _held_blocks(group, infos, {**fetched, **got})
        if parts is None:  # evicted again at once: a cache far too small for one window
            raise Vanished(group)
    shared_cache().settle(group, {i.key for i in infos})
    return parts


def _held_blocks(
    group: str, infos: Sequence[kv.KeyInfo], fetched: dict[str, kv.Item]
) -> list[tuple[tuple[int, int, int], Samples]] | None:
    """The blocks decoded, with their merge order, from the cache and `fetched` (None when
    one is in neither)."""
    cache = shared_cache()
    parts = []
    for info in infos:
        hit = cache.get(info.key)
        if hit is None:
            item = fetched.get(info.key)
            if item is None:
                return None
            hit = _decoded(item.key, item.value, decode_block, group)
        parts.append((block_order(info.key, info.mod_revision), hit))
    return parts


def iter_raw(
    keys: Keys,
    uuid: str,
    start: int,
    end: int,
    window_ms: int,
    descending: bool = False,
    planned: list[kv.KeyInfo] | None = None,
    strict: bool = False,
) -> Iterator[Samples]:
    """Raw samples in [start, end], one merged window at a time, in time order.

    One keys-only range read to plan (`planned`: its keys, already listed along, see
    `open_gpu`); then the blocks the cache does not hold, fetched a group of windows at a
    time (each window sorted by (ts, metric name); windows ascending or descending).
    `strict`: Vanished when a planned block is gone, rather than reading its window again.
    """
    if planned is None:
        planned = kv.keys_in_range(*keys.block_range(uuid, start, end, window_ms))
    windows = _by_window(planned, window_ms, start, end)
    prefix = keys.blocks_prefix(uuid)
    order = sorted(windows, reverse=descending)
    for g in range(0, len(order), _WINDOWS_PER_FETCH):
        group = order[g : g + _WINDOWS_PER_FETCH]
        fetched = _fetch_missing([i for w in group for i in windows[w]])
        for w in group:
            window = _window(prefix, w, window_ms, windows[w], fetched, strict)
            samples = _clip(window, start, end)
            if len(samples):
                yield samples


@dataclass(frozen=True)
class GpuWindow:
    """What a telemetry read of one GPU starts from, read at one revision."""

    record: dict[str, Any]
    latest: dict[str, list] | None  # metric -> [ts, value]
    # the keys of the blocks the read needs (raw_ranges, bucket_ranges), listed along
    # without their values: a warm read finds them in the cache (a day of blocks is ~1 MB)
    planned: list[list[kv.KeyInfo]]
    workloads: list[Period]  # (start, end, labels) of every workload the GPU ran


class _Records:
    """GPU records by (shard, root, uuid), valid while the locator keeps its mod revision.

    A record is only ever written in the same transaction as its locator
    (store/registry.py), so an unchanged locator revision means an unchanged record.
    """

    def __init__(self, size: int = 100_000) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, str], tuple[int, dict[str, Any]]] = {}

    def get(self, root: str, uuid: str, revision: int) -> dict[str, Any] | None:
        with self._lock:
            entry = self._entries.get((shards.current(), root, uuid))
        return entry[1] if entry is not None and entry[0] == revision else None

    def put(self, root: str, uuid: str, revision: int, record: dict[str, Any]) -> None:
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.clear()  # rare: a bound, not a policy
            self._entries[(shards.current(), root, uuid)] = (revision, record)


_records = _Records()


def open_gpu(keys: Keys, uuid: str, ranges: list[tuple[str, str]]) -> GpuWindow:
    """The GPU's record, latest values and workloads, and the keys in `ranges` (blocks the
    caller knows it needs), read at one revision: one round trip in the usual case.

    Raises NotFound for an unknown GPU.
    """
    locator_key, latest_key = keys.locator(uuid), keys.latest(uuid)
    found, (workloads,), planned = kv.get_together(
        [locator_key, latest_key], [keys.workloads_of(uuid)], ranges
    )
    locator = found.get(locator_key)
    if locator is None:
        raise NotFound(f"no GPU with uuid {uuid!r}")
    record = _records.get(keys.root, uuid, locator.mod_revision)
    if record is None:
        located = json.loads(locator.value)
        item = kv.get(keys.record(located["cluster"], located["host"], uuid))
        if item is None:
            raise NotFound(f"no GPU with uuid {uuid!r}")
        record = json.loads(item.value)
        _records.put(keys.root, uuid, locator.mod_revision, record)
    latest = found.get(latest_key)
    values = fleet.latest_values(latest) if latest else None  # the same object while unchanged
    return GpuWindow(record, values, planned, periods_of(uuid, workloads))


def raw_ranges(keys: Keys, uuid: str, start: int, end: int, window_ms: int) -> list:
    """What `open_gpu` should list along for a raw query: its blocks, when they are a day's
    worth or less (longer windows are read a day at a time, through the cache)."""
    if (end - start) // window_ms >= _WINDOWS_PER_FETCH:
        return []
    return [keys.block_range(uuid, start, end, window_ms)]


def bucket_ranges(
    keys: Keys, uuid: str, start: int, end: int, step_ms: int, raw: Tier, tier: Tier | None
) -> list:
    """What `open_gpu` should list along for `read_buckets` of a window of a day or less
    (and its edges): the raw blocks of every raw window it touches, whole, and, with a
    tier, its rollup blocks (else nothing).

    Whole raw windows, so that a rollup window not yet rolled up (today's) is computed
    from the blocks this listing names, with no second listing (`read_buckets`).
    """
    first, last = _bucket_span(start, end, step_ms)
    if last // raw.window_ms - first // raw.window_ms >= _WINDOWS_PER_FETCH + 1:
        return []
    last_window_end = (last // raw.window_ms + 1) * raw.window_ms - 1
    ranges = [keys.block_range(uuid, first, last_window_end, raw.window_ms)]
    if tier is not None:
        ranges.append(keys.rollup_range(tier.name, uuid, first, last, tier.window_ms))
    return ranges


def _bucket_span(start: int, end: int, step_ms: int) -> tuple[int, int]:
    return (start // step_ms) * step_ms, (end // step_ms) * step_ms + step_ms - 1


def read_samples(keys: Keys, uuid: str, start: int, end: int, window_ms: int) -> Samples:
    """Every sample of `uuid` in [start, end], one per (ts, metric), sorted (whole window)."""
    return merge(list(iter_raw(keys, uuid, start, end, window_ms)))


def read_buckets(
    keys: Keys,
    uuid: str,
    start: int,
    end: int,
    step_ms: int,
    raw: Tier,
    tier: Tier | None,
    planned: list[list[kv.KeyInfo]] | None = None,
) -> Buckets:
    """Whole `step_ms` buckets starting in [floor(start), end], sorted by (metric, bucket).

    With a rollup `tier`, each of its windows is read from its rollup block when
    that block is newer than every raw block of the window (up to date), and
    computed from raw blocks otherwise (fresh data not yet rolled up).
    `planned`: the keys `bucket_ranges` named for a window holding this one, already
    listed; the buckets made from them are kept in the block cache under a key naming
    every block they came from, so a warm read reads no block. Else (or when a planned
    block is gone: a compaction merged it) the blocks are read again.
    """
    first, last = _bucket_span(start, end, step_ms)
    if not planned:
        return _trim(_buckets(keys, uuid, first, last, step_ms, raw, tier, None), first, end)
    infos = [*planned[0], *(planned[1] if tier is not None else ())]
    of = f"{tier.name}/{tier.resolution_ms}/{tier.window_ms}" if tier is not None else "raw"
    key = f"buckets/{uuid}/{first}-{last}/{step_ms}/{raw.window_ms}/{of}/{_digest(infos)}"
    cache = shared_cache()
    made = cache.get(key)
    if made is None:
        try:  # made from exactly the blocks the key names, or not kept
            if tier is None:  # raw windows: iter_raw reads what the cache lacks
                made = _raw_buckets(keys, uuid, first, last, step_ms, raw, planned[0], True)
            else:
                items = _planned_items(planned, tier, raw, first, last)
                made = _buckets(keys, uuid, first, last, step_ms, raw, tier, items)
            cache.put(key, made)
        except Vanished:  # a compaction merged a listed block: read the store as it is now
            made = _buckets(keys, uuid, first, last, step_ms, raw, tier, None)
    return _trim(made, first, end)


def _planned_items(
    planned: list[list[kv.KeyInfo]], tier: Tier, raw: Tier, first: int, last: int
) -> list[list[kv.Item]]:
    """The planned raw and rollup blocks, with the values `_buckets` will decode and the
    cache lacks (one read per 120 keys). Not read: a cached one's (None, read by `_decoded`
    if evicted since) and the raw blocks of a rollup window that is up to date (never
    decoded). Vanished when a block is gone or changed since it was listed."""
    cache = shared_cache()
    raw_infos, rollups = planned
    raw_by_tw = _by_window(raw_infos, tier.window_ms, first, last)
    oldest_roll: dict[int, int] = {}
    for info in rollups:
        tw = Keys.block_start(info.key) // tier.window_ms
        oldest_roll[tw] = min(oldest_roll.get(tw, info.mod_revision), info.mod_revision)
    stale = {
        tw
        for tw, infos in raw_by_tw.items()
        if tw not in oldest_roll or oldest_roll[tw] <= max(i.mod_revision for i in infos)
    }
    alone = Counter(Keys.block_start(i.key) // raw.window_ms for i in raw_infos)

    def decoded_here(info: kv.KeyInfo) -> bool:  # a raw block of a stale window, not held
        start = Keys.block_start(info.key)
        # a lone block's buckets are kept under its key and the resolution
        held = alone[start // raw.window_ms] == 1 and f"{info.key}@{tier.resolution_ms}" in cache
        return start // tier.window_ms in stale and not held

    missing = [i for i in rollups if i.key not in cache]
    missing += [i for i in raw_infos if i.key not in cache and decoded_here(i)]
    got = kv.get_many([info.key for info in missing]) if missing else {}
    for info in missing:
        item = got.get(info.key)
        if item is None or item.mod_revision != info.mod_revision:
            raise Vanished(info.key)
    return [
        [
            got.get(info.key) or kv.Item(info.key, None, info.mod_revision, 0)  # type: ignore[arg-type]
            for info in part
        ]
        for part in planned
    ]


def _raw_buckets(
    keys: Keys,
    uuid: str,
    first: int,
    last: int,
    step_ms: int,
    raw: Tier,
    planned: list[kv.KeyInfo] | None,
    strict: bool = False,
) -> Buckets:
    windows = iter_raw(keys, uuid, first, last, raw.window_ms, planned=planned, strict=strict)
    return rebucket(concat([aggregate(s, step_ms) for s in windows]), step_ms)


def _buckets(
    keys: Keys,
    uuid: str,
    first: int,
    last: int,
    step_ms: int,
    raw: Tier,
    tier: Tier | None,
    prefetched: list[list[kv.Item]] | None,
) -> Buckets:
    """read_buckets' buckets of [first, last], not yet trimmed to the query's end.
    `prefetched`: the planned raw blocks and rollup blocks, with their values."""
    if tier is None:
        return _raw_buckets(keys, uuid, first, last, step_ms, raw, None)
    if prefetched:
        raw_infos = [kv.KeyInfo(i.key, i.mod_revision) for i in prefetched[0]]
        rollups = prefetched[1]
    else:
        raw_infos = kv.keys_in_range(*keys.block_range(uuid, first, last, raw.window_ms))
        rollups = kv.get_range(*keys.rollup_range(tier.name, uuid, first, last, tier.window_ms))
    raw_by_tw = _by_window(raw_infos, tier.window_ms, first, last)
    roll_by_tw: dict[int, list[kv.Item]] = defaultdict(list)
    for item in rollups:
        roll_by_tw[Keys.block_start(item.key) // tier.window_ms].append(item)
    parts = []
    for tw in sorted(set(raw_by_tw) | set(roll_by_tw)):
        newest_raw = max((i.mod_revision for i in raw_by_tw.get(tw, [])), default=0)
        rolled = roll_by_tw.get(tw, [])
        if rolled and min(r.mod_revision for r in rolled) > newest_raw:
            parts += [_decoded(r.key, r.value, decode_rollup) for r in rolled]
        else:
            old = [_decoded(r.key, r.value, decode_rollup) for r in rolled]
            items = _stale_items(keys, uuid, tw, tier, raw, first, last, prefetched)
            parts.append(refreshed(old, items, raw.window_ms, tier.resolution_ms, cached=True))
    return rebucket(concat(parts), step_ms)


def _stale_items(
    keys: Keys,
    uuid: str,
    tw: int,
    tier: Tier,
    raw: Tier,
    first: int,
    last: int,
    prefetched: list[list[kv.Item]] | None,
) -> list[kv.Item]:
    """The raw blocks a rollup window not up to date is recomputed from.

    Listed along (`bucket_ranges`): the whole raw windows of the window that [first, last]
    touches, already at hand (`_planned_items`). The buckets of [first, last] are the same
    as from the rollup window's every raw block: each raw window is whole, and the ones left
    out only hold buckets outside [first, last], trimmed from the answer. Else one range
    read of the rollup window's raw blocks.
    """
    first_tw = tw * tier.window_ms
    last_tw = first_tw + tier.window_ms - 1
    if not prefetched:
        return _span_items(keys.blocks_prefix(uuid), first_tw, last_tw)
    w_first, w_last = first // raw.window_ms, last // raw.window_ms
    out = []
    for item in prefetched[0]:
        t_first = Keys.block_start(item.key)
        if first_tw <= t_first <= last_tw and w_first <= t_first // raw.window_ms <= w_last:
            out.append(item)
    return out


def refreshed(
    old: list[Buckets],
    raw_items: list[kv.Item],
    raw_window_ms: int,
    resolution_ms: int,
    cached: bool = False,
) -> Buckets:
    """Rollup buckets recomputed from the raw blocks there are, old ones kept elsewhere.

    Buckets in raw windows that still hold raw blocks come from raw; buckets whose
    raw data is gone (retention) keep their rolled-up values. `cached` (readers):
    each raw window is aggregated on its own and, when one block holds it, its
    buckets are kept in the block cache (compaction reads each block once: it
    leaves the cache alone).
    """
    by_window: dict[int, list[kv.Item]] = defaultdict(list)
    for item in raw_items:
        by_window[Keys.block_start(item.key) // raw_window_ms].append(item)
    if not raw_items:
        fresh = []
    elif cached and raw_window_ms % resolution_ms == 0:  # no bucket straddles two windows
        fresh = [_window_buckets(by_window[w], resolution_ms) for w in sorted(by_window)]
    else:  # a reader's blocks decode through the cache (a planned one may carry no value)
        fresh = [
            aggregate(_merged(raw_items) if cached else merge_blocks(raw_items), resolution_ms)
        ]
    covered = sorted(by_window)
    kept = [select(b, ~np.isin(b.ts // raw_window_ms, covered)) for b in old]
    return concat([*kept, *fresh])


def _window_buckets(items: list[kv.Item], resolution_ms: int) -> Buckets:
    """One raw window's buckets; those of a lone block are kept in the block cache under
    its key (which names its content) and the resolution."""
    if len(items) > 1:
        return aggregate(_merged(items), resolution_ms)
    key = f"{items[0].key}@{resolution_ms}"
    cache = shared_cache()
    hit = cache.get(key)
    if hit is None:
        hit = aggregate(_decoded(items[0].key, items[0].value, decode_block), resolution_ms)
        cache.put(key, hit)
    return hit


def _trim(b: Buckets, first: int, end: int) -> Buckets:
    return select(b, (b.ts >= first) & (b.ts <= end))


@dataclass(frozen=True)
class Column:
    """One metric's samples out of a set of blocks, sorted by time (kept whole in the cache)."""

    ts: np.ndarray
    value: np.ndarray


_EMPTY = Column(np.zeros(0, np.int64), np.zeros(0))


def plan_blocks(
    keys: Keys, uuids: Sequence[str], start: int, end: int, window_ms: int, fresh_s: float = 0.0
) -> dict[str, kv.Listing]:
    """Each GPU's block keys that may overlap [start, end] (the current shard): one keys-only
    transaction per 120 GPUs, where `read_series` alone plans a GPU per round trip.

    `fresh_s` > 0 lets the plans miss what was written in the last `fresh_s` seconds: a
    plan is then reused without reading etcd while the store was seen at its revision
    less than `fresh_s` ago (the Prometheus API's view of the store is that old at most,
    as its series catalog is)."""
    return _plans.get(keys, uuids, start, end, window_ms, fresh_s)


class _Plans:
    """The last plans of each (shard, root, span), reused while the store's revision is the
    one they were read at: nothing was written since, so the keys are the same. Checking
    the revision is one small read (~0.3 ms) where planning a fleet makes etcd read every
    planned block (~3 ms for 1,600); a dashboard's panels refreshed together, or a store
    between uploads, skip it. Any write in the shard (an upload, a compaction) ends it.

    Each plan is kept with when it was last confirmed: when the read that made it, or the
    last revision check that found it current, was sent (every write acknowledged before
    then is in it); a check for another plan that finds the store at its revision
    confirms it too. A caller that accepts `fresh_s` of lag skips the check while that is
    recent enough."""

    def __init__(self, size: int = 256, clock: Callable[[], float] = time.monotonic) -> None:
        self._size = size
        self._clock = clock
        self._lock = threading.Lock()
        # span -> (revision, plans, confirmed)
        self._held: dict[tuple, tuple[int, dict[str, kv.Listing], float]] = {}
        self._seen: dict[tuple, tuple[int, float]] = {}  # (client, shard) -> revision, sent

    def get(
        self,
        keys: Keys,
        uuids: Sequence[str],
        start: int,
        end: int,
        window_ms: int,
        fresh_s: float = 0.0,
    ) -> dict[str, kv.Listing]:
        # the client names the etcd (a new one after a fork or a settings change)
        store = (id(client.get()), shards.current())
        span = (*store, keys.root, start, end, window_ms)
        with self._lock:
            held = self._held.get(span)
            seen = self._seen.get(store)
        if held is not None and all(u in held[1] for u in uuids):
            revision, plans, confirmed = held
            if seen is not None and seen[0] == revision:
                confirmed = max(confirmed, seen[1])
            if self._clock() - confirmed < fresh_s:
                return {u: plans[u] for u in uuids}
            sent = self._clock()
            now = kv.revision()
            self._saw(store, now, sent)
            if now == revision:
                self._keep(span, revision, plans, sent)
                return {u: plans[u] for u in uuids}
        ranges = [keys.block_range(u, start, end, window_ms) for u in uuids]
        sent = self._clock()
        plans = dict(zip(uuids, kv.keys_in_ranges(ranges), strict=True))
        revisions = {p.revision for p in plans.values()}
        if len(revisions) == 1:  # one transaction (up to 120 GPUs): one revision names it
            revision = revisions.pop()
            self._saw(store, revision, sent)
            self._keep(span, revision, plans, sent)
        return plans

    def _keep(self, span: tuple, revision: int, plans: dict, confirmed: float) -> None:
        with self._lock:
            if len(self._held) >= self._size:
                self._held.clear()  # a bound, not a policy
            self._held[span] = (revision, plans, confirmed)

    def _saw(self, store: tuple, revision: int, sent: float) -> None:
        with self._lock:
            if len(self._seen) >= self._size:
                self._seen.clear()
            old = self._seen.get(store)
            if old is None or (revision, sent) > old:  # never back to an older revision
                self._seen[store] = (revision, sent)


_plans = _Plans()


def read_series(
    keys: Keys,
    uuid: str,
    start: int,
    end: int,
    window_ms: int,
    metrics: Sequence[str],
    planned: kv.Listing | None = None,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{metric: (ts, values)} of the wanted metrics in [start, end], sorted by time.

    One keys-only read plans the blocks (`planned`: already read by `plan_blocks`).
    Each metric's column over exactly those blocks is kept in the block cache under a
    digest of their keys and revisions: block keys name their content, so a plan seen
    again (a dashboard refreshing) is answered without a block read or a Python loop
    over windows. Else window by window as `iter_raw` reads them (the block cache, one
    consistent read per window); windows are disjoint in time, so a metric's column is
    the concatenation of its parts, with no re-sort. Memory follows [start, end].
    The arrays returned are read-only (shared with the cache).
    """
    if planned is None:
        planned = plan_blocks(keys, [uuid], start, end, window_ms)[uuid]
    names = _column_names(keys, uuid, planned, metrics)
    cache = shared_cache()
    columns = {m: cache.get(name) if name else _EMPTY for m, name in names.items()}
    todo = [m for m, col in columns.items() if col is None]
    if todo:
        built = _columns(keys.blocks_prefix(uuid), planned.infos, window_ms, todo)
        for m, col in built.items():
            cache.put(names[m], col)
            columns[m] = col
    return {m: _clip_column(col, start, end) for m, col in columns.items()}  # type: ignore[arg-type]


# A fleet's newest blocks fetched together when at most this many (10 transactions): a
# live store's blocks since the last read, one small block per GPU and scrape.
_PREFETCH_MAX = 1200


def prefetch_newest(
    keys: Keys, plans: dict[str, kv.Listing], window_ms: int, metrics: dict[str, list[str]]
) -> bool:
    """Read, in one transaction per 120 keys, the blocks of each planned GPU's newest window
    that the cache does not hold (only those added since, when the window grows: `_Grown`),
    and keep them decoded (none when they are more than _PREFETCH_MAX). Live data writes a
    block per GPU and scrape there: the GPUs' reads then find them cached, instead of taking
    a round trip each. The current shard.

    True when `read_series` of these plans and metrics needs no read now: the newest
    blocks are cached and so are the older windows' columns."""
    cache = shared_cache()
    wanted: dict[str, str] = {}  # block key -> its window's group in the cache
    ready = True
    for uuid, planned in plans.items():
        if not len(planned):
            continue
        older, newest = _split(planned.infos, window_ms)
        prefix = keys.blocks_prefix(uuid)
        w = Keys.block_start(newest[0].key) // window_ms
        grown = _Grown.find(prefix, w, newest)  # its kept blocks are not read again
        need = newest if grown is None else grown.added
        wanted.update((i.key, f"{prefix}{w}") for i in need if i.key not in cache)
        base = _history_base(prefix, older)
        ready = ready and (not older or all(base + m in cache for m in metrics[uuid]))
        if len(wanted) > _PREFETCH_MAX:
            return False
    for item in kv.get_many(list(wanted)).values() if wanted else ():
        _decoded(item.key, item.value, decode_block, wanted[item.key])
    return ready


def _split(infos: list[kv.KeyInfo], window_ms: int) -> tuple[list, list]:
    """A plan's blocks as (older windows', newest window's): key order is time order."""
    newest = Keys.block_start(infos[-1].key) // window_ms
    cut = len(infos)
    while cut and Keys.block_start(infos[cut - 1].key) // window_ms == newest:
        cut -= 1
    return infos[:cut], infos[cut:]


def _history_base(prefix: str, older: list[kv.KeyInfo]) -> str:
    """Where the older windows' columns are cached: named by their blocks."""
    return f"{prefix}history-columns/{_digest(older)}/"


def cached_series(
    keys: Keys,
    uuid: str,
    start: int,
    end: int,
    metrics: Sequence[str],
    planned: kv.Listing,
) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """What `read_series` answers for this plan when the cache holds every metric's column,
    else None (nothing is read): callers read the misses in parallel."""
    cache = shared_cache()
    out = {}
    for m, name in _column_names(keys, uuid, planned, metrics).items():
        col = cache.get(name) if name else _EMPTY
        if col is None:
            return None
        out[m] = _clip_column(col, start, end)
    return out


def _column_names(
    keys: Keys, uuid: str, planned: kv.Listing, metrics: Sequence[str]
) -> dict[str, str]:
    """The cache key of each metric's column over the planned blocks ("" when there are
    none). The listing's digest names its keys, which end in a digest of their content,
    and their revisions, which order equal uploads when merged: never stale."""
    if not len(planned):
        return dict.fromkeys(metrics, "")
    base = f"{keys.blocks_prefix(uuid)}columns/{planned.digest}/"
    return {m: base + m for m in metrics}


def _columns(
    prefix: str, infos: list[kv.KeyInfo], window_ms: int, metrics: Sequence[str]
) -> dict[str, Column]:
    """Each metric's samples in every planned block, concatenated window by window
    (windows are disjoint in time).

    Live data changes a GPU's newest window only: the older windows' columns are cached
    as one (under a digest of their blocks), and each window's on its own, so a new
    block costs one window's decode and one concatenation, not the whole span's again.
    """
    windows: dict[int, list[kv.KeyInfo]] = defaultdict(list)
    for info in infos:
        windows[Keys.block_start(info.key) // window_ms].append(info)
    order = sorted(windows)
    older, newest = order[:-1], order[-1:]
    cache = shared_cache()
    base = _history_base(prefix, [i for w in older for i in windows[w]])
    history = {m: cache.get(base + m) if older else _EMPTY for m in metrics}
    todo = [m for m, col in history.items() if col is None]
    # one pass (one fetch of the missing blocks) over the windows that are needed
    wanted = (older if todo else []) + newest
    read = _window_columns(prefix, windows, wanted, window_ms, metrics, growing=order[-1])
    if todo:
        for m, col in _joined({m: read[m][:-1] for m in todo}).items():
            cache.put(base + m, col)
            history[m] = col
    return _joined({m: [history[m], read[m][-1]] for m in metrics})  # type: ignore[list-item]


def _joined(parts: dict[str, list[Column]]) -> dict[str, Column]:
    out = {}
    for m, cols in parts.items():
        cols = [c for c in cols if len(c.ts)]
        if len(cols) == 1:
            out[m] = cols[0]
        elif cols:
            out[m] = Column(
                np.concatenate([c.ts for c in cols]), np.concatenate([c.value for c in cols])
            )
        else:
            out[m] = _EMPTY
    return out


def _window_columns(
    prefix: str,
    windows: dict[int, list[kv.KeyInfo]],
    order: list[int],
    window_ms: int,
    metrics: Sequence[str],
    growing: int | None = None,
) -> dict[str, list[Column]]:
    """Each metric's column of each window in `order`, cached under a digest of the
    window's blocks; the windows not cached are read as `iter_raw` reads them.

    The `growing` window (a GPU's newest, which live data writes a block to at every
    scrape) keeps its merged samples with the blocks they came from: a new block is
    merged onto them (`_Grown`) instead of every block of the window again."""
    cache = shared_cache()
    names = {w: f"{prefix}window-columns/{_digest(windows[w])}/" for w in order}
    held = {(w, m): cache.get(names[w] + m) for w in order for m in metrics}
    stale = [w for w in order if any(held[w, m] is None for m in metrics)]
    for g in range(0, len(stale), _WINDOWS_PER_FETCH):
        group = stale[g : g + _WINDOWS_PER_FETCH]
        grown = _Grown.find(prefix, growing, windows[growing]) if growing in group else None
        need = [i for w in group if w != growing or not grown for i in windows[w]]
        need += grown.added if grown else []
        fetched = _fetch_missing(need)
        for w in group:
            if w == growing:
                samples = _Grown.read(prefix, w, window_ms, windows[w], fetched, grown)
            else:
                samples = _window(prefix, w, window_ms, windows[w], fetched)
            for metric in metrics:
                column = _EMPTY
                if metric in samples.names:
                    sel = samples.metric == samples.names.index(metric)
                    column = Column(samples.ts[sel], samples.value[sel])
                cache.put(names[w] + metric, column)
                held[w, metric] = column
    return {m: [held[w, m] for w in order] for m in metrics}  # type: ignore[misc]


@dataclass(frozen=True)
class _Grown:
    """A growing window's merged samples (`ts`, `metric`, `value`, `names`: a Samples'
    fields, so the cache counts their bytes) and the blocks they came from, with the latest
    `t_last` and the greatest merge order among those blocks.

    A new listing of the window that still holds every one of those blocks takes the
    samples and merges only the blocks `added` since, when that is exact: each added block
    starts after every kept sample (appended), or comes later in merge order than every
    kept block (merged on top, `store/order.py`'s rule). Anything else (a compaction
    replaced blocks, a late chunk of an older upload) reads the window whole."""

    ts: np.ndarray
    metric: np.ndarray
    value: np.ndarray
    names: tuple[str, ...]
    blocks: frozenset[kv.KeyInfo]
    t_last: int
    newest: tuple[int, int, int]
    added: tuple[kv.KeyInfo, ...] = ()

    @property
    def extra_bytes(self) -> int:
        """The block set's own memory (a key, a tuple and a set slot each), for the cache."""
        return sum(len(i.key) + 160 for i in self.blocks)

    @staticmethod
    def find(prefix: str, w: int, infos: list[kv.KeyInfo]) -> _Grown | None:
        held = shared_cache().get(f"{prefix}window-grown/{w}")
        if held is None or not held.blocks.issubset(infos):
            return None
        added = tuple(i for i in infos if i not in held.blocks)
        after = all(Keys.block_start(i.key) > held.t_last for i in added)
        if not after and not all(block_order(*i) > held.newest for i in added):
            return None
        return dataclasses.replace(held, added=added)

    @staticmethod
    def read(
        prefix: str,
        w: int,
        window_ms: int,
        infos: list[kv.KeyInfo],
        fetched: dict[str, kv.Item],
        grown: _Grown | None,
    ) -> Samples:
        """The window's merged samples (from `grown` when given), kept for the next read."""
        cache = shared_cache()
        parts = None if grown is None else _held_blocks(f"{prefix}{w}", grown.added, fetched)
        if grown is None or parts is None:
            samples = _window(prefix, w, window_ms, infos, fetched)
        else:
            cache.settle(f"{prefix}{w}", {i.key for i in infos})
            kept = Samples(grown.ts, grown.metric, grown.value, grown.names)
            samples = _on_top(kept, _merge_ordered(parts)) if parts else kept
        names = [Keys.parse_block(i.key) for i in infos]
        cache.put(
            f"{prefix}window-grown/{w}",
            _Grown(
                samples.ts,
                samples.metric,
                samples.value,
                samples.names,
                frozenset(infos),
                max(n.t_last for n in names),
                max(block_order(*i) for i in infos),
            ),
        )
        return samples


def _on_top(kept: Samples, added: Samples) -> Samples:
    """`added` merged over `kept` (its samples win): appended when it starts later."""
    if kept.names == added.names and len(kept) and added.ts[0] > kept.ts[-1]:
        return Samples(
            np.concatenate([kept.ts, added.ts]),
            np.concatenate([kept.metric, added.metric]),
            np.concatenate([kept.value, added.value]),
            kept.names,
        )
    return merge([kept, added])


def _digest(infos: list[kv.KeyInfo]) -> str:
    """Names the merged content of these blocks: their keys (which end in a digest of their
    content) and revisions (which order equal uploads when merged)."""
    text = "\n".join([f"{key} {revision}" for key, revision in infos])
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _clip_column(col: Column, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    ts = col.ts
    if not len(ts) or (ts[0] >= start and ts[-1] <= end):
        return ts, col.value
    lo = int(np.searchsorted(ts, start, side="left"))
    hi = int(np.searchsorted(ts, end, side="right"))
    return ts[lo:hi], col.value[lo:hi]


def raw_from(planned: kv.Listing, window_ms: int) -> int | None:
    """The start of the earliest raw window holding a block in a plan (None: no block).
    PromQL reads rollups only before it: from there on raw blocks are the truth.
    Block keys begin with their start, zero-padded: the first key in key order has the
    earliest (a fleet's plans hold thousands of keys, decoded only where needed)."""
    first = planned.first_key()
    return None if first is None else Keys.block_start(first) // window_ms * window_ms


def read_rollups(
    keys: Keys, uuids: Sequence[str], tier: Tier, start: int, end: int
) -> dict[str, Buckets]:
    """Each GPU's rollup buckets of `tier` starting in [start, end], sorted by (metric,
    bucket), for PromQL (the caller uses them only where raw blocks are gone).

    One keys-only transaction lists the blocks of every GPU (the current shard); a GPU's
    combined buckets are kept in the block cache under the digest of its listing, and on a
    miss only the blocks the cache does not hold are read (a block key names its content);
    a GPU whose block vanished in between (a compaction replaced it) is read again by range.
    """
    first, last = _bucket_span(start, end, tier.resolution_ms)
    ranges = [keys.rollup_range(tier.name, u, first, last, tier.window_ms) for u in uuids]
    listings = kv.keys_in_ranges(ranges)
    cache = shared_cache()
    # a GPU's buckets over exactly these blocks, combined once: the digest names the keys
    # (which name their content) and their revisions
    names = [
        f"{keys.rollups_prefix(tier.name, u)}buckets/{listing.digest}"
        for u, listing in zip(uuids, listings, strict=True)
    ]
    held = [cache.get(name) for name in names]
    todo = [n for n, h in enumerate(held) if h is None]
    fetched = _fetch_missing([i for n in todo for i in listings[n].infos])
    out = {}
    for n, uuid in enumerate(uuids):
        if held[n] is None:
            held[n] = _rollup_buckets(listings[n], ranges[n], fetched, tier.resolution_ms)
            cache.put(names[n], held[n])
        out[uuid] = _trim(held[n], first, end)
    return out


def _rollup_buckets(
    listing: kv.Listing, span: tuple[str, str], fetched: dict[str, kv.Item], resolution_ms: int
) -> Buckets:
    """The buckets of a listing's rollup blocks; read again by range when one of them
    vanished since it was listed (a compaction replaced it)."""
    cache = shared_cache()
    parts = [cache.get(i.key) for i in listing.infos]
    if any(p is None and i.key not in fetched for p, i in zip(parts, listing.infos, strict=True)):
        parts = [_decoded(it.key, it.value, decode_rollup) for it in kv.get_range(*span)]
    else:
        parts = [
            p if p is not None else _decoded(i.key, fetched[i.key].value, decode_rollup)
            for p, i in zip(parts, listing.infos, strict=True)
        ]
    return rebucket(concat(parts), resolution_ms)
