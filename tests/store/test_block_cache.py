"""The decoded-block cache (store/cache.py): shared by every reader, bounded in bytes, and
never stale because a block key names its content. On real etcd."""

from __future__ import annotations

import numpy as np
import pytest

from store import cache, kv
from store.cache import BlockCache
from store.codec import Samples, samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.read import iter_raw
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10 * 24 * HOUR, HOUR)
HOUR0 = (1_752_800_400_000 // HOUR) * HOUR


def facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


def write(keys: Keys, seq: int, rows: list[tuple[int, str, float]]) -> None:
    batch = GpuBatch(facts("GPU-1"), samples_from_rows(rows))
    write_chunk(keys, "job", seq, [batch], RAW.window_ms)


def read_all(keys: Keys) -> list[tuple[int, str, float]]:
    return [r for s in iter_raw(keys, "GPU-1", 0, 10**13 - 1, RAW.window_ms) for r in s.rows()]


def block_keys(keys: Keys) -> set[str]:
    prefix = keys.blocks_prefix("GPU-1")
    return {i.key for i in kv.keys_in_range(prefix, kv.prefix_end(prefix))}


@pytest.fixture
def keys(cached_keys: Keys) -> Keys:
    return cached_keys


def test_a_second_read_takes_every_block_from_the_cache(keys, gets):
    rows = [(HOUR0 + i * 10_000, m, float(i)) for i in range(720) for m in ("a", "b")]
    write(keys, 0, rows)  # two hours: two blocks
    gets.clear()
    first = read_all(keys)
    assert gets == ["get_many"]  # both blocks in one round trip
    assert block_keys(keys) <= set(cache.shared()._entries)
    gets.clear()
    assert read_all(keys) == first == sorted(rows, key=lambda r: (r[0], r[1]))
    assert gets == []  # only the keys-only plan went to etcd


def test_a_compactions_new_block_is_read_and_the_old_ones_evicted(keys, gets):
    rows = [(HOUR0 + i * 10_000, m, float(i)) for i in range(300) for m in ("a", "b")]
    for seq in range(0, 600, 100):  # six chunks in one hour: six blocks
        write(keys, seq, rows[seq : seq + 100])
    before = read_all(keys)
    old = block_keys(keys)
    assert len(old) == 6 and old <= set(cache.shared()._entries)
    compact(keys, [RAW], retention=False)
    new = block_keys(keys)
    assert len(new) == 1 and not new & old
    gets.clear()
    assert read_all(keys) == before
    assert gets == ["get_many"]  # the merged block was fetched, not served from old entries
    entries = set(cache.shared()._entries)
    assert new <= entries and not old & entries  # evicted at once, not left to age out


def test_newer_data_in_a_new_block_wins_over_a_cached_one(keys):
    write(keys, 0, [(HOUR0, "a", 1.0), (HOUR0 + 10_000, "a", 2.0)])
    assert [v for _, _, v in read_all(keys)] == [1.0, 2.0]
    write(keys, 1, [(HOUR0 + 10_000, "a", 5.0)])  # a re-upload corrects one sample
    assert [v for _, _, v in read_all(keys)] == [1.0, 5.0]


def sample_block(n: int) -> Samples:
    return Samples(np.arange(n), np.zeros(n, np.int32), np.ones(n), ("a",))


def test_it_stays_within_its_bytes_dropping_the_least_recently_used():
    one = sample_block(1000)  # 20 kB of arrays
    lru = BlockCache(capacity=70_000)
    for key in ("k1", "k2", "k3"):
        lru.put(key, one)
    assert lru.get("k1") is one  # k1 is now the most recently used
    lru.put("k4", one)
    assert "k2" not in lru and {"k1", "k3", "k4"} <= set(lru._entries)
    assert lru.size <= lru.capacity and lru.evictions == 1
    lru.put("huge", sample_block(10_000))  # larger than the cache: not kept, nothing lost
    assert "huge" not in lru and len(lru) == 3


def test_cached_arrays_are_read_only_so_no_reader_can_change_another_ones_answer():
    block = sample_block(10)
    BlockCache(capacity=1 << 20).put("k", block)
    with pytest.raises(ValueError):
        block.value[0] = 2.0


def test_a_zero_budget_turns_it_off(settings, etcd_root):
    settings.READ_CACHE_BYTES = 0
    off = cache.shared()
    off.put("k", sample_block(10))
    assert len(off) == 0 and off.capacity == 0
