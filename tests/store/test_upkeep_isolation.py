"""Upkeep that one bad GPU cannot stop, and rollups that cannot overflow."""

from __future__ import annotations

import io
import itertools
import json
import math

import pytest
from django.core.management import call_command
from django.test import Client
from rest_framework.test import APIClient

from store import default_keys, kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.keys import Keys
from store.registry import known
from store.tiers import Tier, tiers
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10**12, HOUR)
TIERS = [RAW, Tier("1m", 60_000, 10**12, 24 * HOUR)]
T0 = 1_752_871_200_000  # 2025-07-18T20:40:00Z
HUGE = 1.7e308


def write(
    keys: Keys, seq: int, uuid: str, values: list[float], window_ms: int = HOUR, offset: int = 0
) -> None:
    facts = {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    rows = [(T0 + offset + i * 10_000, "m", v) for i, v in enumerate(values)]
    write_chunk(keys, "j", seq, [GpuBatch(facts, samples_from_rows(rows))], window_ms)


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def close_windows(keys: Keys) -> None:
    """A sample two days later on another GPU: rollups are written for closed windows only
    (store/closing.py), and this closes every window of T0's day."""
    write(keys, 99, "GPU-LATER", [0.0], offset=2 * 24 * HOUR)


def corrupt_block(keys: Keys, uuid: str) -> None:
    """A second block in the GPU's window that no decoder accepts (bit rot, a bug)."""
    kv.put(keys.block(uuid, T0 + 5, T0 + 5, "0badc0de", 1, 0), b"GTB\x01 not zstd")


def test_one_gpus_broken_block_is_reported_and_the_others_are_compacted(keys):
    for seq, uuid in enumerate(("GPU-1", "GPU-2", "GPU-3")):
        write(keys, seq, uuid, [1.0, 2.0])
        write(keys, seq + 10, uuid, [1.0, 2.0, 3.0])  # a second block: something to merge
    corrupt_block(keys, "GPU-2")
    close_windows(keys)
    report = compact(keys, TIERS)
    assert {(f["uuid"], f["step"]) for f in report.failures} == {
        ("GPU-2", "merge"),
        ("GPU-2", "rollup-1m"),
    }
    assert all("BlockFormatError" in f["error"] for f in report.failures)
    assert report.raw_windows_merged == 2  # GPU-1 and GPU-3
    for uuid in ("GPU-1", "GPU-3"):
        assert kv.count_prefix(keys.blocks_prefix(uuid)) == 1
        assert kv.count_prefix(keys.rollups_prefix("1m", uuid)) == 1
    cursor = kv.get(keys.compaction_cursor())
    assert cursor is not None and int(cursor.value) == report.cursor > 0
    assert compact(keys, TIERS).failures == []  # the cursor moved past it


def test_compact_command_and_metrics_report_the_failure(etcd_root, settings):
    keys = default_keys()
    write(keys, 0, "GPU-1", [1.0])
    corrupt_block(keys, "GPU-1")
    close_windows(keys)
    out, err = io.StringIO(), io.StringIO()
    call_command("compact", stdout=out, stderr=err)
    report = json.loads(out.getvalue())
    assert f"{len(report['failures'])} GPU upkeep step(s) failed" in err.getvalue()
    assert [f["step"] for f in report["failures"]] == [
        "merge",
        *[f"rollup-{t.name}" for t in tiers()[1:]],
    ]
    metrics = Client().get("/metrics").content.decode()
    line = f'telemetry_upkeep_last_run_failures{{shard="default"}} {len(report["failures"])}'
    assert line in metrics
    assert 'telemetry_upkeep_failures_total{step="merge"}' in metrics


def test_huge_values_roll_up_and_every_answer_is_finite(etcd_root, settings):
    keys = default_keys()
    write(keys, 0, "GPU-H", [HUGE, HUGE, -HUGE, HUGE], window_ms=tiers()[0].window_ms)
    api = APIClient()
    url = "/api/v1/gpus/GPU-H/telemetry"
    params = {"start_time": "2025-07-18T20:00:00Z", "end_time": "2025-07-18T21:00:00Z"}
    before = api.get(url, {**params, "step": "5m", "agg": "sum"})
    assert before.status_code == 200, before.content
    close_windows(keys)
    report = compact(keys, tiers())
    assert report.failures == [] and report.rollups_written == len(tiers()) - 1
    for step, agg in itertools.product(("60s", "5m"), ("sum", "avg", "max", "count")):
        body = api.get(url, {**params, "step": step, "agg": agg})
        assert body.status_code == 200, body.content
        values = [r["value"] for r in body.json()["results"]]
        assert values and all(math.isfinite(v) for v in values), (step, agg, values)
    summed = api.get(url, {**params, "step": "5m", "agg": "sum"}).json()["results"]
    assert summed == before.json()["results"]  # rollups and raw agree
    assert summed[0]["value"] == pytest.approx(1.7976931348623157e308)  # saturated, not inf
    for fmt in ("csv", "wide"):
        export = api.get(url, {**params, "step": "5m", "agg": "sum", "format": fmt})
        assert export.status_code == 200
        text = b"".join(export.streaming_content) if export.streaming else export.content
        assert b"inf" not in text.lower() and b"nan" not in text.lower()
