"""write_chunk against real etcd: one transaction when it fits, idempotent, race-safe."""

from __future__ import annotations

import json

import numpy as np
import pytest

from store import kv
from store.codec import samples_from_rows
from store.keys import Keys
from store.read import read_samples
from store.registry import known
from store.workloads import read_workloads
from store.write import GpuBatch, latest_values, write_chunk
from tests.helpers import spy_calls

WINDOW = 3_600_000


def facts(uuid: str, host: str = "h1", cluster: str = "c1") -> dict:
    return {
        "uuid": uuid,
        "cluster": cluster,
        "host": host,
        "gpu_index": 0,
        "device": "nvidia0",
        "model": "H100",
        "driver": "535",
        "labels": {},
    }


def batch(uuid: str, rows: list[tuple[int, str, float]], **kw: str) -> GpuBatch:
    return GpuBatch(facts(uuid, **kw), samples_from_rows(rows))


def revision_now() -> int:
    return kv.status()["raft_index"]


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_chunk_is_stored_and_retry_writes_nothing_more(keys):
    rows = [(1000 * i, "m", float(i)) for i in range(10)]
    first = write_chunk(keys, "job", 0, [batch("GPU-1", rows)], WINDOW)
    assert not first.already_done and first.blocks == 1 and first.gpus_registered == 1
    before = revision_now()
    again = write_chunk(keys, "job", 0, [batch("GPU-1", rows)], WINDOW)
    assert again.already_done
    assert revision_now() == before  # the retry only read
    got = read_samples(keys, "GPU-1", 0, 10**12, WINDOW)
    assert list(got.rows()) == rows


def test_latest_moves_forward_only(keys):
    write_chunk(keys, "j", 0, [batch("GPU-1", [(5000, "m", 5.0)])], WINDOW)
    write_chunk(keys, "j", 1, [batch("GPU-1", [(1000, "m", 1.0), (1000, "n", 7.0)])], WINDOW)
    assert latest_values(keys)["GPU-1"] == {"m": [5000, 5.0], "n": [1000, 7.0]}
    write_chunk(keys, "j", 2, [batch("GPU-1", [(9000, "m", 9.0)])], WINDOW)
    assert latest_values(keys)["GPU-1"]["m"] == [9000, 9.0]


