"""Downsampled reads of a bounded window (their blocks listed along with the GPU in one
transaction) give the buckets the samples make, from raw blocks, from up-to-date rollups, and
from rollups that newer samples have made stale; a warm read reads no block's value, and a
block merged away after it was listed is read again."""

from __future__ import annotations

import csv
import io
from collections import defaultdict

import numpy as np
import pytest
from django.core.management import call_command

from store.rollup import FIELDS
from tests.api.api_support import expected_samples, generated, telemetry, upload
from tests.helpers import spy_calls, wait_job_done
from timeparse.timestamps import format_timestamp, parse_timestamp

START = "2025-07-18T20:00:00Z"


def load(api, samples: int, seed: int = 41, start: str = START) -> dict:
    data = generated(hosts=1, gpus_per_host=1, samples=samples, seed=seed, start=start)
    response = upload(api, data, "bounded.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    return expected_samples(data)


def buckets(samples: dict, step_ms: int, first: int, last: int) -> list[dict]:
    """avg per (bucket, metric) for buckets starting in [first, last], time then name order."""
    groups: dict[tuple[int, str], list[float]] = defaultdict(list)
    for (ts, metric), value in samples.items():
        groups[((ts // step_ms) * step_ms, metric)].append(value)
    rows = [
        {"timestamp": format_timestamp(b), "metric_name": m, "value": sum(v) / len(v)}
        for (b, m), v in groups.items()
        if first <= b <= last
    ]
    return sorted(rows, key=lambda r: (r["timestamp"], r["metric_name"]))


def close(got: list[dict], want: list[dict]) -> bool:
    return [(r["timestamp"], r["metric_name"]) for r in got] == [
        (r["timestamp"], r["metric_name"]) for r in want
    ] and all(abs(a["value"] - b["value"]) < 1e-9 for a, b in zip(got, want, strict=True))


@pytest.mark.parametrize("step", ["60s", "5m", "7m"])
def test_bounded_buckets_are_the_samples_buckets_before_and_after_rollups(pipeline, api, step):
    samples = load(api, samples=180)  # 30 minutes at 10 s
    uuid = next(iter(samples))
    step_ms = {"60s": 60_000, "5m": 300_000, "7m": 420_000}[step]
    window = {"start_time": "2025-07-18T20:05:00Z", "end_time": "2025-07-18T20:24:59Z"}
    first = (parse_timestamp(window["start_time"]) // step_ms) * step_ms
    last = parse_timestamp(window["end_time"])
    want = buckets(samples[uuid], step_ms, first, last)
    raw = telemetry(api, uuid, step=step, limit=10_000, **window)["results"]
    assert close(raw, want)
    call_command("compact", stdout=io.StringIO())  # 1m and 5m rollups now up to date
    assert close(telemetry(api, uuid, step=step, limit=10_000, **window)["results"], want)


def test_newer_samples_after_a_compaction_are_counted(pipeline, api):
    first_half = load(api, samples=90)
    uuid = next(iter(first_half))
    call_command("compact", stdout=io.StringIO())
    both = load(api, samples=180)  # same GPU and stream, 15 more minutes: rollups now stale
    window = {"start_time": "2025-07-18T20:00:00Z", "end_time": "2025-07-18T20:29:59Z"}
    want = buckets(both[uuid], 300_000, parse_timestamp(window["start_time"]), 10**13)
    got = telemetry(api, uuid, step="5m", limit=10_000, **window)["results"]
    assert close(got, want) and len({r["timestamp"] for r in got}) == 6


@pytest.fixture
def etcd_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the store.kv reads this process makes from now on (still made for real)."""
    from store import kv

    names = ("get", "get_range", "get_many", "keys_in_range", "get_together", "get_prefix")
    return spy_calls(monkeypatch, kv, names)


@pytest.mark.parametrize("compacted", [False, True], ids=["not-rolled-up", "rollup-stale"])
def test_a_step_read_of_a_day_not_rolled_up_is_one_etcd_read(pipeline, api, etcd_reads, compacted):
    # the day is not over (the newest sample is in it): its buckets come from raw blocks
    # (and, after a compaction and newer samples, a stale rollup), all listed along with the
    # GPU; then a window moved by a step (a dashboard at "now") finds them in the cache
    if compacted:
        load(api, samples=90)
        call_command("compact", stdout=io.StringIO())
    samples = load(api, samples=180)
    uuid = next(iter(samples))
    window = {"start_time": "2025-07-18T20:05:00Z", "end_time": "2025-07-18T20:24:59Z"}
    first, last = (parse_timestamp(window[k]) for k in ("start_time", "end_time"))
    want = buckets(samples[uuid], 300_000, first, last)
    telemetry(api, uuid, step="5m", limit=10_000, **window)  # the GPU's record now known
    etcd_reads.clear()
    got = telemetry(api, uuid, step="5m", limit=10_000, **window)["results"]
    assert close(got, want) and len({r["timestamp"] for r in got}) == 4
    assert etcd_reads == ["get_together"]
    moved = {"start_time": "2025-07-18T20:10:00Z", "end_time": "2025-07-18T20:29:59Z"}
    etcd_reads.clear()
    got = telemetry(api, uuid, step="5m", limit=10_000, **moved)["results"]
    first, last = (parse_timestamp(moved[k]) for k in ("start_time", "end_time"))
    assert close(got, buckets(samples[uuid], 300_000, first, last)) and len(got)
    assert etcd_reads == ["get_together"]  # new buckets, from blocks the cache holds


def test_buckets_read_along_are_those_of_a_second_read(pipeline, api):
    # read_buckets with the blocks open_gpu read along, against the same without them
    # (which reads the rollup window's every raw block again), over windows cutting the
    # raw window anywhere, with the rollup stale
    from store import default_keys
    from store.read import bucket_ranges, open_gpu, read_buckets
    from store.tiers import for_step, tiers

    load(api, samples=90)
    call_command("compact", stdout=io.StringIO())
    uuid = next(iter(load(api, samples=180)))
    keys, raw = default_keys(), tiers()[0]
    day0 = parse_timestamp(START)
    for step_ms in (60_000, 300_000, 420_000):
        tier = for_step(step_ms)
        for start_min, end_min in [(0, 30), (5, 25), (2, 9), (14, 16), (29, 40), (0, 5)]:
            start, end = day0 + start_min * 60_000, day0 + end_min * 60_000 - 1
            along = open_gpu(
                keys, uuid, bucket_ranges(keys, uuid, start, end, step_ms, raw, tier)
            ).planned
            assert along, "a window of minutes is read along"
            a = read_buckets(keys, uuid, start, end, step_ms, raw, tier, along)
            b = read_buckets(keys, uuid, start, end, step_ms, raw, tier)
            assert a.ts.tolist() == b.ts.tolist() and len(a), (step_ms, start_min, end_min)
            assert [a.names[m] for m in a.metric] == [b.names[m] for m in b.metric]
            for field in FIELDS:  # resets are NaN where a metric is no counter
                assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), field


def test_buckets_kept_from_a_read_follow_newer_samples(pipeline, api):
    # the buckets made from raw blocks are kept under a key naming those blocks: newer
    # samples are other blocks, so the next read makes the buckets again
    window = {"start_time": "2025-07-18T20:05:00Z", "end_time": "2025-07-18T20:44:59Z"}
    first, last = (parse_timestamp(window[k]) for k in ("start_time", "end_time"))
    for samples in (180, 270):  # 30 minutes, then the same stream to 45 minutes
        expected = load(api, samples=samples)
        uuid = next(iter(expected))
        want = buckets(expected[uuid], 300_000, first, last)
        for _ in range(2):
            got = telemetry(api, uuid, step="5m", limit=10_000, **window)["results"]
            assert close(got, want) and len({r["timestamp"] for r in got}) == samples // 30 - 1


def test_a_warm_read_lists_its_blocks_without_their_values(pipeline, api, monkeypatch):
    # a day of blocks is ~1 MB of values a warm read has in its cache: only keys are read
    from store import client, kv

    real_get_many = kv.get_many
    load(api, samples=90)
    call_command("compact", stdout=io.StringIO())
    uuid = next(iter(load(api, samples=180)))
    window = {"start_time": "2025-07-18T20:05:00Z", "end_time": "2025-07-18T20:24:59Z"}
    answers: list[kv.Together] = []
    real = kv.get_together

    def kept(*args, **kwargs):
        answers.append(real(*args, **kwargs))
        return answers[-1]

    monkeypatch.setattr(kv, "get_together", kept)
    sizes: list[int] = []  # bytes of each etcd transaction's answer
    real_txn = client._Client.txn_request

    def measured(self, *args, **kwargs):
        response = real_txn(self, *args, **kwargs)
        sizes.append(response.ByteSize())
        return response

    monkeypatch.setattr(client._Client, "txn_request", measured)
    for params in ({"step": "5m"}, {"step": "7m"}, {}):  # rollups, raw buckets, raw samples
        telemetry(api, uuid, limit=10_000, **params, **window)
        reads = spy_calls(monkeypatch, kv, ("get_many", "get_range", "keys_in_range"))
        answers.clear()
        sizes.clear()
        telemetry(api, uuid, limit=10_000, **params, **window)
        (answer,) = answers
        assert reads == [], params
        assert len(answer.ranged) == 1  # the GPU's workloads, and no block
        blocks = [info.key for listing in answer.listed for info in listing]
        assert blocks and all("/blocks/" in k or "/rollups/" in k for k in blocks), blocks
        values = sum(len(item.value) for item in real_get_many(blocks).values())
        assert sizes[0] < values, (params, sizes, values)  # the keys came, not the blocks


def test_blocks_merged_after_they_were_listed_are_read_again(pipeline, api):
    # a compaction between the listing and the values read: the answer is the fresh one
    from store import default_keys
    from store.cache import shared
    from store.read import bucket_ranges, iter_raw, open_gpu, raw_ranges, read_buckets
    from store.tiers import for_step, tiers

    load(api, samples=90)
    uuid = next(iter(load(api, samples=180)))  # two blocks in the window: a merge ahead
    keys, raw = default_keys(), tiers()[0]
    start, end = parse_timestamp(START), parse_timestamp(START) + 1_800_000 - 1
    listings = {
        step_ms: open_gpu(
            keys, uuid, bucket_ranges(keys, uuid, start, end, step_ms, raw, for_step(step_ms))
        ).planned
        for step_ms in (90_000, 300_000, 420_000)  # raw buckets, the 5m tier, raw buckets
    }
    raw_listing = open_gpu(keys, uuid, raw_ranges(keys, uuid, start, end, raw.window_ms)).planned
    before = {info.key for listing in raw_listing for info in listing}
    call_command("compact", stdout=io.StringIO())
    shared().clear()
    after = {
        info.key
        for info in open_gpu(keys, uuid, raw_ranges(keys, uuid, start, end, raw.window_ms)).planned[
            0
        ]
    }
    assert before - after, "the compaction merged listed blocks away"
    old = {}
    for step_ms, listing in listings.items():
        tier = for_step(step_ms)
        a = read_buckets(keys, uuid, start, end, step_ms, raw, tier, listing)
        b = read_buckets(keys, uuid, start, end, step_ms, raw, tier)
        assert a.ts.tolist() == b.ts.tolist() and len(a), step_ms
        for field in FIELDS:
            assert np.array_equal(getattr(a, field), getattr(b, field), equal_nan=True), field
        old[step_ms] = a
    listed = list(iter_raw(keys, uuid, start, end, raw.window_ms, planned=raw_listing[0]))
    fresh = list(iter_raw(keys, uuid, start, end, raw.window_ms))
    assert [s.ts.tolist() for s in listed] == [s.ts.tolist() for s in fresh] and fresh
    assert [s.value.tolist() for s in listed] == [s.value.tolist() for s in fresh]
    # what a stale listing made was not kept under its name: new values for the same
    # times (a newer upload wins) show in its next read too
    data = generated(hosts=1, gpus_per_host=1, samples=180, seed=41, start=START)
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    for row in rows:
        row["value"] = str(float(row["value"]) + 1)
    again = io.StringIO()
    writer = csv.DictWriter(again, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    response = upload(api, again.getvalue().encode(), "again.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    for step_ms, listing in listings.items():
        tier = for_step(step_ms)
        a = read_buckets(keys, uuid, start, end, step_ms, raw, tier, listing)
        b = read_buckets(keys, uuid, start, end, step_ms, raw, tier)
        assert np.array_equal(a.sum, b.sum), step_ms
        before_upload = old[step_ms]
        assert not np.array_equal(a.sum, before_upload.sum), step_ms


def test_a_listed_block_the_cache_dropped_is_read_again_and_a_merged_one_is_not(pipeline, api):
    # a cache evicting a block between its fetch and its use is not a vanished block
    from store import default_keys
    from store.cache import shared
    from store.keys import Keys
    from store.read import Vanished, _listed_blocks, open_gpu, raw_ranges
    from store.tiers import tiers

    load(api, samples=90)
    uuid = next(iter(load(api, samples=180)))
    keys, raw = default_keys(), tiers()[0]
    start = parse_timestamp(START)
    (listing,) = open_gpu(
        keys, uuid, raw_ranges(keys, uuid, start, start + 1, raw.window_ms)
    ).planned
    w = Keys.parse_block(listing[0].key).t_first // raw.window_ms
    infos = [i for i in listing if Keys.parse_block(i.key).t_first // raw.window_ms == w]
    group = f"{keys.blocks_prefix(uuid)}{w}"
    assert len(infos) == 2, infos  # two uploads: two blocks in the window
    shared().clear()
    parts = _listed_blocks(group, infos, {})
    assert sum(len(samples) for _, samples in parts) > 0 and len(parts) == 2
    call_command("compact", stdout=io.StringIO())  # merges the two into one
    shared().clear()
    with pytest.raises(Vanished):
        _listed_blocks(group, infos, {})


def test_a_cold_read_of_rolled_up_windows_fetches_their_rollups_only(pipeline, api, monkeypatch):
    from store import kv
    from store.cache import shared

    # to 01:05 the next day: the first day's window is closed (store/closing.py)
    samples = load(api, samples=570, start="2025-07-18T23:30:00Z")
    uuid = next(iter(samples))
    call_command("compact", stdout=io.StringIO())  # its 5m rollup is written, up to date
    window = {"start_time": "2025-07-18T23:30:00Z", "end_time": "2025-07-18T23:59:59Z"}
    first, last = (parse_timestamp(window[k]) for k in ("start_time", "end_time"))
    telemetry(api, uuid, step="5m", limit=10_000, **window)  # the GPU's record now known
    shared().clear()
    asked: list[str] = []
    real = kv.get_many

    def get_many(keys):
        asked.extend(keys)
        return real(keys)

    monkeypatch.setattr(kv, "get_many", get_many)
    got = telemetry(api, uuid, step="5m", limit=10_000, **window)["results"]
    assert close(got, buckets(samples[uuid], 300_000, first, last)) and len(got)
    assert asked and all("/rollups/" in key for key in asked), asked  # no raw block
