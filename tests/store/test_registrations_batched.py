"""GPU registrations go to etcd together, as many as a transaction takes, on real etcd: a
fleet's first upload registers hundreds, and one transaction each cost etcd more CPU than the
rest of the upload's writes. A race lost by one GPU of a batch costs nothing to the others."""

from __future__ import annotations

import json

import pytest

from store import kv
from store.keys import Keys
from store.registry import Registration, ensure_registered, known, list_records
from tests.helpers import spy_calls


def reg(uuid: str, host: str = "h1", ts: int = 1000) -> Registration:
    facts = {"uuid": uuid, "cluster": "c1", "host": host, "gpu_index": 0, "device": "nvidia0",
             "model": "H100", "driver": "535", "labels": {}}  # fmt: skip
    return Registration(facts, ts, ts)


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_a_fleet_is_registered_in_a_few_transactions(keys, monkeypatch):
    made = spy_calls(monkeypatch, kv, ("txn",))
    written = ensure_registered(keys, [reg(f"GPU-{i:03d}") for i in range(150)])
    assert len(written) == 150
    # a plan is a compare and two puts (record, locator): 60 GPUs a transaction
    assert len(made) == 3
    records = list_records(keys)
    assert [r["uuid"] for r in records] == [f"GPU-{i:03d}" for i in range(150)]
    assert all(r["host"] == "h1" for r in records)
    assert kv.count_prefix(keys.root + "/") == 300  # a record and a locator each, no more


def test_a_race_lost_by_one_gpu_of_a_batch_leaves_the_others_registered(keys, monkeypatch):
    """Another writer moves GPU-007 to host h2 between this batch's read and its write: the
    batch's transaction fails on that GPU's compare, its GPUs are tried one by one, and
    GPU-007 is read again and decided against the other writer's record."""
    real_txn = kv.txn
    calls: list[int] = []

    def txn(compare, ops):
        calls.append(len(ops))
        if len(calls) == 1:  # the other writer lands first
            other = reg("GPU-007", host="h2", ts=5000)
            ensure_registered(Keys(keys.root), [other])
        return real_txn(compare, ops)

    monkeypatch.setattr(kv, "txn", txn)
    written = ensure_registered(keys, [reg(f"GPU-{i:03d}") for i in range(20)])
    assert calls[0] == 40 and calls[1] == 2  # the batch, then the other writer's own
    assert len(calls) == 2 + 20 + 1  # the batch failed: one by one, then GPU-007 again
    assert {r["uuid"] for r in written} == {f"GPU-{i:03d}" for i in range(20)}
    records = {r["uuid"]: r for r in list_records(keys)}
    assert len(records) == 20  # one record a GPU: none left behind on the other host
    # the other writer's samples are newer: its host stands, this one's first_seen joins
    assert records["GPU-007"]["host"] == "h2" and records["GPU-007"]["first_seen"] == 1000
    locator = json.loads(kv.get(keys.locator("GPU-007")).value)
    assert locator == {"cluster": "c1", "host": "h2"}
    assert all(records[f"GPU-{i:03d}"]["host"] == "h1" for i in range(20) if i != 7)
