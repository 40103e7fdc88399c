"""A GPU's workload periods of one day are bounded (MAX_PERIODS_BYTES): a write that would
take them past it is refused whole, with a message naming the GPU, nothing of it stored; before,
etcd refused the oversized request and the chunk was retried as if etcd were down, forever.
On real etcd, and through the whole pipeline (gateway, Redis, a Celery worker)."""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from store import default_keys, kv
from store.codec import samples_from_rows
from store.errors import OverBound
from store.jobs import mark_chunk_failed
from store.keys import Keys
from store.registry import known
from store.workloads import MAX_PERIODS_BYTES, read_workloads, update_workloads
from store.write import GpuBatch, write_chunk
from tests.api.api_support import upload
from tests.helpers import wait_for

HOUR = 3_600_000
T0 = 1_752_796_800_000  # 2025-07-18T00:00:00Z
# a Kubernetes-length pod name: each period takes ~110 bytes encoded
POD = "training-job-{:06d}-worker-0-7f9c8d6b5-x2k4q"


def churn(n: int, first: int = 0) -> list[tuple[int, int, dict[str, str]]]:
    """`n` periods of a new pod every 5 s, all on T0's day (none joins the one before)."""
    return [
        (T0 + i * 5_000, T0 + i * 5_000, {"pod": POD.format(i), "namespace": "ml"})
        for i in range(first, first + n)
    ]


def over_bound() -> int:
    """How many `churn` periods take more than MAX_PERIODS_BYTES."""
    return MAX_PERIODS_BYTES // 90 + 1


def facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_a_gpu_past_the_bound_is_refused_and_no_gpu_of_the_write_changes(keys):
    update_workloads(keys, {"GPU-a": churn(3), "GPU-b": churn(3)})
    before = read_workloads(keys)
    bound = f"over the bound of {MAX_PERIODS_BYTES:,} bytes"
    with pytest.raises(OverBound, match=rf"^GPU GPU-b: .* {bound}"):
        update_workloads(keys, {"GPU-a": churn(5, 3), "GPU-b": churn(over_bound(), 3)})
    assert read_workloads(keys) == before  # GPU-a's new periods were not written either
    update_workloads(keys, {"GPU-a": churn(5, 3)})  # within the bound: written
    assert len(read_workloads(keys, ["GPU-a"])["GPU-a"]) == 8


def test_every_gpu_is_checked_before_any_is_written(keys):
    # the GPU past the bound is in the second part of MAX_TXN_OPS GPUs: the first part
    # was written before it was read, by the code before the check
    periods = {f"GPU-{g:03d}": churn(2) for g in range(kv.MAX_TXN_OPS + 10)}
    periods[f"GPU-{kv.MAX_TXN_OPS + 5:03d}"] = churn(over_bound())
    with pytest.raises(OverBound):
        update_workloads(keys, periods)
    assert read_workloads(keys) == {}


def test_a_chunk_stores_its_gpus_within_the_bound_and_records_the_refused_one(keys):
    periods = churn(over_bound())
    crowded = GpuBatch(facts("GPU-b"), samples_from_rows([(p[0], "m", 1.0) for p in periods]),
                       tuple(periods))  # fmt: skip
    quiet = GpuBatch(facts("GPU-a"), samples_from_rows([(T0, "m", 1.0)]), ((T0, T0, {}),))
    result = write_chunk(keys, "j", 0, [quiet, crowded], HOUR)
    assert result.refused == ("GPU-b",) and result.samples == 1
    assert kv.get(keys.chunk("j", 0)) is None  # not done whole: failed, counted once
    failure = json.loads(kv.get(keys.failure("j", 0)).value)
    assert failure["seq"] == 0 and failure["error"].startswith("GPU GPU-b: its workload")
    assert read_workloads(keys) == {"GPU-a": [(T0, T0, {})]}
    stored = kv.keys_in_range(keys.root + "/", keys.root + "/\xff")
    assert not [i.key for i in stored if "GPU-b" in i.key]  # no block, record or value
    before = kv.revision()
    again = write_chunk(keys, "j", 0, [quiet, crowded], HOUR)  # a redelivery
    assert again.already_done and kv.revision() == before


def test_every_gpu_past_the_bound_is_dropped_in_one_pass(keys, monkeypatch):
    """k GPUs past their bound cost two tries of the chunk, not k + 1 (each a read of every
    GPU's periods and a merge of them)."""
    from store import write as write_module

    periods = churn(over_bound())
    rows = samples_from_rows([(p[0], "m", 1.0) for p in periods])
    crowded = [GpuBatch(facts(f"GPU-{c}"), rows, tuple(periods)) for c in "bcd"]
    quiet = GpuBatch(facts("GPU-a"), samples_from_rows([(T0, "m", 1.0)]), ((T0, T0, {}),))
    tries = []
    real = write_module._write_chunk
    monkeypatch.setattr(
        write_module, "_write_chunk", lambda *a, **k: tries.append(1) or real(*a, **k)
    )
    result = write_chunk(keys, "j", 0, [crowded[0], quiet, *crowded[1:]], HOUR)
    assert sorted(result.refused) == ["GPU-b", "GPU-c", "GPU-d"] and result.samples == 1
    assert len(tries) == 2
    error = json.loads(kv.get(keys.failure("j", 0)).value)["error"]
    assert error.startswith("GPU GPU-b: its workload") and "also refused: GPU-c, GPU-d" in error
    assert read_workloads(keys) == {"GPU-a": [(T0, T0, {})]}


