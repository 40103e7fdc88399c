"""Overlapping uploads: the newest upload of a sample wins, not the newest etcd write."""

from __future__ import annotations

import pytest

from store import kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.jobs import new_upload_seq
from store.keys import Keys
from store.read import read_samples
from store.registry import known
from store.tiers import Tier
from store.write import GpuBatch, latest_values, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10**12, HOUR)
TIERS = [RAW, Tier("1m", 60_000, 10**12, 24 * HOUR)]
T0 = 1_752_871_200_000  # 2025-07-18T20:40:00Z, an hour boundary


def facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


def chunk(keys: Keys, job: str, upload: int, rows: list[tuple[int, str, float]], seq: int = 0):
    batch = GpuBatch(facts("GPU-1"), samples_from_rows(rows))
    return write_chunk(keys, job, seq, [batch], RAW.window_ms, upload=upload)


def stored(keys: Keys) -> list[tuple[int, str, float]]:
    return list(read_samples(keys, "GPU-1", 0, 10**13 - 1, RAW.window_ms).rows())


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_upload_sequences_only_grow(keys):
    seqs = [new_upload_seq(keys, "c") for _ in range(5)]
    assert seqs == sorted(set(seqs)) and seqs[0] > 0


def test_an_older_uploads_chunk_redelivered_later_loses_to_the_newer_upload(keys):
    old, new = new_upload_seq(keys, "c"), new_upload_seq(keys, "c")
    chunk(keys, "new", new, [(T0, "m", 2.0), (T0 + 10_000, "m", 2.0)])
    # the older upload's chunk arrives afterwards (a worker died, it was redelivered)
    chunk(keys, "old", old, [(T0, "m", 1.0), (T0 + 20_000, "m", 1.0)])
    expected = [(T0, "m", 2.0), (T0 + 10_000, "m", 2.0), (T0 + 20_000, "m", 1.0)]
    assert stored(keys) == expected
    assert latest_values(keys)["GPU-1"]["m"] == [T0 + 20_000, 1.0]
    compact(keys, TIERS)
    assert stored(keys) == expected


def test_the_rule_holds_when_compaction_ran_between_the_uploads(keys):
    first, second, third = (new_upload_seq(keys, "c") for _ in range(3))
    chunk(keys, "first", first, [(T0, "m", 1.0), (T0, "n", 1.0)])
    chunk(keys, "third", third, [(T0, "n", 3.0)])
    compact(keys, TIERS)
    # upload 2 arrives last: it overrides upload 1 (m) but not upload 3 (n)
    chunk(keys, "second", second, [(T0, "m", 2.0), (T0, "n", 2.0)])
    assert stored(keys) == [(T0, "m", 2.0), (T0, "n", 3.0)]
    compact(keys, TIERS)
    assert stored(keys) == [(T0, "m", 2.0), (T0, "n", 3.0)]
    # one block per upload that still owns a sample; upload 1 owns none
    owners = sorted(Keys.parse_block(i.key).upload for i in kv.get_prefix(keys.all_blocks()))
    assert owners == [second, third]


def test_latest_at_the_same_time_takes_the_newer_upload(keys):
    old, new = new_upload_seq(keys, "c"), new_upload_seq(keys, "c")
    chunk(keys, "new", new, [(T0, "m", 2.0)])
    chunk(keys, "old", old, [(T0, "m", 1.0)])
    assert latest_values(keys)["GPU-1"]["m"] == [T0, 2.0]


def test_a_redelivered_chunk_of_the_same_upload_writes_nothing_new(keys):
    upload = new_upload_seq(keys, "c")
    chunk(keys, "j", upload, [(T0, "m", 1.0)])
    before = [i.key for i in kv.get_prefix(keys.all_blocks())]
    again = chunk(keys, "j", upload, [(T0, "m", 1.0)])
    assert again.already_done
    assert [i.key for i in kv.get_prefix(keys.all_blocks())] == before


def test_latest_at_the_same_time_takes_the_later_chunk_of_one_upload(keys):
    """A live source's run is one upload: the later of two of its chunks that hold one
    sample wins in the latest values as in the blocks, whatever order they arrive in."""
    upload = new_upload_seq(keys, "c")
    chunk(keys, "live", upload, [(T0, "m", 2.0)], seq=8)
    chunk(keys, "live", upload, [(T0, "m", 1.0)], seq=3)  # an earlier chunk, delivered late
    assert stored(keys) == [(T0, "m", 2.0)]
    assert latest_values(keys)["GPU-1"]["m"] == [T0, 2.0]