def test_blocks_never_cross_a_window(keys):
    rows = [(t, "m", float(t)) for t in (WINDOW - 1, WINDOW, 2 * WINDOW + 5)]
    result = write_chunk(keys, "j", 0, [batch("GPU-1", rows)], WINDOW)
    assert result.blocks == 3
    names = [Keys.parse_block(i.key) for i in kv.get_prefix(keys.blocks_prefix("GPU-1"))]
    assert all(n.t_first // WINDOW == n.t_last // WINDOW for n in names)
    assert list(read_samples(keys, "GPU-1", WINDOW, WINDOW, WINDOW).rows()) == [
        (WINDOW, "m", WINDOW * 1.0)
    ]


def test_chunk_too_big_for_one_transaction_still_lands_whole(keys):
    # 150 GPUs: more operations than one etcd transaction takes
    batches = [batch(f"GPU-{i}", [(1000, "m", float(i))]) for i in range(150)]
    result = write_chunk(keys, "j", 0, batches, WINDOW)
    assert result.blocks == 150 and result.gpus_registered == 150
    assert kv.get(keys.chunk("j", 0)) is not None
    assert len(latest_values(keys)) == 150
    assert kv.count_prefix(keys.records_prefix()) == 150


def test_a_chunk_recorded_failed_by_another_delivery_meanwhile_gets_no_marker(keys, monkeypatch):
    """Two deliveries of one chunk at once can disagree (one refused a GPU, the other stored
    it after a trim). The step-by-step path writes its marker only while neither key is
    there, so the chunk counts once."""
    from store import jobs
    from store import write as write_module

    real = write_module.update_latest

    def other_delivery_records_it_first(*args, **kwargs) -> None:
        real(*args, **kwargs)
        kv.put(keys.failure("j", 0), jobs.failure_record(0, "refused by the other delivery"))

    monkeypatch.setattr(write_module, "update_latest", other_delivery_records_it_first)
    batches = [batch(f"GPU-{i}", [(1000, "m", float(i))]) for i in range(150)]  # step by step
    result = write_chunk(keys, "j", 0, batches, WINDOW)
    assert result.already_done and result.recorded_failed
    assert kv.get(keys.failure("j", 0)) is not None
    assert kv.get(keys.chunk("j", 0)) is None
    assert len(latest_values(keys)) == 150  # what it wrote is the chunk's own, harmless


POD_A = {"pod": "train-0", "namespace": "ml"}
POD_B = {"pod": "train-1", "namespace": "ml"}


def with_periods(uuid: str, start: int, periods: tuple) -> GpuBatch:
    rows = [(start + 1000 * i, "m", float(i)) for i in range(4)]
    return GpuBatch(facts(uuid), samples_from_rows(rows), periods)


def test_a_chunk_and_its_workload_periods_are_one_read_and_one_transaction(keys, monkeypatch):
    write_chunk(keys, "j", 0, [with_periods("GPU-1", 0, ((0, 3000, POD_A),))], WINDOW)
    made = spy_calls(monkeypatch, kv, ("get", "get_many", "txn", "put_batches"))
    chunk = [
        with_periods("GPU-1", 4000, ((4000, 5000, POD_A), (6000, 7000, POD_B))),
        with_periods("GPU-2", 4000, ((4000, 7000, {}),)),
    ]
    write_chunk(keys, "j", 1, chunk, WINDOW)
    assert made == ["get_many", "txn"]
    assert read_workloads(keys) == {
        "GPU-1": [(0, 5000, POD_A), (6000, 7000, POD_B)],
        "GPU-2": [(4000, 7000, {})],
    }
    before = revision_now()
    again = write_chunk(keys, "j", 1, chunk, WINDOW)
    assert again.already_done and not again.recorded_failed
    assert revision_now() == before


@pytest.mark.parametrize(
    ("gpus", "expected"),
    [
        (30, ["get_many", "txn"]),  # everything in one transaction
        # periods with the rest would pass etcd's 128 operations: the marker checked (a
        # redelivery merges nothing again), the periods a step of their own, and the rest
        # still one transaction (no read repeated for a transaction that cannot fit)
        (45, ["get_many", "get_many", "txn", "get_many", "txn"]),
    ],
)
def test_a_chunk_of_many_gpus_reads_once_for_each_transaction(keys, monkeypatch, gpus, expected):
    uuids = [f"GPU-{i}" for i in range(gpus)]
    write_chunk(keys, "j", 0, [with_periods(u, 0, ((0, 3000, POD_A),)) for u in uuids], WINDOW)
    made = spy_calls(monkeypatch, kv, ("get", "get_many", "txn", "put_batches"))
    chunk = [with_periods(u, 4000, ((4000, 7000, POD_B),)) for u in uuids]
    result = write_chunk(keys, "j", 1, chunk, WINDOW)
    assert made == expected
    assert not result.already_done and result.blocks == gpus
    assert read_workloads(keys) == {u: [(0, 3000, POD_A), (4000, 7000, POD_B)] for u in uuids}
    assert kv.get(keys.chunk("j", 1)) is not None
    made.clear()
    before = revision_now()
    assert write_chunk(keys, "j", 1, chunk, WINDOW).already_done
    assert revision_now() == before and "txn" not in made


def test_new_gpus_that_would_not_fit_the_chunks_transaction_are_registered_first(keys, monkeypatch):
    """A fleet's first upload: 40 new GPUs' records and locators do not fit the chunk's one
    transaction with their blocks and latest values. They are registered first (one batched
    transaction), and the rest is still one transaction: no step-by-step path."""
    made = spy_calls(monkeypatch, kv, ("get", "get_many", "txn", "put_batches"))
    batches = [batch(f"GPU-{i}", [(1000, "m", float(i)), (2000, "n", 1.0)]) for i in range(40)]
    result = write_chunk(keys, "j", 0, batches, WINDOW)
    assert made == ["get_many", "get_many", "txn", "get_many", "txn"]
    assert not result.already_done and result.blocks == 40 and result.gpus_registered == 40
    assert sorted(r["uuid"] for r in result.records) == sorted(f"GPU-{i}" for i in range(40))
    assert kv.get(keys.chunk("j", 0)) is not None
    assert latest_values(keys)["GPU-7"] == {"m": [1000, 7.0], "n": [2000, 1.0]}
    assert list(read_samples(keys, "GPU-7", 0, 10**12, WINDOW).rows()) == [
        (1000, "m", 7.0),
        (2000, "n", 1.0),
    ]


def test_periods_too_long_for_the_chunks_transaction_go_first(keys, monkeypatch):
    """A GPU's period list is kept whole: when it takes the transaction past its byte bound,
    the periods are merged on their own and the chunk is still one transaction."""
    many = tuple((10 * i, 10 * i + 5, {"pod": f"job-{i}"}) for i in range(400))
    write_chunk(keys, "j", 0, [with_periods("GPU-1", 0, many)], WINDOW)
    stored = len(kv.get(keys.workloads_day("GPU-1", 0)).value)
    monkeypatch.setattr(kv, "MAX_TXN_BYTES", stored)  # the periods alone fill the bound
    made = spy_calls(monkeypatch, kv, ("get", "get_many", "txn", "put_batches"))
    chunk = [with_periods("GPU-1", 10_000, ((10_000, 13_000, POD_B),))]
    result = write_chunk(keys, "j", 1, chunk, WINDOW)
    assert made == ["get_many", "get_many", "get_many", "txn", "get_many", "txn"]
    assert not result.already_done and result.blocks == 1
    assert read_workloads(keys)["GPU-1"] == [*many, (10_000, 13_000, POD_B)]
    assert kv.get(keys.chunk("j", 1)) is not None


def test_periods_of_a_chunk_too_big_for_one_transaction_are_stored(keys):
    batches = [with_periods(f"GPU-{i}", 0, ((0, 3000, POD_A),)) for i in range(70)]
    result = write_chunk(keys, "j", 0, batches, WINDOW)
    assert not result.already_done and result.blocks == 70
    assert read_workloads(keys) == {f"GPU-{i}": [(0, 3000, POD_A)] for i in range(70)}


def test_gpu_that_moves_host_keeps_one_record_and_its_first_seen(keys):
    write_chunk(keys, "j", 0, [batch("GPU-1", [(1000, "m", 1.0)], host="old")], WINDOW)
    known.clear()  # another worker process: it has not seen this GPU
    write_chunk(keys, "j", 1, [batch("GPU-1", [(2000, "m", 2.0)], host="new")], WINDOW)
    records = [json.loads(i.value) for i in kv.get_prefix(keys.records_prefix())]
    assert [(r["host"], r["first_seen"]) for r in records] == [("new", 1000)]


def test_concurrent_writers_of_the_same_gpu_converge(keys):
    import threading

    errors: list[BaseException] = []

    def run(seq: int) -> None:
        try:
            rows = [(1000 * seq + i, "m", float(seq)) for i in range(5)]
            pod = {"pod": f"p{seq}"}  # each writer's own workload: none may be lost
            gpu = GpuBatch(
                facts("GPU-R"), samples_from_rows(rows), ((1000 * seq, 1000 * seq + 4, pod),)
            )
            write_chunk(keys, "race", seq, [gpu], WINDOW)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert kv.count_prefix(keys.chunks_prefix("race")) == 8
    assert kv.count_prefix(keys.records_prefix()) == 1
    got = read_samples(keys, "GPU-R", 0, 10**12, WINDOW)
    assert len(got) == 40
    assert latest_values(keys)["GPU-R"]["m"] == [7004, 7.0]
    assert read_workloads(keys)["GPU-R"] == [
        (1000 * s, 1000 * s + 4, {"pod": f"p{s}"}) for s in range(8)
    ]


def test_overlapping_blocks_newest_write_wins(keys):
    write_chunk(keys, "a", 0, [batch("GPU-1", [(1000, "m", 1.0), (2000, "m", 2.0)])], WINDOW)
    write_chunk(keys, "b", 0, [batch("GPU-1", [(2000, "m", 20.0), (3000, "m", 3.0)])], WINDOW)
    got = read_samples(keys, "GPU-1", 0, 10**12, WINDOW)
    assert list(got.rows()) == [(1000, "m", 1.0), (2000, "m", 20.0), (3000, "m", 3.0)]
    assert np.all(np.diff(got.ts) > 0)
