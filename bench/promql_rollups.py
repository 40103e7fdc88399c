"""What a 7-day fleet PromQL query costs now that rollups answer where raw blocks are gone.

    python -m bench.promql_rollups            # 64 GPUs x 7 days at 60 s, 2 metrics
    python -m bench.promql_rollups --gpus 8   # a try

Ours only, in process (no Prometheus: tests/prometheus/test_promql_rollups.py checks
the answers). The samples are written through write_chunk into etcd, compacted with the
default tiers (raw 2 days: older raw blocks deleted, 5m and 1h rollups kept), then each
query is evaluated through the API view (django.test.Client) `--reps` times; the table
shows CPU seconds of this process (best and median, etcd runs elsewhere) and wall time,
and how many points the answer holds older than the raw retention.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from bench.harness import configure_this_process, stack

DAY = 86_400_000
STEP_MS = 60_000
METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")


def load(root: str, gpus: int, days: int, t0: int) -> None:
    from bench.promql import fleet
    from store import window_ms
    from store.codec import Samples
    from store.keys import Keys
    from store.write import GpuBatch, write_chunk

    rng = np.random.default_rng(7)
    n = days * DAY // STEP_MS
    ts = t0 + np.arange(n, dtype=np.int64) * STEP_MS
    for i, facts in enumerate(fleet(gpus)):
        values = np.concatenate(
            [rng.integers(0, 101, n).astype(float), np.cumsum(rng.random(n) * 30_000)]
        )
        metric = np.repeat(np.arange(2, dtype=np.int32), n)
        samples = Samples(np.tile(ts, 2), metric, values, METRICS)
        write_chunk(Keys(root), "bench", i, [GpuBatch(facts, samples)], window_ms())


def measure(query: str, start: int, end: int, step: int, reps: int, raw_from: int) -> tuple:
    from django.test import Client

    params = {"query": query, "start": start / 1000, "end": end / 1000, "step": step / 1000}
    cpu, wall = [], []
    for _ in range(reps):
        c0, w0 = time.process_time(), time.perf_counter()
        body = Client().get("/prometheus/api/v1/query_range", params).json()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    result = body["data"]["result"]
    points = sum(len(r["values"]) for r in result)
    old = sum(1 for r in result for t, _ in r["values"] if t * 1000 < raw_from)
    return min(cpu), statistics.median(cpu), statistics.median(wall), cpu[0], points, old


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    t0 = 1_752_105_600_000  # a midnight UTC
    end = t0 + args.days * DAY - STEP_MS
    with stack() as st:
        configure_this_process(st)
        from django.conf import settings

        from store.compaction import compact
        from store.keys import Keys
        from store.tiers import tiers

        started = time.perf_counter()
        load(settings.ETCD_PREFIX, args.gpus, args.days, t0)
        report = compact(Keys(settings.ETCD_PREFIX), tiers())
        print(
            f"{args.gpus} GPUs x {args.days} d at 60 s: loaded and compacted in "
            f"{time.perf_counter() - started:.0f} s ({report.rollups_written} rollup blocks, "
            f"{report.deleted_by_retention} raw blocks deleted)",
            flush=True,
        )
        raw_from = end - 2 * DAY
        span = (t0 + 3_600_000, end // 3_600_000 * 3_600_000)
        plan = [
            ("7 d, step 1h (1h tier)", "avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL[1h]))", 3_600_000),
            (
                "7 d, step 5m (5m tier)",
                "sum(rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m]))",
                300_000,
            ),
            ("7 d, step 5m, lookup (5m tier)", "max(DCGM_FI_DEV_GPU_UTIL)", 300_000),
            ("7 d, step 137 s (raw only)", "max(DCGM_FI_DEV_GPU_UTIL)", 137_000),
        ]
        print(
            "| query | CPU best (s) | CPU median (s) | wall median (s) | CPU first (s) "
            "| points | points older than raw |"
        )
        print("|---|---:|---:|---:|---:|---:|---:|")
        for label, query, step in plan:
            best, med, wall, first, points, old = measure(query, *span, step, args.reps, raw_from)
            print(
                f"| {label}: `{query}` | {best:.3f} | {med:.3f} | {wall:.3f} | {first:.3f} "
                f"| {points} | {old} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
