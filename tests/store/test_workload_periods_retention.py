"""Compaction's retention also trims each GPU's workload periods: the periods whose samples
and buckets every tier has deleted go, the rest stay, so the periods keys hold what
retention keeps instead of a GPU's whole history. On real etcd."""

from __future__ import annotations

import pytest

from store import compaction, kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.registry import known
from store.tiers import Tier
from store.workloads import read_workloads, trim_periods, update_workloads
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
DAY = 24 * HOUR
RAW = Tier("raw", 0, 2 * DAY, HOUR)
ONE_MIN = Tier("1m", 60_000, 10 * DAY, DAY)
TIERS = [RAW, ONE_MIN]
T0 = 1_752_796_800_000  # 2025-07-18T00:00:00Z
NOW = 1_796_083_200_000  # the clock of the run, far ahead: each GPU's newest sample counts


def pod(name: str) -> dict[str, str]:
    return {"pod": name, "namespace": "ml", "container": "train"}


def write(keys: Keys, seq: int, at: int, name: str) -> None:
    facts = {"uuid": "GPU-1", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    rows = [(at + i * 10_000, "m", float(i)) for i in range(6)]
    period = (at, at + 50_000, pod(name))
    batch = GpuBatch(facts, samples_from_rows(rows), (period,))
    write_chunk(keys, "j", seq, [batch], RAW.window_ms)


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_periods_older_than_anything_kept_are_trimmed(keys):
    # a pod now and then; the newest sample is at day 14.5, so the 1m tier's cutoff is day
    # 4.5 (+50 s), inside the day-long window [4, 5) that p4 and p4b share
    at = {"p0": 0, "p2": 2 * DAY, "p4": 4 * DAY, "p4b": 4 * DAY + 18 * HOUR,
          "p9": 9 * DAY, "p14": 14 * DAY + 12 * HOUR}  # fmt: skip
    for seq, (name, offset) in enumerate(at.items()):
        write(keys, seq, T0 + offset, name)
    report = compact(keys, TIERS, now_ms=NOW)
    # p4 ends before the cutoff, but the window's rollup block is kept (p4b is after the
    # cutoff) and holds p4's samples: p4 stays; p0 and p2 are gone with all their blocks
    kept = read_workloads(keys, ["GPU-1"])["GPU-1"]
    assert [p[2]["pod"] for p in kept] == ["p4", "p4b", "p9", "p14"]
    assert report.periods_trimmed == 2 and not report.failures
    assert compact(keys, TIERS, now_ms=NOW).periods_trimmed == 0  # nothing more to trim
    # no block of any tier left holds a sample of a trimmed period, and one holds p4's
    trimmed_end = T0 + 2 * DAY + 50_000
    firsts = []
    for tier in TIERS:
        prefix = (
            keys.blocks_prefix("GPU-1") if tier.is_raw else keys.rollups_prefix(tier.name, "GPU-1")
        )
        firsts += [
            Keys.parse_block(i.key).t_first for i in kv.keys_in_range(prefix, prefix + "\xff")
        ]
    assert min(firsts) > trimmed_end and min(firsts) == T0 + 4 * DAY


def test_an_old_block_written_during_retention_keeps_the_periods(keys, monkeypatch):
    for seq, day in enumerate([0, 2, 9, 14]):
        write(keys, seq, T0 + day * DAY, f"p{day}")
    real = compaction.trim_periods

    def late_block(*args, **kwargs):  # ingest stores old data between the scan and the trim
        write(keys, 10, T0 + 2 * DAY, "p2")  # the same period again: its key is unchanged
        return real(*args, **kwargs)

    monkeypatch.setattr(compaction, "trim_periods", late_block)
    assert compact(keys, TIERS, now_ms=NOW).periods_trimmed == 0  # left to the next run
    assert [p[2]["pod"] for p in read_workloads(keys, ["GPU-1"])["GPU-1"]] == [
        "p0",
        "p2",
        "p9",
        "p14",
    ]
    monkeypatch.setattr(compaction, "trim_periods", real)
    assert compact(keys, TIERS, now_ms=NOW).periods_trimmed == 2


def test_a_trim_that_loses_a_race_keeps_the_new_periods(keys, monkeypatch):
    update_workloads(keys, {"GPU-1": [(T0, T0 + 1, pod("old")), (T0 + DAY, T0 + DAY, pod("new"))]})
    real_txn = kv.txn

    def racing(compare, success, failure=()):
        monkeypatch.setattr(kv, "txn", real_txn)  # once
        # ingest adds a period between the trim's read and its write, to the day key the
        # trim changes (one that starts that day and lasts past the horizon)
        update_workloads(keys, {"GPU-1": [(T0 + 2, T0 + 2 * DAY, pod("newer"))]})
        return real_txn(compare, success, failure)

    monkeypatch.setattr(kv, "txn", racing)
    assert trim_periods(keys, "GPU-1", T0 + DAY) == 0  # lost: left to the next run
    assert [p[2]["pod"] for p in read_workloads(keys, ["GPU-1"])["GPU-1"]] == [
        "old",
        "newer",
        "new",
    ]
    assert trim_periods(keys, "GPU-1", T0 + DAY) == 1
    assert [p[2]["pod"] for p in read_workloads(keys, ["GPU-1"])["GPU-1"]] == ["newer", "new"]


def test_old_days_go_whole_and_a_write_to_another_day_does_not_stop_the_trim(keys, monkeypatch):
    update_workloads(
        keys, {"GPU-1": [(T0 + i * DAY, T0 + i * DAY + 1, pod(f"d{i}")) for i in range(4)]}
    )
    real_txn = kv.txn

    def racing(compare, success, failure=()):
        monkeypatch.setattr(kv, "txn", real_txn)  # once
        update_workloads(keys, {"GPU-1": [(T0 + 5 * DAY, T0 + 5 * DAY, pod("d5"))]})
        return real_txn(compare, success, failure)

    monkeypatch.setattr(kv, "txn", racing)
    assert trim_periods(keys, "GPU-1", T0 + 2 * DAY) == 2  # today's writes touch no old day
    assert [p[2]["pod"] for p in read_workloads(keys, ["GPU-1"])["GPU-1"]] == ["d2", "d3", "d5"]
    days = kv.get_range(*keys.workloads_days("GPU-1"))
    assert [int(i.key.rsplit("/", 1)[1]) for i in days] == [
        T0 + 2 * DAY,
        T0 + 3 * DAY,
        T0 + 5 * DAY,
    ]
