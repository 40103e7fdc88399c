"""PromQL over rollup tiers gives what a real Prometheus gives over the raw samples.

Our store gets 29 hours of samples, is compacted with a raw retention of 6 hours
(the 5m and 1h rollups of the two closed days are written, then the raw blocks
older than 6 hours deleted); the real Prometheus keeps every raw sample. Every
claimed function (docs/PROMETHEUS.md, "Rollup tiers"), at steps and ranges on
bucket edges, must give the same series and values over the whole span, most of it
answered from rollups; samples sit exactly on bucket edges (the window's right end
is included) and the counter resets, once inside a bucket and once at an edge. A
function not claimed, or a step off the bucket edges, answers nothing where raw
blocks are gone (as before rollups were read), never an approximation.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.test import Client

from store import kv, window_ms
from store.codec import Samples
from store.compaction import compact
from store.keys import Keys
from store.rollup import EXACT_FIELDS, decode_rollup, encode_rollup
from store.tiers import tiers
from store.workloads import update_workloads
from store.write import GpuBatch, write_chunk
from tests.prometheus.oracle_support import differences
from tools import prometheus

D = 1_752_105_600_000  # 2025-07-10T00:00:00Z
MIN = 60_000
HOUR = 60 * MIN
FIRST, LAST = D - 2 * HOUR, D + 27 * HOUR
CHANGE = D + 6 * HOUR  # GPU 0 changes pod here (a bucket edge)
# raw blocks ending before LAST - 6h are deleted: raw holds the series from D + 21h on
TIERS = [
    {"name": "raw", "resolution": 0.0, "retention": 6 * 3600.0},
    {"name": "5m", "resolution": 300.0, "retention": 30 * 86400.0},
    {"name": "1h", "resolution": 3600.0, "retention": 30 * 86400.0},
]
RAW_FROM = D + 21 * HOUR
METRICS = (
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
)
CLUSTER = "rollups"


def _gpus() -> list[dict]:
    out = []
    for n in range(2):
        labels = {"UUID": f"GPU-roll-{n}", "gpu": str(n), "Hostname": "dgx-r", "job": "dcgm"}
        out.append(
            {
                "uuid": f"GPU-roll-{n}",
                "cluster": CLUSTER,
                "host": "dgx-r",
                "gpu_index": n,
                "device": f"nvidia{n}",
                "model": "NVIDIA H100",
                "driver": "535",
                "labels": labels,
            }
        )
    return out


def _samples(n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Every 30 s; every other sample jittered, so one in ten sits on a 5-minute edge."""
    rng = np.random.default_rng(40 + n)
    ts = np.arange(FIRST, LAST + 1, 30_000, dtype=np.int64)
    ts[1::2] += rng.integers(1, 900, len(ts[1::2]))
    if n == 1:  # a 40-minute gap (lookback, empty buckets)
        ts = ts[(ts < D + 3 * HOUR) | (ts >= D + 3 * HOUR + 40 * MIN)]
    k = len(ts)
    energy = np.cumsum(rng.random(k) * 1e5) + 1e9
    inside = int(np.searchsorted(ts, D + 2 * HOUR + 7 * MIN + 10_000))  # a reset in a bucket
    energy[inside:] -= energy[inside - 1] - 3.0
    edge = int(np.searchsorted(ts, D + 9 * HOUR))  # a reset exactly on a bucket edge
    energy[edge:] -= energy[edge - 1] - 1.0
    values = {
        "DCGM_FI_DEV_GPU_TEMP": np.clip(55 + np.cumsum(rng.normal(0, 0.5, k)), 30, 90).round()
        + rng.random(k) * 1e-3,
        "DCGM_FI_DEV_POWER_USAGE": (rng.random(k) * 500 + 60).round(3),
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": energy,
    }
    return ts, values


def _periods(ts: np.ndarray, change: int) -> list[tuple[int, int, dict[str, str]]]:
    a, b = ts[ts < change], ts[ts >= change]
    pod = {"namespace": "ml", "container": "trainer"}
    return [
        (int(a[0]), int(a[-1]), {**pod, "pod": "train-a"}),
        (int(b[0]), int(b[-1]), {**pod, "pod": "train-b"}),
    ]


def _load_store(keys: Keys, change: int) -> None:
    for n, facts in enumerate(_gpus()):
        ts, values = _samples(n)
        metric = np.repeat(np.arange(len(METRICS), dtype=np.int32), len(ts))
        all_v = np.concatenate([values[m] for m in METRICS])
        batch = GpuBatch(facts, Samples(np.tile(ts, len(METRICS)), metric, all_v, METRICS))
        write_chunk(keys, "rollups", n, [batch], window_ms())
        if n == 0:
            update_workloads(keys, {facts["uuid"]: _periods(ts, change)})


