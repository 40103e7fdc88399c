"""Which rollup windows are closed, and which closed since the last compaction run.

A rollup block is written once, when its window is over, instead of being
rewritten by every run that brings new samples into it: each rewrite of a day
block would stay in etcd's MVCC history until etcd compacts it, and that history
counts against the quota (docs/CAPACITY.md). Until then reads compute the open
window from raw blocks (store/read.py::read_buckets), so answers do not change.

A window is *closed* once the newest sample in the store is one raw window past
its end (the grace lets late scrapes and the last chunks of an upload land).
Samples that arrive later for a closed window make its raw blocks dirty, and the
next run rebuilds that rollup: correct, at the cost of one rewrite.
"""

from __future__ import annotations

from store import kv
from store.keys import Keys, window_span
from store.tiers import Tier


def closed_until(tier: Tier, raw: Tier, newest_ms: int) -> int:
    """Every window of `tier` ending at or before this time (ms) is closed."""
    return max(0, (newest_ms - raw.window_ms) // tier.window_ms * tier.window_ms)


def is_closed(tier: Tier, tw: int, until: int) -> bool:
    """Whether window number `tw` of `tier` ends at or before `until`."""
    return (tw + 1) * tier.window_ms <= until


def rolled_until(keys: Keys, tier: Tier) -> int:
    """Up to where the previous runs rolled closed windows up (0 before the first run)."""
    item = kv.get(keys.rolled_marker(tier.name))
    return int(item.value) if item else 0


def newly_closed(
    keys: Keys, tier: Tier, uuids: list[str], since: int, until: int
) -> set[tuple[str, int]]:
    """(uuid, window number) of windows in [since, until) that hold raw blocks.

    One keys-only range read per GPU, and only when a window boundary was passed.
    """
    if until <= since:
        return set()
    out = set()
    for uuid in uuids:
        start, end = window_span(keys.blocks_prefix(uuid), since, until - 1)
        for info in kv.keys_in_range(start, end):
            out.add((uuid, Keys.parse_block(info.key).t_first // tier.window_ms))
    return out


def save_rolled_until(keys: Keys, tier: Tier, until: int) -> None:
    kv.put(keys.rolled_marker(tier.name), str(until).encode())
