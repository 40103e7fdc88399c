"""Metric columns over a plan of blocks (store/read.py::read_series, the PromQL read path):
a fleet planned in one transaction, a plan seen again answered from the cache without a
block read, and never a stale answer, since the plan's digest names its blocks. On real etcd.
"""

from __future__ import annotations

import numpy as np
import pytest

from store import cache, kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.read import cached_series, plan_blocks, read_series
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10 * 24 * HOUR, HOUR)
HOUR0 = (1_752_800_400_000 // HOUR) * HOUR
SPAN = (HOUR0 - HOUR, HOUR0 + 3 * HOUR)


def facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


def write(keys: Keys, seq: int, rows: list[tuple[int, str, float]], uuid: str = "GPU-1") -> None:
    write_chunk(keys, "job", seq, [GpuBatch(facts(uuid), samples_from_rows(rows))], RAW.window_ms)


def series(keys: Keys, metric: str = "a", uuid: str = "GPU-1") -> list[tuple[int, float]]:
    got = read_series(keys, uuid, *SPAN, RAW.window_ms, [metric])
    ts, values = got[metric]
    return list(zip(ts.tolist(), values.tolist(), strict=True))


@pytest.fixture
def keys(cached_keys: Keys) -> Keys:
    return cached_keys


def spied(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list:
    """The argument of each call to `owner.name` from now on (each still made for real)."""
    calls: list = []
    real = getattr(owner, name)

    def spy(arg):
        calls.append(arg)
        return real(arg)

    monkeypatch.setattr(owner, name, spy)
    return calls


def test_a_plan_seen_again_is_answered_without_reading_a_block(keys, gets):
    rows = [(HOUR0 + i * 10_000, m, float(i)) for i in range(720) for m in ("a", "b")]
    write(keys, 0, rows)  # two hours: two blocks
    gets.clear()
    first = series(keys)
    assert first == [(t, v) for t, m, v in rows if m == "a"]
    assert gets == ["get_many"]  # both blocks in one round trip
    gets.clear()
    assert series(keys) == first
    assert gets == []  # only the keys-only plan went to etcd
    cache.shared().clear()  # a cache that lost the column reads the blocks again
    assert series(keys) == first and gets == ["get_many"]


def test_a_new_block_changes_the_plan_and_so_the_answer(keys):
    write(keys, 0, [(HOUR0, "a", 1.0), (HOUR0 + 10_000, "a", 2.0)])
    assert series(keys) == [(HOUR0, 1.0), (HOUR0 + 10_000, 2.0)]
    write(keys, 1, [(HOUR0 + 10_000, "a", 5.0)])  # a re-upload corrects one sample
    assert series(keys) == [(HOUR0, 1.0), (HOUR0 + 10_000, 5.0)]


def test_compaction_and_retention_are_seen_at_once(keys):
    rows = [(HOUR0 + i * 10_000, "a", float(i)) for i in range(300)]
    for seq in range(0, 300, 100):  # three chunks in one hour: three blocks
        write(keys, seq, rows[seq : seq + 100])
    before = series(keys)
    compact(keys, [RAW], retention=False)
    assert series(keys) == before  # a new plan (one merged block), the same samples
    kv.delete_prefix(keys.blocks_prefix("GPU-1"))
    assert series(keys) == []  # the plan is empty: no cached column answers it


def test_one_transaction_plans_the_fleet_and_clips_to_the_span(keys):
    for n in range(3):
        rows = [(HOUR0 + i * 60_000, "a", float(n * 1000 + i)) for i in range(120)]
        write(keys, n, rows, f"G{n}")
    uuids = ["G0", "G1", "G2", "G-none"]
    plans = plan_blocks(keys, uuids, HOUR0 + 30 * 60_000, HOUR0 + 40 * 60_000, RAW.window_ms)
    assert [len(plans[u]) for u in uuids] == [1, 1, 1, 0]  # the first hour's block; none for G-none
    assert len({plans[u].digest for u in uuids}) == 4  # each names its own blocks
    span = (HOUR0 + 30 * 60_000, HOUR0 + 40 * 60_000)
    assert cached_series(keys, "G1", *span, ["a"], plans["G1"]) is None  # nothing read yet
    got = read_series(keys, "G1", *span, RAW.window_ms, ["a"], plans["G1"])
    hit = cached_series(keys, "G1", *span, ["a"], plans["G1"])
    assert hit is not None
    for ts, values in (got["a"], hit["a"]):
        assert ts.tolist() == [HOUR0 + i * 60_000 for i in range(30, 41)]
        assert np.array_equal(values, 1000.0 + np.arange(30, 41))
    empty = read_series(keys, "G-none", *span, RAW.window_ms, ["a"], plans["G-none"])
    assert len(empty["a"][0]) == 0


def test_a_plan_digest_ignores_writes_elsewhere(keys):
    write(keys, 0, [(HOUR0, "a", 1.0)], "G0")
    first = plan_blocks(keys, ["G0"], *SPAN, RAW.window_ms)["G0"]
    write(keys, 1, [(HOUR0, "a", 1.0)], "G1")  # the store revision moves on
    again = plan_blocks(keys, ["G0"], *SPAN, RAW.window_ms)["G0"]
    assert again.digest == first.digest
    assert [i.key for i in again.infos] == [i.key for i in first.infos]


def test_a_new_block_in_the_newest_window_reads_only_that_block(keys, monkeypatch):
    rows = [(HOUR0 + i * 30_000, "a", float(i)) for i in range(3 * 120)]  # three hours
    write(keys, 0, rows)
    assert len(series(keys)) == 360
    fetched = spied(monkeypatch, kv, "get_many")
    write(keys, 1, [(HOUR0 + 3 * HOUR - 10_000, "a", -1.0)])  # live data: the newest hour
    got = series(keys)
    assert len(got) == 361 and got[-1] == (HOUR0 + 3 * HOUR - 10_000, -1.0)
    newest = [k for ks in fetched for k in ks if k.startswith(keys.blocks_prefix("GPU-1"))]
    assert len(newest) == 1 and Keys.parse_block(newest[0]).t_first >= HOUR0 + 2 * HOUR


def test_a_plan_is_reused_only_while_nothing_was_written(keys, monkeypatch):
    write(keys, 0, [(HOUR0, "a", 1.0)], "G0")
    txns = spied(monkeypatch, kv, "keys_in_ranges")
    first = plan_blocks(keys, ["G0"], *SPAN, RAW.window_ms)
    assert plan_blocks(keys, ["G0"], *SPAN, RAW.window_ms) == first and len(txns) == 1
    write(keys, 1, [(HOUR0 + 10_000, "a", 2.0)], "G1")  # a write elsewhere: planned again
    again = plan_blocks(keys, ["G0"], *SPAN, RAW.window_ms)
    assert [len(t) for t in txns] == [1, 1] and again["G0"].digest == first["G0"].digest
    write(keys, 2, [(HOUR0 + 20_000, "a", 3.0)], "G0")  # this GPU's new block is seen
    assert series(keys, uuid="G0") == [(HOUR0, 1.0), (HOUR0 + 20_000, 3.0)]


def test_a_live_window_merges_only_the_blocks_written_since(keys, monkeypatch):
    from store import read

    merged = spied(monkeypatch, read, "_merge_ordered")
    for n in range(6):  # a scrape every 30 s: a block each in the newest hour
        write(keys, n, [(HOUR0 + n * 30_000, "a", float(n))])
        assert series(keys) == [(HOUR0 + i * 30_000, float(i)) for i in range(n + 1)]
    # the block written since the last read, not all of them
    assert [len(parts) for parts in merged] == [1] * 6


def test_the_fleet_prefetch_reads_only_the_blocks_a_growing_window_lacks(keys, gets, monkeypatch):
    from store.read import prefetch_newest

    for n in range(4):  # a live window grown block by block
        write(keys, n, [(HOUR0 + n * 30_000, "a", float(n))])
        assert len(series(keys)) == n + 1
    # its blocks age out of the cache; the window's merged samples stay
    cache.shared().settle(f"{keys.blocks_prefix('GPU-1')}{HOUR0 // HOUR}", set())
    write(keys, 4, [(HOUR0 + 4 * 30_000, "a", 4.0)])
    plans = plan_blocks(keys, ["GPU-1"], *SPAN, RAW.window_ms)
    fetched = spied(monkeypatch, kv, "get_many")
    assert prefetch_newest(keys, plans, RAW.window_ms, {"GPU-1": ["a"]})
    assert [Keys.parse_block(k).t_first for ks in fetched for k in ks] == [HOUR0 + 4 * 30_000]
    gets.clear()
    assert series(keys) == [(HOUR0 + i * 30_000, float(i)) for i in range(5)] and gets == []