def _prometheus_series(change: int) -> list[prometheus.Series]:
    out: list[prometheus.Series] = []
    for metric in METRICS:
        for n, facts in enumerate(_gpus()):
            ts, values = _samples(n)
            base = {"cluster": CLUSTER, **facts["labels"], "device": f"nvidia{n}"}
            base |= {"modelName": "NVIDIA H100", "DCGM_FI_DRIVER_VERSION": "535"}
            periods = _periods(ts, change) if n == 0 else [(FIRST, LAST, {})]
            for start, end, extra in periods:
                sel = (ts >= start) & (ts <= end)
                pairs = zip(ts[sel], values[metric][sel], strict=True)
                points = [(t / 1000, float(v)) for t, v in pairs]
                out.append((metric, {**base, **extra}, points))
    return out


@contextlib.contextmanager
def _store_and_oracle(tmp: Path, change: int) -> Iterator[tuple[str, Keys]]:
    """Our store (compacted: rollups written, old raw blocks deleted) and a Prometheus
    holding every raw sample, GPU 0 changing pod at `change`."""
    keys = Keys(f"/rollups-{uuid.uuid4().hex[:10]}")
    saved = django_settings.STORAGE_TIERS
    django_settings.STORAGE_TIERS = TIERS
    try:
        _load_store(keys, change)
        report = compact(keys, tiers())
        assert report.rollups_written >= 8 and report.deleted_by_retention > 0, report
        prometheus.write_openmetrics(_prometheus_series(change), tmp / "data.om")
        prometheus.create_blocks(tmp / "data.om", tmp / "tsdb")
        with prometheus.start_prometheus(tmp / "prom", tsdb_dir=tmp / "tsdb") as svc:
            yield svc.url, keys
    finally:
        django_settings.STORAGE_TIERS = saved


