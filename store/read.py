"""Reads of one GPU's history: raw samples window by window, and downsampled buckets.

Memory stays bounded by the window, not by the query: callers consume windows
until they have a page.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import numpy as np

from store import kv
from store.codec import Samples, merge
from store.keys import Keys, window_span
from store.order import merge_blocks
from store.rollup import Buckets, aggregate, concat, decode_rollup, rebucket, select
from store.tiers import Tier


def _by_window(infos: list[kv.KeyInfo], window_ms: int, start: int, end: int) -> dict[int, list]:
    out: dict[int, list[kv.KeyInfo]] = defaultdict(list)
    for info in infos:
        name = Keys.parse_block(info.key)
        if name.t_last >= start and name.t_first <= end:
            out[name.t_first // window_ms].append(info)
    return out


def _merged(items: list[kv.Item]) -> Samples:
    """Merge blocks; the newest upload wins (store/order.py, shared with compaction)."""
    return merge_blocks(items)


def _span_items(prefix: str, first: int, last: int) -> list[kv.Item]:
    """Every block starting in [first, last], read at one revision (one range read).

    Reading a window's keys by name instead could race a compaction that merged
    them in between and come back empty: the range finds the merged block.
    """
    return kv.get_range(*window_span(prefix, first, last))


def _clip(s: Samples, start: int, end: int) -> Samples:
    sel = (s.ts >= start) & (s.ts <= end)
    return s if sel.all() else Samples(s.ts[sel], s.metric[sel], s.value[sel], s.names)


def iter_raw(
    keys: Keys, uuid: str, start: int, end: int, window_ms: int, descending: bool = False
) -> Iterator[Samples]:
    """Raw samples in [start, end], one merged window at a time, in time order.

    One keys-only range read to plan, then the blocks of each window as it is
    consumed (each sorted by (ts, metric name); windows ascending or descending).
    """
    infos = kv.keys_in_range(*keys.block_range(uuid, start, end, window_ms))
    windows = _by_window(infos, window_ms, start, end)
    prefix = keys.blocks_prefix(uuid)
    for w in sorted(windows, reverse=descending):
        items = _span_items(prefix, w * window_ms, (w + 1) * window_ms - 1)
        samples = _clip(_merged(items), start, end)
        if len(samples):
            yield samples


def read_samples(keys: Keys, uuid: str, start: int, end: int, window_ms: int) -> Samples:
    """Every sample of `uuid` in [start, end], one per (ts, metric), sorted (whole window)."""
    return merge(list(iter_raw(keys, uuid, start, end, window_ms)))


def read_buckets(
    keys: Keys, uuid: str, start: int, end: int, step_ms: int, raw: Tier, tier: Tier | None
) -> Buckets:
    """Whole `step_ms` buckets starting in [floor(start), end], sorted by (metric, bucket).

    With a rollup `tier`, each of its windows is read from its rollup block when
    that block is newer than every raw block of the window (up to date), and
    computed from raw blocks otherwise (fresh data not yet rolled up).
    """
    first = (start // step_ms) * step_ms
    last = (end // step_ms) * step_ms + step_ms - 1
    if tier is None:
        parts = [aggregate(s, step_ms) for s in iter_raw(keys, uuid, first, last, raw.window_ms)]
        return _trim(rebucket(concat(parts), step_ms), first, end)
    raw_infos = kv.keys_in_range(*keys.block_range(uuid, first, last, raw.window_ms))
    raw_by_tw = _by_window(raw_infos, tier.window_ms, first, last)
    rollups = kv.get_range(*keys.rollup_range(tier.name, uuid, first, last, tier.window_ms))
    roll_by_tw: dict[int, list[kv.Item]] = defaultdict(list)
    for item in rollups:
        roll_by_tw[Keys.parse_block(item.key).t_first // tier.window_ms].append(item)
    parts = []
    for tw in sorted(set(raw_by_tw) | set(roll_by_tw)):
        newest_raw = max((i.mod_revision for i in raw_by_tw.get(tw, [])), default=0)
        rolled = roll_by_tw.get(tw, [])
        if rolled and min(r.mod_revision for r in rolled) > newest_raw:
            parts += [decode_rollup(r.value) for r in rolled]
        else:
            old = [decode_rollup(r.value) for r in rolled]
            first_tw = tw * tier.window_ms
            items = _span_items(keys.blocks_prefix(uuid), first_tw, first_tw + tier.window_ms - 1)
            parts.append(refreshed(old, items, raw.window_ms, tier.resolution_ms))
    return _trim(rebucket(concat(parts), step_ms), first, end)


def refreshed(
    old: list[Buckets], raw_items: list[kv.Item], raw_window_ms: int, resolution_ms: int
) -> Buckets:
    """Rollup buckets recomputed from the raw blocks there are, old ones kept elsewhere.

    Buckets in raw windows that still hold raw blocks come from raw; buckets whose
    raw data is gone (retention) keep their rolled-up values.
    """
    fresh = aggregate(_merged(raw_items), resolution_ms) if raw_items else None
    covered = sorted({Keys.parse_block(i.key).t_first // raw_window_ms for i in raw_items})
    kept = [select(b, ~np.isin(b.ts // raw_window_ms, covered)) for b in old]
    return concat([*kept, *([fresh] if fresh is not None else [])])


def _trim(b: Buckets, first: int, end: int) -> Buckets:
    return select(b, (b.ts >= first) & (b.ts <= end))
