"""Rollup blocks written with an older, longer window, split once into today's windows.

Rollup windows were `resolution x 1440` (5 days for 5-minute buckets, 60 days for
hourly ones) before they became at most one day (store/tiers.py). Reads and
compaction find a window's rollup blocks by where they start, so an old block
that starts in one day and covers the next ones would be missed for those days.
The first compaction after an upgrade splits each such block into one block per
current window, merged with what that window already holds, in one guarded
transaction, then notes the window it checked for (`Keys.rollup_layout`), so
later runs cost one key read per tier. Docs: docs/STORAGE.md, "Upgrades".
"""

from __future__ import annotations

import numpy as np

from store import kv
from store.codec import block_digest
from store.keys import BlockName, Keys, window_span
from store.read import refreshed
from store.rollup import Buckets, decode_rollup, encode_rollup, select
from store.tiers import Tier


def split_old_windows(keys: Keys, tier: Tier, raw: Tier) -> tuple[int, int]:
    """Split the tier's blocks that cross a window boundary: (blocks split, conflicts).

    Marks the tier as checked for its window only when nothing was left to split.
    """
    marker = keys.rollup_layout(tier.name)
    done = kv.get(marker)
    if done is not None and int(done.value) == tier.window_ms:
        return 0, 0
    prefix = keys.all_rollups(tier.name)
    crossing = [
        info.key
        for info in kv.keys_in_range(prefix, kv.prefix_end(prefix))
        if _crosses(Keys.parse_block(info.key), tier.window_ms)
    ]
    split = conflicts = 0
    for key in crossing:
        if _split_one(keys, tier, raw, key):
            split += 1
        else:
            conflicts += 1
    if not conflicts:
        kv.put(marker, str(tier.window_ms).encode())
    return split, conflicts


def _crosses(name: BlockName, window_ms: int) -> bool:
    return name.t_first // window_ms != name.t_last // window_ms


def _split_one(keys: Keys, tier: Tier, raw: Tier, key: str) -> bool:
    """One old block -> one block per window it covers; False when a write raced it."""
    uuid, name = Keys.uuid_of(key), Keys.parse_block(key)
    w = tier.window_ms
    first, last = (name.t_first // w) * w, (name.t_last // w) * w + w - 1
    rev = kv.revision()  # before reading: anything written after it fails the compare
    guards = [
        window_span(keys.rollups_prefix(tier.name, uuid), first, last),
        window_span(keys.blocks_prefix(uuid), first, last),
    ]
    item = kv.get(key)
    if item is None:
        return True  # another run split it
    old = decode_rollup(item.value)
    ops = [kv.op_delete(key)]
    for start in range(first, last + 1, w):
        ops += _window_ops(keys, tier, raw, uuid, start, old, key)
    return kv.txn([kv.cmp_range_unchanged(s, e, rev) for s, e in guards], ops)


def _window_ops(
    keys: Keys, tier: Tier, raw: Tier, uuid: str, start: int, old: Buckets, old_key: str
) -> list:
    """The ops that make window [start, start + window) hold one block: the old block's
    buckets there, under the buckets of blocks already in the window, refreshed from the
    window's raw blocks as compaction builds a rollup (raw wins where it still exists)."""
    end = start + tier.window_ms - 1
    here = [
        it
        for it in kv.get_range(*window_span(keys.rollups_prefix(tier.name, uuid), start, end))
        if it.key != old_key
    ]
    present = [decode_rollup(it.value) for it in here]
    part = select(old, (old.ts >= start) & (old.ts <= end))
    taken = np.concatenate([b.ts for b in present]) if present else np.zeros(0, np.int64)
    part = select(part, ~np.isin(part.ts, taken))  # a block of this window is newer
    raw_items = kv.get_range(*window_span(keys.blocks_prefix(uuid), start, end))
    buckets = refreshed([*present, part], raw_items, raw.window_ms, tier.resolution_ms)
    ops = [kv.op_delete(it.key) for it in here]
    if len(buckets):
        data = encode_rollup(buckets)
        new = keys.rollup(
            tier.name, uuid, int(buckets.ts.min()), int(buckets.ts.max()), block_digest(data)
        )
        ops = [op for op, it in zip(ops, here, strict=True) if it.key != new]
        ops.append(kv.op_put(new, data))
    return ops
