"""Retention counts back from each GPU's own newest sample, capped by the clock."""

from __future__ import annotations

import pytest

from store import kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.read import read_samples
from store.registry import known
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
DAY = 24 * HOUR
RAW = Tier("raw", 0, 7 * DAY, HOUR)
ONE_MIN = Tier("1m", 60_000, 30 * DAY, DAY)
TIERS = [RAW, ONE_MIN]
JULY = 1_752_871_200_000  # 2025-07-18T20:40:00Z
FAR_FUTURE = 4_102_444_800_000  # 2100-01-01T00:00:00Z
NOW = 1_796_083_200_000  # 2026-12-01: the clock of the run


def write(keys: Keys, seq: int, uuid: str, ts: int) -> None:
    facts = {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    rows = [(ts + i * 10_000, "m", float(i)) for i in range(6)]
    write_chunk(keys, "j", seq, [GpuBatch(facts, samples_from_rows(rows))], RAW.window_ms)


def raw_count(keys: Keys, uuid: str) -> int:
    return len(read_samples(keys, uuid, 0, 10**13 - 1, RAW.window_ms))


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_one_far_future_sample_deletes_no_other_gpus_data(keys):
    for i in range(5):
        write(keys, i, f"GPU-{i}", JULY)
    write(keys, 5, "GPU-4", FAR_FUTURE)  # one GPU gets a row stamped 2100
    report = compact(keys, TIERS, now_ms=NOW)
    for i in range(4):
        assert raw_count(keys, f"GPU-{i}") == 6
        assert kv.count_prefix(keys.rollups_prefix("1m", f"GPU-{i}")) == 1
    # the clock caps the reference: GPU-4's July data is older than 7 d before now
    # whatever, and its 2100 block stays (nothing is ahead of it)
    assert raw_count(keys, "GPU-4") == 6
    assert report.deleted_by_retention == 2  # GPU-4's July raw block and its 1m rollup
    assert not report.failures


def test_loading_an_old_file_keeps_it(keys):
    """The real export is from July 2025; the clock says December 2026."""
    write(keys, 0, "GPU-1", JULY)
    compact(keys, TIERS, now_ms=NOW)
    assert raw_count(keys, "GPU-1") == 6


def test_a_gpus_own_newer_samples_age_its_old_raw_blocks_into_rollups(keys):
    write(keys, 0, "GPU-1", JULY)
    write(keys, 1, "GPU-1", JULY + 10 * DAY)
    write(keys, 2, "GPU-2", JULY)  # another GPU, no newer data: kept whole
    compact(keys, TIERS, now_ms=NOW)
    assert raw_count(keys, "GPU-1") == 6  # only the newer raw block is left
    # the old day was rolled up (closed) before its raw block went; the newest is still open
    assert kv.count_prefix(keys.rollups_prefix("1m", "GPU-1")) == 1
    assert raw_count(keys, "GPU-2") == 6
