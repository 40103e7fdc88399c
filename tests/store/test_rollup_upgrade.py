"""Rollup blocks written with the old 5-day window of the 5m tier are still read after the
upgrade to one-day windows: the first compaction splits them, losing no window (real etcd)."""

from __future__ import annotations

import numpy as np
import pytest

from store import kv
from store.codec import block_digest, samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.read import read_buckets
from store.registry import known
from store.rollup import aggregate, encode_rollup
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
DAY = 24 * HOUR
OLD_WINDOW = 300_000 * 1440  # 5 days: the 5m tier's window before issue 18
RAW = Tier("raw", 0, 2 * DAY, HOUR)
FIVE = Tier("5m", 300_000, 400 * DAY, DAY)
TIERS = [RAW, FIVE]
START = (1_752_800_400_000 // OLD_WINDOW) * OLD_WINDOW  # an old window boundary, July 2025


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def old_rows() -> list[tuple[int, str, float]]:
    """Five days, one sample every 10 minutes, values that differ per day."""
    return [(START + i * 600_000, "util", float(i % 50)) for i in range(5 * 144)]


def write_old_rollup(keys: Keys, uuid: str) -> None:
    """What the previous version's compaction wrote: one block for the 5-day window."""
    buckets = aggregate(samples_from_rows(old_rows()), FIVE.resolution_ms)
    data = encode_rollup(buckets)
    first, last = int(buckets.ts.min()), int(buckets.ts.max())
    kv.put(keys.rollup(FIVE.name, uuid, first, last, block_digest(data)), data)


def day_query(keys: Keys, day: int):
    start = START + day * DAY
    return read_buckets(keys, "GPU-1", start, start + DAY - 1, 300_000, RAW, FIVE)


def test_old_five_day_rollup_blocks_are_read_for_every_day_after_compaction(keys):
    write_old_rollup(keys, "GPU-1")
    expected = aggregate(samples_from_rows(old_rows()), 300_000)
    assert len(day_query(keys, 3)) == 0  # the upgrade gap: day 3 is found by no window
    report = compact(keys, TIERS)
    assert report.rollups_split == 1 and not report.conflicts and not report.failures
    names = [Keys.parse_block(i.key) for i in kv.get_prefix(keys.rollups_prefix("5m", "GPU-1"))]
    assert len(names) == 5
    assert all(n.t_first // DAY == n.t_last // DAY for n in names)
    for day in range(5):
        got = day_query(keys, day)
        sel = (expected.ts >= START + day * DAY) & (expected.ts < START + (day + 1) * DAY)
        assert len(got) == int(sel.sum()) == 144
        for agg in ("min", "max", "sum", "count", "last"):
            assert np.array_equal(got.value(agg), expected.value(agg)[sel]), (day, agg)
    assert compact(keys, TIERS).rollups_split == 0  # checked once: the layout marker


def test_raw_blocks_still_present_win_over_the_old_rollup_when_it_is_split(keys):
    write_old_rollup(keys, "GPU-1")
    day4 = START + 4 * DAY
    fresh = [(day4 + i * 600_000, "util", 99.0) for i in range(6)]
    batch = GpuBatch(
        {"uuid": "GPU-1", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
         "model": "", "driver": "", "labels": {}},
        samples_from_rows(fresh),
    )  # fmt: skip
    write_chunk(keys, "j", 0, [batch], RAW.window_ms)
    compact(keys, TIERS, retention=False)
    got = read_buckets(keys, "GPU-1", day4, day4 + HOUR - 1, 300_000, RAW, FIVE)
    assert got.ts.tolist() == [t for t, _, _ in fresh]  # that hour's old buckets gave way
    assert got.max.tolist() == [99.0] * 6
    assert len(day_query(keys, 2)) == 144  # the other days keep the old buckets
