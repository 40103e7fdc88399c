"""Compaction, rollups and retention on real etcd."""

from __future__ import annotations

import random
import threading

import numpy as np
import pytest

from store import kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.read import iter_raw, read_buckets
from store.registry import known
from store.rollup import aggregate
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10 * 24 * HOUR, HOUR)
ONE_MIN = Tier("1m", 60_000, 30 * 24 * HOUR, 24 * HOUR)
TIERS = [RAW, ONE_MIN]
DAY = 24 * HOUR
DAY0 = (1_752_800_400_000 // DAY) * DAY  # a day boundary in July 2025


def facts(uuid: str) -> dict:
    return {
        "uuid": uuid,
        "cluster": "c",
        "host": "h",
        "gpu_index": 0,
        "device": "",
        "model": "",
        "driver": "",
        "labels": {},
    }


def write(keys: Keys, job: str, seq: int, uuid: str, rows: list[tuple[int, str, float]]) -> None:
    write_chunk(keys, job, seq, [GpuBatch(facts(uuid), samples_from_rows(rows))], RAW.window_ms)


def all_raw(keys: Keys, uuid: str) -> list[tuple[int, str, float]]:
    return [r for s in iter_raw(keys, uuid, 0, 10**13 - 1, RAW.window_ms) for r in s.rows()]


def block_count(keys: Keys, uuid: str) -> int:
    return kv.count_prefix(keys.blocks_prefix(uuid))


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_small_blocks_of_a_window_become_one_and_reads_do_not_change(keys):
    rows = [(DAY0 + i * 10_000, m, float(i)) for i in range(300) for m in ("a", "b")]
    for seq in range(0, 600, 50):  # 12 chunks of 50 samples, all in the first hour
        write(keys, "j", seq, "GPU-1", rows[seq : seq + 50])
    before = all_raw(keys, "GPU-1")
    assert block_count(keys, "GPU-1") == 12
    report = compact(keys, TIERS)
    assert report.raw_windows_merged == 1 and report.blocks_removed == 11
    assert block_count(keys, "GPU-1") == 1
    assert all_raw(keys, "GPU-1") == before == sorted(rows, key=lambda r: (r[0], r[1]))
    again = compact(keys, TIERS)
    assert again.raw_windows_merged == 0  # nothing new since the cursor


def test_compaction_racing_ingest_loses_nothing_and_newest_wins(keys):
    rng = random.Random(5)
    expected: dict[tuple[int, str], float] = {}
    stop = threading.Event()
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            for seq in range(60):
                rows = [
                    (DAY0 + rng.randrange(0, 2 * HOUR, 1000), "m", float(seq)) for _ in range(40)
                ]
                write(keys, "race", seq, "GPU-R", rows)
                for ts, m, v in rows:
                    expected[(ts, m)] = v  # later chunks overwrite: newest write wins
        except BaseException as exc:
            errors.append(exc)
        finally:
            stop.set()

    thread = threading.Thread(target=ingest)
    thread.start()
    runs = 0
    while not stop.is_set():
        compact(keys, TIERS, retention=False)
        runs += 1
    thread.join()
    compact(keys, TIERS, retention=False)
    assert not errors and runs > 1
    got = {(ts, m): v for ts, m, v in all_raw(keys, "GPU-R")}
    assert got == expected


def test_rollups_answer_like_raw_and_survive_raw_retention(keys):
    rows = [(DAY0 + i * 10_000, "util", float(i % 97)) for i in range(6 * 360)]  # 6 hours at 10 s
    for seq, i in enumerate(range(0, len(rows), 500)):
        write(keys, "j", seq, "GPU-1", rows[i : i + 500])
    compact(keys, TIERS, retention=False)
    end = DAY0 + 6 * HOUR - 1
    from_raw = read_buckets(keys, "GPU-1", DAY0, end, 300_000, RAW, None)
    from_rollup = read_buckets(keys, "GPU-1", DAY0, end, 300_000, RAW, ONE_MIN)
    assert len(from_raw) == 72
    for agg in ("avg", "min", "max", "last", "count", "sum"):
        assert np.array_equal(from_raw.value(agg), from_rollup.value(agg)), agg
    # newest sample far later: raw of the first day is older than raw retention, rollups stay
    write(keys, "j", 99, "GPU-1", [(DAY0 + 12 * 24 * HOUR, "util", 1.0)])
    report = compact(keys, TIERS)
    assert report.deleted_by_retention >= 6
    assert all_raw(keys, "GPU-1") == [(DAY0 + 12 * 24 * HOUR, "util", 1.0)]
    after = read_buckets(keys, "GPU-1", DAY0, end, 300_000, RAW, ONE_MIN)
    assert np.array_equal(after.value("avg"), from_raw.value("avg"))


def test_retention_deletes_only_what_is_old(keys):
    old = [(DAY0 + i * 60_000, "m", 1.0) for i in range(60)]
    recent = [(DAY0 + 10 * 24 * HOUR + i * 60_000, "m", 2.0) for i in range(60)]
    write(keys, "j", 0, "GPU-1", old)
    write(keys, "j", 1, "GPU-1", recent)
    short = [Tier("raw", 0, 5 * 24 * HOUR, HOUR)]
    report = compact(keys, short)
    assert report.deleted_by_retention == 1
    assert all_raw(keys, "GPU-1") == recent


def test_fresh_data_after_a_rollup_is_seen_by_step_queries(keys):
    write(keys, "j", 0, "GPU-1", [(DAY0 + i * 10_000, "m", 1.0) for i in range(6)])
    compact(keys, TIERS, retention=False)
    write(keys, "j", 1, "GPU-1", [(DAY0 + 60_000 + i * 10_000, "m", 3.0) for i in range(6)])
    b = read_buckets(keys, "GPU-1", DAY0, DAY0 + 120_000 - 1, 60_000, RAW, ONE_MIN)
    assert b.value("avg").tolist() == [1.0, 3.0]


def test_downsampling_arithmetic():
    rows = [
        (0, "m", 1.0),
        (10_000, "m", 5.0),
        (20_000, "m", 3.0),
        (60_000, "m", 7.0),
        (0, "n", 2.0),
    ]
    b = aggregate(samples_from_rows(rows), 60_000)
    by = {(b.names[m], int(t)): i for i, (m, t) in enumerate(zip(b.metric, b.ts, strict=True))}
    i = by[("m", 0)]
    assert (b.min[i], b.max[i], b.sum[i], b.count[i], b.last[i]) == (1.0, 5.0, 9.0, 3, 3.0)
    assert b.value("avg")[i] == 3.0
    assert b.value("last")[by[("m", 60_000)]] == 7.0
    assert b.value("count")[by[("n", 0)]] == 1.0


def test_rollup_stays_up_to_date_after_the_same_data_is_written_again(keys):
    rows = [(DAY0 + i * 10_000, "m", float(i)) for i in range(60)]
    write(keys, "a", 0, "GPU-1", rows)
    write(keys, "a", 1, "GPU-1", [(DAY0 + 2 * DAY, "m", 0.0)])  # closes the first day
    compact(keys, TIERS, retention=False)
    write(keys, "b", 0, "GPU-1", rows)  # a re-upload: same block key, newer revision
    compact(keys, TIERS, retention=False)
    raw_rev = max(i.mod_revision for i in kv.get_prefix(keys.blocks_prefix("GPU-1")))
    rollups = kv.get_prefix(keys.rollups_prefix("1m", "GPU-1"))
    assert len(rollups) == 1 and rollups[0].mod_revision > raw_rev


def rollup_items(keys: Keys, uuid: str) -> list[kv.Item]:
    return kv.get_prefix(keys.rollups_prefix(ONE_MIN.name, uuid))


def test_rollups_are_written_once_their_day_is_over_and_never_rewritten(keys):
    day = [(DAY0 + i * 10_000, "util", float(i % 101)) for i in range(8640)]
    for seq, hour in enumerate(range(0, 8640, 360)):  # live ingest: a chunk and a run per hour
        write(keys, "live", seq, "GPU-1", day[hour : hour + 360])
        compact(keys, TIERS, retention=False)
        assert rollup_items(keys, "GPU-1") == [], "an open day was rolled up"
    step = read_buckets(keys, "GPU-1", DAY0, DAY0 + DAY - 1, 3_600_000, RAW, ONE_MIN)
    assert step.value("count").tolist() == [360.0] * 24  # the open day, computed from raw
    # the next day's samples, past the grace of one raw window: the first day closes
    write(keys, "live", 100, "GPU-1", [(DAY0 + DAY + HOUR + 10_000, "util", 5.0)])
    report = compact(keys, TIERS, retention=False)
    assert report.rollups_written == 1
    [rolled] = rollup_items(keys, "GPU-1")
    assert Keys.parse_block(rolled.key).t_first == DAY0
    again = read_buckets(keys, "GPU-1", DAY0, DAY0 + DAY - 1, 3_600_000, RAW, ONE_MIN)
    for agg in ("avg", "min", "max", "last", "count"):
        assert again.value(agg).tolist() == step.value(agg).tolist(), agg
    # more samples of the new day: the closed day's rollup is not written again
    write(keys, "live", 101, "GPU-1", [(DAY0 + DAY + 2 * HOUR, "util", 6.0)])
    assert compact(keys, TIERS, retention=False).rollups_written == 0
    assert rollup_items(keys, "GPU-1") == [rolled]


def test_late_samples_of_a_closed_day_rebuild_its_rollup(keys):
    write(keys, "a", 0, "GPU-1", [(DAY0 + i * 60_000, "m", 1.0) for i in range(60)])
    write(keys, "a", 1, "GPU-1", [(DAY0 + 3 * DAY, "m", 0.0)])
    compact(keys, TIERS, retention=False)
    [before] = rollup_items(keys, "GPU-1")
    write(keys, "late", 0, "GPU-1", [(DAY0 + 2 * HOUR, "m", 9.0)])
    assert compact(keys, TIERS, retention=False).rollups_written == 1
    [after] = rollup_items(keys, "GPU-1")
    assert after.key != before.key
    b = read_buckets(keys, "GPU-1", DAY0, DAY0 + DAY - 1, DAY, RAW, ONE_MIN)
    assert b.value("count").tolist() == [61.0] and b.value("max").tolist() == [9.0]


def test_raw_retention_shorter_than_a_rollup_day_is_refused(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    from telemetry_site.env import env_tiers

    monkeypatch.setenv("STORAGE_TIERS", "raw:0:12h,5m:5m:30d")
    with pytest.raises(ImproperlyConfigured, match="raw retention"):
        env_tiers("STORAGE_TIERS", "raw:0:7d")
    monkeypatch.setenv("STORAGE_TIERS", "raw:0:12h")
    assert env_tiers("STORAGE_TIERS", "raw:0:7d")[0]["retention"] == 12 * 3600


def test_expired_jobs_take_their_chunk_and_failure_markers_along(keys):
    from store.compaction import expire_jobs
    from store.jobs import mark_chunk_failed, save_job

    save_job(keys, {"id": "old-1", "created_at": 0})
    write(keys, "old-1", 0, "GPU-1", [(DAY0, "m", 1.0)])
    mark_chunk_failed(keys, "old-1", 1, "corrupt")
    assert expire_jobs(keys, max_age_ms=1000, now_ms=10_000) == 1
    for prefix in (keys.jobs_prefix(), keys.chunks_prefix("old-1"), keys.failures_prefix("old-1")):
        assert kv.count_prefix(prefix) == 0, prefix
