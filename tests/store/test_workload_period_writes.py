"""Workload periods of many GPUs are merged in transactions that fit etcd's bounds (bytes as
well as operations), and every GPU's periods land: long lists, and more GPUs than the
compare-and-swap's retry budget times a transaction's keys. On real etcd."""

from __future__ import annotations

from store import kv
from store.keys import Keys
from store.workloads import read_workloads, update_workloads
from tests.helpers import txn_put_sizes

MIN = 60_000


def churn(n: int) -> list[tuple[int, int, dict[str, str]]]:
    """`n` periods of two pods taking turns every minute (none joins the one before)."""
    return [
        (i * MIN, i * MIN + 50_000, {"pod": f"train-{i % 2}", "namespace": "ml", "container": "c"})
        for i in range(n)
    ]


def test_long_period_lists_are_written_within_the_byte_bound(etcd_root, monkeypatch):
    keys = Keys(etcd_root)
    periods = {f"GPU-{g}": churn(800) for g in range(40)}  # ~60 KB a GPU, ~2.4 MB in all
    sizes = txn_put_sizes(monkeypatch)
    update_workloads(keys, periods)
    assert sum(sizes) > 2 * kv.MAX_TXN_BYTES  # more than one transaction's worth
    assert len(sizes) >= 3 and max(sizes) <= kv.MAX_TXN_BYTES
    assert read_workloads(keys, list(periods)) == periods
    sizes.clear()
    update_workloads(keys, periods)  # written again (a retried chunk): nothing changes
    assert sizes == []


def test_a_fleet_larger_than_the_retry_budget_is_written_whole(etcd_root):
    keys = Keys(etcd_root)
    periods = {f"GPU-{g:05d}": churn(1) for g in range(17 * kv.MAX_TXN_OPS)}  # 17 rounds
    update_workloads(keys, periods)  # gave up after 16 rounds, with no contention at all
    assert read_workloads(keys) == periods