def test_a_chunk_of_many_gpus_drops_those_past_the_bound_in_every_part_at_once(keys, monkeypatch):
    """More GPU days than one check reads (MAX_TXN_OPS): every part is checked, so two
    GPUs past their bound in different parts still cost two tries of the chunk."""
    from store import write as write_module

    periods = churn(over_bound())
    crowded = samples_from_rows([(p[0], "m", 1.0) for p in periods])
    quiet = samples_from_rows([(T0, "m", 1.0)])
    uuids = [f"GPU-{g:03d}" for g in range(kv.MAX_TXN_OPS + 10)]
    over = {uuids[0], uuids[-1]}  # the first part's and the last's
    batches = [
        GpuBatch(facts(u), crowded, tuple(periods))
        if u in over
        else GpuBatch(facts(u), quiet, ((T0, T0, {}),))
        for u in uuids
    ]
    tries = []
    real = write_module._write_chunk
    monkeypatch.setattr(
        write_module, "_write_chunk", lambda *a, **k: tries.append(1) or real(*a, **k)
    )
    result = write_chunk(keys, "j", 0, batches, HOUR)
    assert set(result.refused) == over and len(tries) == 2
    assert len(read_workloads(keys)) == len(uuids) - 2


def test_a_chunk_whose_every_gpu_is_past_the_bound_names_them_all(keys):
    periods = churn(over_bound())
    rows = samples_from_rows([(p[0], "m", 1.0) for p in periods])
    batches = [GpuBatch(facts(u), rows, tuple(periods)) for u in ("GPU-b", "GPU-c")]
    with pytest.raises(OverBound, match=r"^GPU GPU-b: .*; also refused: GPU-c$"):
        write_chunk(keys, "j", 0, batches, HOUR)


def test_a_chunk_recorded_failed_is_not_stored_again_by_a_redelivery(keys):
    # a delivery failed the chunk (a worker recorded it); room was made since, and the
    # message came back: storing it now would count it twice, done and failed
    mark_chunk_failed(keys, "j", 0, "GPU GPU-a: over the bound")
    batch = GpuBatch(facts("GPU-a"), samples_from_rows([(T0, "m", 1.0)]), ((T0, T0, {}),))
    again = write_chunk(keys, "j", 0, [batch], HOUR)
    assert again.already_done and again.recorded_failed  # the worker logs it so
    assert kv.get(keys.chunk("j", 0)) is None and read_workloads(keys) == {}


def test_a_chunk_past_the_bound_stores_nothing(keys):
    periods = churn(over_bound())
    rows = [(start, "m", 1.0) for start, _, _ in periods]
    batch = GpuBatch(facts("GPU-b"), samples_from_rows(rows), tuple(periods))
    with pytest.raises(OverBound, match="GPU GPU-b"):
        write_chunk(keys, "j", 0, [batch], HOUR)
    written = kv.keys_in_range(keys.root + "/", keys.root + "/\xff")
    assert [i.key for i in written] == []  # no block, record, latest value, marker or period


CHURNING = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
QUIET = "GPU-0c7d2a11-3b2e-4f5a-9d61-2e8f0a4b7c13"


def _csv(rows: int) -> bytes:
    """Two GPUs, row by row: one whose pod changes on every row (a hostile or a very busy
    fleet), one with no workload."""
    header = "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,pod,namespace,value\n"
    util = "DCGM_FI_DEV_GPU_UTIL"
    body = "".join(
        f"{T0 // 1000 + i},{util},0,nvidia0,{CHURNING},H100,h1,{POD.format(i)},ml,{i}\n"
        f"{T0 // 1000 + i},{util},1,nvidia1,{QUIET},H100,h1,,,{i}\n"
        for i in range(rows)
    )
    return (header + body).encode()


def test_an_upload_past_the_bound_ends_failed_naming_the_gpu_and_keeps_the_other(
    pipeline: str, settings
) -> None:
    settings.INGEST_CHUNK_ROWS = 5000  # each GPU's rows in chunks: its first chunks fit
    api = APIClient()
    # ~103 bytes a period: 18,000 rows make ~1.85 MB of periods on one day, past the bound
    # and past etcd's 1.5 MiB request limit (the chunk that crossed it was retried forever)
    response = upload(api, _csv(18_000), "churn.csv")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]

    def finished() -> dict | None:
        body = api.get(f"/api/v1/ingest/jobs/{job_id}").json()
        return body if body["state"] in ("done", "failed") else None

    job = wait_for(finished, 90, f"job {job_id} finished")
    assert job["state"] == "failed", job
    assert job["chunks_failed"] >= 1 and job["chunks_done"] >= 1  # its first chunks fit
    assert job["chunks_done"] + job["chunks_failed"] == job["chunks_expected"]
    error = job["chunk_errors"][0]["error"]
    assert f"GPU {CHURNING}" in error and "over the bound" in error
    days = kv.get_range(*default_keys().workloads_days(CHURNING))
    assert len(days) == 1 and len(days[0].value) <= MAX_PERIODS_BYTES
    # the other GPU was stored whole (the chunker gives these two GPUs chunks of their
    # own: a chunk holding both is the test above)
    counted = Client().get(
        "/prometheus/api/v1/query",
        {"query": f'count_over_time(DCGM_FI_DEV_GPU_UTIL{{UUID="{QUIET}"}}[1d])',
         "time": T0 // 1000 + 18_000},
    ).json()  # fmt: skip
    assert [r["value"][1] for r in counted["data"]["result"]] == ["18000"]
