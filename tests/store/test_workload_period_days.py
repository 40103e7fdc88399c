"""A GPU's workload periods are kept one key per UTC day: a write touches only the days its
periods start in (not the GPU's whole history), a day past its bound leaves the next days
writable, a workload running past midnight reads as one period, and a store written before
(one key per GPU) is still read and trimmed. On real etcd."""

from __future__ import annotations

import json

import pytest

from store import kv
from store.codec import samples_from_rows
from store.errors import OverBound
from store.keys import Keys
from store.read import open_gpu
from store.registry import known
from store.workloads import (
    DAY_MS,
    MAX_PERIODS_BYTES,
    read_workloads,
    trim_periods,
    update_workloads,
)
from store.write import GpuBatch, write_chunk
from tests.helpers import txn_put_sizes

T0 = 1_752_796_800_000  # 2025-07-18T00:00:00Z
HOUR = 3_600_000


def pod(name: str) -> dict[str, str]:
    return {"pod": name, "namespace": "ml", "container": "train"}


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_a_workload_running_past_midnight_reads_as_one_period(keys):
    late, early = T0 + DAY_MS - HOUR, T0 + DAY_MS + HOUR
    update_workloads(keys, {"GPU-1": [(T0, late - 1, pod("a")), (late, T0 + DAY_MS - 1, pod("b"))]})
    update_workloads(keys, {"GPU-1": [(T0 + DAY_MS, early, pod("b"))]})  # the next chunk
    assert len(kv.get_range(*keys.workloads_days("GPU-1"))) == 2
    assert (
        read_workloads(keys, ["GPU-1"])
        == read_workloads(keys)
        == {"GPU-1": [(T0, late - 1, pod("a")), (late, early, pod("b"))]}
    )


def test_a_write_rewrites_its_days_key_not_the_history(keys, monkeypatch):
    history = [
        (T0 + i * 600_000, T0 + i * 600_000 + 500_000, pod(f"job-{i}")) for i in range(30 * 144)
    ]  # 30 days of 10-minute jobs
    update_workloads(keys, {"GPU-1": history})
    sizes = txn_put_sizes(monkeypatch)
    today = history[-1][1] + 10_000
    update_workloads(keys, {"GPU-1": [(today, today + 10_000, pod("now"))]})
    whole = sum(len(i.value) for i in kv.get_range(*keys.workloads_days("GPU-1")))
    assert len(sizes) == 1 and sizes[0] < whole / 20  # one day of 30, and a margin
    assert read_workloads(keys)["GPU-1"] == [*history, (today, today + 10_000, pod("now"))]


def test_a_day_past_its_bound_leaves_the_next_day_writable(keys):
    name = "training-job-{:06d}-worker-0-7f9c8d6b5-x2k4q"
    crowded = [(T0 + i * 5_000, T0 + i * 5_000, pod(name.format(i))) for i in range(17_000)]
    with pytest.raises(OverBound, match="GPU GPU-1: its workload periods starting on 2025-07-18"):
        update_workloads(keys, {"GPU-1": crowded})
    full = crowded[:11_800]  # what one day can take, near its bound
    update_workloads(keys, {"GPU-1": full})
    (day,) = kv.get_range(*keys.workloads_days("GPU-1"))
    assert MAX_PERIODS_BYTES - 60_000 < len(day.value) <= MAX_PERIODS_BYTES
    # the next day brings more than the room left: one key a GPU would refuse them, and
    # every chunk of the GPU after them
    tomorrow = [
        (T0 + DAY_MS + i * 5_000, T0 + DAY_MS + i * 5_000, pod(name.format(i))) for i in range(600)
    ]
    update_workloads(keys, {"GPU-1": tomorrow})
    assert read_workloads(keys)["GPU-1"] == [*full, *tomorrow]


def test_merging_periods_again_changes_nothing(keys):
    # two pods taking turns within one timestamp: the same spans, different labels
    turns = [(T0 + i // 2, T0 + i // 2, pod("a" if i % 2 else "b")) for i in range(6)]
    update_workloads(keys, {"GPU-1": turns})
    once = read_workloads(keys)["GPU-1"]
    update_workloads(keys, {"GPU-1": turns})  # a retried chunk
    assert read_workloads(keys)["GPU-1"] == once  # the old sort doubled them each time
    assert len(once) == 6


def test_a_store_written_before_day_keys_is_read_and_trimmed(keys):
    old = [[T0 - 2 * DAY_MS, T0 - 2 * DAY_MS + 1, pod("old")], [T0, T0 + 1, pod("then")]]
    kv.put(keys.workloads("GPU-1"), json.dumps(old).encode())  # the one key of a GPU
    update_workloads(keys, {"GPU-1": [(T0 + HOUR, T0 + HOUR, pod("now"))]})
    names = [p[2]["pod"] for p in read_workloads(keys, ["GPU-1"])["GPU-1"]]
    assert names == ["old", "then", "now"] == [p[2]["pod"] for p in read_workloads(keys)["GPU-1"]]
    assert trim_periods(keys, "GPU-1", T0 - DAY_MS) == 1
    assert [p[2]["pod"] for p in read_workloads(keys)["GPU-1"]] == ["then", "now"]
    assert trim_periods(keys, "GPU-1", T0 + HOUR) == 1  # the old key's last one: it goes
    assert kv.get(keys.workloads("GPU-1")) is None
    assert [p[2]["pod"] for p in read_workloads(keys)["GPU-1"]] == ["now"]


def test_a_gpu_window_reads_the_old_key_and_the_days_but_not_a_longer_uuids(keys):
    facts = {"cluster": "c", "host": "h", "gpu_index": 0, "device": "", "model": "",
             "driver": "", "labels": {}}  # fmt: skip
    for seq, uuid in enumerate(("GPU-1", "GPU-1-x")):  # one uuid a prefix of the other
        samples = samples_from_rows([(T0, "m", 1.0)])
        write_chunk(keys, "j", seq, [GpuBatch({**facts, "uuid": uuid}, samples)], HOUR)
    kv.put(keys.workloads("GPU-1"), json.dumps([[T0 - DAY_MS, T0 - 1, pod("then")]]).encode())
    update_workloads(keys, {"GPU-1": [(T0, T0, pod("now"))], "GPU-1-x": [(T0, T0, pod("x"))]})
    window = open_gpu(keys, "GPU-1", [])  # what REST and the GPU page read
    assert [p[2]["pod"] for p in window.workloads] == ["then", "now"]