@pytest.fixture(scope="module")
def rolled_oracle(live_services: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    if not prometheus.available():
        pytest.skip(f"prometheus/promtool not installed ({prometheus.APT_HINT})")
    with _store_and_oracle(tmp_path_factory.mktemp("rollups"), CHANGE) as (url, keys):
        yield url, keys.root


@pytest.fixture
def oracle(rolled_oracle, settings):
    url, root = rolled_oracle
    settings.ETCD_PREFIX = root
    settings.STORAGE_TIERS = TIERS
    return url


def _both(url: str, path: str, params: dict) -> tuple[dict, dict]:
    ours = Client().get(f"/prometheus/api/v1/{path}", params).json()
    return ours, prometheus.api_get(url, f"/api/v1/{path}", params)


def _old_points(answer: dict) -> int:
    """Points of the answer at times whose window lies where raw blocks are gone."""
    return sum(
        1 for r in answer["data"]["result"] for t, _ in r["values"] if t * 1000 < RAW_FROM - HOUR
    )


# (query, step): steps and ranges on 5-minute edges read the 5m tier, on hour edges 1h
EXACT = [
    ("DCGM_FI_DEV_GPU_TEMP", 5 * MIN),
    ("DCGM_FI_DEV_POWER_USAGE", HOUR),
    ("avg_over_time(DCGM_FI_DEV_GPU_TEMP[10m])", 5 * MIN),
    ("min_over_time(DCGM_FI_DEV_POWER_USAGE[5m])", 5 * MIN),
    ("max_over_time(DCGM_FI_DEV_POWER_USAGE[1h])", HOUR),
    ("sum_over_time(DCGM_FI_DEV_POWER_USAGE[15m])", 15 * MIN),
    ("count_over_time(DCGM_FI_DEV_GPU_TEMP[5m])", 5 * MIN),
    ("last_over_time(DCGM_FI_DEV_GPU_TEMP[10m])", 5 * MIN),
    ("rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m])", 5 * MIN),
    ("rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1h])", HOUR),
    ("increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[10m])", 5 * MIN),
    ("delta(DCGM_FI_DEV_GPU_TEMP[10m])", 10 * MIN),
    ("sum by (Hostname) (rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m]))", 5 * MIN),
    ("max(avg_over_time(DCGM_FI_DEV_GPU_TEMP[1h])) by (gpu)", HOUR),
]


@pytest.mark.parametrize(("query", "step"), EXACT)
def test_rollups_answer_what_prometheus_answers_on_raw(oracle, query: str, step: int) -> None:
    start = (FIRST + HOUR) // HOUR * HOUR
    params = {"query": query, "start": start / 1000, "end": LAST / 1000, "step": step / 1000}
    ours, theirs = _both(oracle, "query_range", params)
    assert _old_points(theirs) > 0
    assert not differences(ours, theirs), "\n".join(differences(ours, theirs)[:10])


@pytest.mark.parametrize(
    "query", ["DCGM_FI_DEV_GPU_TEMP", "rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m])"]
)
def test_instant_queries_where_raw_blocks_are_gone(oracle, query: str) -> None:
    for at in (D + 3 * HOUR + 20 * MIN, CHANGE, D + 9 * HOUR, D + 12 * HOUR + 35 * MIN):
        ours, theirs = _both(oracle, "query", {"query": query, "time": at / 1000})
        assert theirs["data"]["result"] or at == D + 3 * HOUR + 20 * MIN
        assert not differences(ours, theirs), (at, differences(ours, theirs))


@pytest.mark.parametrize(
    ("query", "step"),
    [
        ("stddev_over_time(DCGM_FI_DEV_POWER_USAGE[10m])", 5 * MIN),  # not claimed
        ("irate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m])", 5 * MIN),  # not claimed
        ("rate(DCGM_FI_DEV_POWER_USAGE[5m])", 5 * MIN),  # a gauge: rollups keep no resets
        ("avg_over_time(DCGM_FI_DEV_GPU_TEMP[10m])", 137_000),  # steps off the edges
        ("avg_over_time(DCGM_FI_DEV_GPU_TEMP[7m])", 5 * MIN),  # range off the edges
    ],
)
def test_what_is_not_exact_does_not_read_rollups(oracle, query: str, step: int) -> None:
    start = (FIRST + HOUR) // HOUR * HOUR
    params = {"query": query, "start": start / 1000, "end": LAST / 1000, "step": step / 1000}
    ours, theirs = _both(oracle, "query_range", params)
    assert _old_points(theirs) > 0 and _old_points(ours) == 0
    # where raw blocks remain, the answers still agree
    recent = {**params, "start": (RAW_FROM + HOUR) / 1000}
    ours, theirs = _both(oracle, "query_range", recent)
    assert theirs["data"]["result"] and not differences(ours, theirs)


def _as_written_before(keys: Keys, uuid: str) -> int:
    """Rewrite a GPU's rollup blocks as versions before the PromQL fields wrote them."""
    rewritten = 0
    for tier in ("5m", "1h"):
        prefix = keys.rollups_prefix(tier, uuid)
        for item in kv.get_range(prefix, kv.prefix_end(prefix)):
            b = decode_rollup(item.value)
            for f in EXACT_FIELDS:
                getattr(b, f)[:] = np.nan
            kv.put(item.key, encode_rollup(b))
            rewritten += 1
    return rewritten


def test_what_rollups_cannot_answer_exactly_answers_nothing(
    live_services: None, tmp_path: Path, settings
) -> None:
    """GPU 0 changes pod inside a 5-minute bucket; GPU 1's rollups are as older versions
    wrote them (no PromQL fields). Every point we answer is Prometheus'; the windows
    touching those buckets answer nothing, and nothing else is lost."""
    if not prometheus.available():
        pytest.skip(f"prometheus/promtool not installed ({prometheus.APT_HINT})")
    change = CHANGE + 2 * MIN + 30_000
    with _store_and_oracle(tmp_path, change) as (url, keys):
        assert _as_written_before(keys, "GPU-roll-1") >= 4
        settings.ETCD_PREFIX = keys.root
        settings.STORAGE_TIERS = TIERS
        start = (FIRST + HOUR) // HOUR * HOUR
        for query in ("avg_over_time(DCGM_FI_DEV_GPU_TEMP[10m])", "DCGM_FI_DEV_GPU_TEMP"):
            params = {"query": query, "start": start / 1000, "end": LAST / 1000, "step": 300}
            ours, theirs = _both(url, "query_range", params)
            mine = {_key(r): dict(r["values"]) for r in ours["data"]["result"]}
            real = {_key(r): dict(r["values"]) for r in theirs["data"]["result"]}
            assert mine.keys() == real.keys()
            lost_at_change = 0
            for labels, points in mine.items():
                expected = real[labels]
                assert all(
                    float(v) == pytest.approx(float(expected[t]), rel=1e-9)
                    for t, v in points.items()
                )
                missing = sorted(t for t in expected if t not in points)
                if dict(labels)["UUID"] == "GPU-roll-1":  # old rollups: raw times only
                    assert missing and max(missing) * 1000 <= RAW_FROM + 10 * MIN
                    assert min(points) * 1000 >= RAW_FROM - 10 * MIN
                else:  # only the windows touching the bucket of the pod change
                    near = [abs(t * 1000 - change) <= 15 * MIN for t in missing]
                    assert all(near), (labels, missing)
                    lost_at_change += len(missing)
            assert lost_at_change > 0


def _key(result: dict) -> tuple:
    return tuple(sorted(result["metric"].items()))
