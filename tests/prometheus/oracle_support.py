"""The oracle data set: the same DCGM samples for a real Prometheus and for our store.

Not a test module. Five GPU records on two hosts (one a MIG instance), nine DCGM
fields sampled every 15 s with jitter for two hours, a 12-minute gap on one GPU
(lookback), an energy counter with a reset (rate/increase), and one GPU whose
workload changes from pod `train-a` to pod `train-b` halfway (two series per
metric). Values carry random fractions so that topk/bottomk never tie.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from store.codec import Samples
from store.keys import Keys
from store.workloads import update_workloads
from store.write import GpuBatch, write_chunk
from tools import prometheus

T0 = 1_752_800_000_000  # 2025-07-18T00:53:20Z, in the past: promtool backfills it
HOUR = 3_600_000
SPAN = 2 * HOUR
STEP = 15_000
CLUSTER = "oracle"
MODEL = "NVIDIA H100 80GB HBM3"
DRIVER = "535.129.03"
HOSTS = ("dgx-a", "dgx-b")
METRICS = (
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
)
WORKLOADS = (
    (T0, T0 + HOUR - 1, {"pod": "train-a", "namespace": "ml", "container": "trainer"}),
    (T0 + HOUR, T0 + SPAN + HOUR, {"pod": "train-b", "namespace": "ml", "container": "trainer"}),
)


def gpus() -> list[dict]:
    """Facts of each GPU record (as our parsers make them) and the labels dcgm-exporter shows."""
    out = []
    for n in range(5):
        host = HOSTS[n // 3]
        index = n % 3
        parent = f"GPU-0000{n}aaa-1111-2222-3333-44445555666{n}"
        labels = {
            "UUID": parent,
            "gpu": str(index),
            "device": f"nvidia{index}",
            "modelName": MODEL,
            "Hostname": host,
            "DCGM_FI_DRIVER_VERSION": DRIVER,
            "pci_bus_id": f"00000000:{0x18 + n:02X}:00.0",
            "instance": f"{host}:9400",
            "job": "dcgm",
        }
        uuid = parent
        if n == 4:  # a MIG instance of GPU 1 on dgx-b
            labels.update({"GPU_I_ID": "1", "GPU_I_PROFILE": "1g.10gb"})
            uuid = f"MIG-{parent}-1"
        facts = {
            "uuid": uuid,
            "cluster": CLUSTER,
            "host": host,
            "gpu_index": index,
            "device": f"nvidia{index}",
            "model": MODEL,
            "driver": DRIVER,
            "labels": labels,
        }
        out.append(facts)
    return out


def _values(rng: np.random.Generator, metric: str, n: int) -> np.ndarray:
    frac = rng.random(n) * 0.001  # no ties between GPUs
    if metric == "DCGM_FI_DEV_GPU_TEMP":
        return np.clip(55 + np.cumsum(rng.normal(0, 0.5, n)), 30, 90).round() + frac
    if metric == "DCGM_FI_DEV_POWER_USAGE":
        return (rng.random(n) * 500 + 60).round(3)
    if metric == "DCGM_FI_DEV_SM_CLOCK":
        return np.where(rng.random(n) < 0.9, 1980.0, 1410.0) + frac
    if metric in ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"):
        return rng.random(n)
    if metric == "DCGM_FI_DEV_FB_USED":
        return np.repeat(rng.integers(0, 80_000, n // 40 + 1), 40)[:n].astype(float) + frac
    if metric == "DCGM_FI_DEV_FB_FREE":
        return 81_559.0 - np.repeat(rng.integers(0, 80_000, n // 40 + 1), 40)[:n] + frac
    if metric == "DCGM_FI_DEV_GPU_UTIL":
        return rng.integers(0, 101, n).astype(float) + frac
    energy = np.cumsum(rng.random(n) * 100_000)  # mJ, a counter
    if n > 200:
        energy[200:] -= energy[199] - 5.0  # a reset (driver reload)
    return energy


def samples() -> list[tuple[dict, np.ndarray, dict[str, np.ndarray]]]:
    """(facts, ts, {metric: values}) per GPU; timestamps jittered, one GPU with a gap."""
    rng = np.random.default_rng(15)
    out = []
    for n, facts in enumerate(gpus()):
        ts = T0 + np.arange(0, SPAN + 1, STEP) + rng.integers(0, 900, SPAN // STEP + 1)
        if n == 2:
            ts = ts[(ts < T0 + 40 * 60_000) | (ts > T0 + 52 * 60_000)]
        out.append((facts, ts.astype(np.int64), {m: _values(rng, m, len(ts)) for m in METRICS}))
    return out


def with_workload(n: int) -> bool:
    return n == 0


def load_store(keys: Keys, window_ms: int) -> None:
    """Write the data set into our store: the chunk write path, then workload periods."""
    for n, (facts, ts, values) in enumerate(samples()):
        names = tuple(METRICS)
        metric = np.repeat(np.arange(len(names), dtype=np.int32), len(ts))
        all_ts = np.tile(ts, len(names))
        all_v = np.concatenate([values[m] for m in names])
        batch = GpuBatch(facts, Samples(all_ts, metric, all_v, names))
        write_chunk(keys, "oracle", n, [batch], window_ms)
        if with_workload(n):
            periods = [
                (int(ts[(ts >= s) & (ts <= e)].min()), int(ts[(ts >= s) & (ts <= e)].max()), lb)
                for s, e, lb in WORKLOADS
            ]
            update_workloads(keys, {facts["uuid"]: periods})


def prometheus_series() -> list[prometheus.Series]:
    """The same samples as Prometheus series, family by family (what promtool wants)."""
    data = samples()
    out: list[prometheus.Series] = []
    for metric in METRICS:
        for n, (facts, ts, values) in enumerate(data):
            base = {"__name__": metric, "cluster": CLUSTER, **facts["labels"]}
            del base["__name__"]
            periods = WORKLOADS if with_workload(n) else ((0, math.inf, {}),)
            for start, end, extra in periods:
                sel = (ts >= start) & (ts <= end)
                points = [
                    (t / 1000, float(v)) for t, v in zip(ts[sel], values[metric][sel], strict=True)
                ]
                out.append((metric, {**base, **extra}, points))
    return out


def start_oracle(tmp: Path):
    """A real Prometheus over the data set (promtool backfill); returns the service."""
    om = tmp / "oracle.om"
    prometheus.write_openmetrics(prometheus_series(), om)
    tsdb = tmp / "tsdb"
    prometheus.create_blocks(om, tsdb)
    return prometheus.start_prometheus(tmp / "prom", tsdb_dir=tsdb)


# Comparison ---------------------------------------------------------------------------
def _number(text: str) -> float:
    return float(text.replace("+Inf", "inf").replace("-Inf", "-inf"))


def _close(a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    if math.isnan(x) or math.isnan(y):
        return math.isnan(x) and math.isnan(y)
    return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)


def differences(ours: dict, theirs: dict) -> list[str]:
    """What differs between two successful Prometheus answers (empty list: the same)."""
    if ours.get("status") == theirs.get("status") == "error":
        same = ours["errorType"] == theirs["errorType"]
        return [] if same else [f"errors differ: ours {ours} / theirs {theirs}"]
    if ours.get("status") != "success" or theirs.get("status") != "success":
        return [f"status: ours {str(ours)[:300]} / theirs {str(theirs)[:300]}"]
    a, b = ours["data"], theirs["data"]
    if a["resultType"] != b["resultType"]:
        return [f"resultType {a['resultType']} != {b['resultType']}"]
    if a["resultType"] in ("scalar", "string"):
        same = a["result"][0] == b["result"][0] and _close(a["result"][1], b["result"][1])
        return [] if same else [f"{a['result']} != {b['result']}"]
    key = "value" if a["resultType"] == "vector" else "values"
    mine = {tuple(sorted(r["metric"].items())): r[key] for r in a["result"]}
    real = {tuple(sorted(r["metric"].items())): r[key] for r in b["result"]}
    problems = []
    for labels in mine.keys() - real.keys():
        problems.append(f"only ours: {dict(labels)}")
    for labels in real.keys() - mine.keys():
        problems.append(f"only Prometheus': {dict(labels)}")
    for labels in mine.keys() & real.keys():
        x, y = mine[labels], real[labels]
        points_x = [x] if key == "value" else x
        points_y = [y] if key == "value" else y
        if [p[0] for p in points_x] != [p[0] for p in points_y]:
            problems.append(
                f"{dict(labels)}: timestamps differ ({len(points_x)} vs {len(points_y)})"
            )
            continue
        bad = [(p, q) for p, q in zip(points_x, points_y, strict=True) if not _close(p[1], q[1])]
        if bad:
            problems.append(f"{dict(labels)}: {len(bad)} values differ, first {bad[0]}")
    return problems
