"""What the Prometheus API's series catalog costs a gateway process, as workloads churn.

    python -m bench.catalog                      # 100 GPUs x 20 metrics; 1, 10, 100 pods a GPU
    python -m bench.catalog --gpus 20 --pods 1 5 # a try

Every GPU and metric is one series per workload kept (pod, namespace, container: distinct
pod names make distinct series, as in Prometheus), plus the idle series. The catalog holds
in every gateway process, rebuilt every CATALOG_TTL_S while queried: those a query can meet,
the workloads of the last two days of the store for a dashboard's range, of every workload
kept for a query from further back. Each row writes its fleet into etcd (write_chunk:
records, latest values, workload periods; the pods one after another, 7 hours each, so 100
span 29 days), then builds the catalog in this process as a query does (reads included),
for a query over all of it and for one over the last 6 hours: the series, CPU seconds (best
of --reps), the memory it holds (tracemalloc, one more build), and both per series. The
baseline is the first row, in the same run: the ratios are its cost per series.
PROMETHEUS_MAX_SERIES bounds the count (docs/PROMETHEUS.md).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

from bench.harness import configure_this_process, stack

T0 = 1_752_796_800_000  # 2025-07-18T00:00:00Z
PERIOD_MS = 7 * 3_600_000
POD = "training-job-{:06d}-worker-0-7f9c8d6b5-x2k4q"  # Kubernetes-length


def load(root: str, gpus: int, metrics: int, pods: int) -> None:
    """Each GPU: a sample of each metric at the start and at the end, and `pods` workload
    periods of distinct pods between them."""
    from bench.promql import fleet
    from store import window_ms
    from store.codec import samples_from_rows
    from store.keys import Keys
    from store.write import GpuBatch, write_chunk

    last = T0 + pods * PERIOD_MS
    rows = [(t, f"DCGM_FI_DEV_FIELD_{m:03d}", 1.0) for t in (T0, last) for m in range(metrics)]
    periods = tuple(
        (T0 + i * PERIOD_MS, T0 + (i + 1) * PERIOD_MS - 10_000, {"pod": POD.format(i)})
        for i in range(pods)
    )
    for seq, facts in enumerate(fleet(gpus)):
        batch = GpuBatch(facts, samples_from_rows(rows), periods)
        write_chunk(Keys(root), "bench", seq, [batch], window_ms())


def build(root: str, start: int) -> int:
    """Build the catalog of `root` as a query from `start` does; how many series it holds."""
    from apps.read.prometheus.catalog import _CATALOG, StoreSource
    from store.keys import Keys

    _CATALOG.clear()
    return len(StoreSource(Keys(root))._listing(start).entries)


def measure(root: str, reps: int, start: int) -> tuple[int, float, int]:
    """(series, best CPU seconds of a build, bytes held after one)."""
    cpu = []
    build(root, start)  # warm: imports, the first reads' connections
    for _ in range(reps):
        started = time.process_time()
        series = build(root, start)
        cpu.append(time.process_time() - started)
    tracemalloc.start()
    build(root, start)
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return series, min(cpu), held


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gpus", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--pods", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    with stack(PROMETHEUS_MAX_SERIES="100000000") as st:
        configure_this_process(st)
        from django.conf import settings

        print(f"{args.gpus} GPUs x {args.metrics} metrics; CPU best of {args.reps}\n")
        print("| pods a GPU | query from | series | build CPU s | held MiB | us a series "
              "| bytes a series | x first row, a series (CPU / bytes) |")  # fmt: skip
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        first: tuple[float, float] | None = None
        for pods in args.pods:
            root = f"{settings.ETCD_PREFIX}/catalog-{pods}"
            load(root, args.gpus, args.metrics, pods)
            newest = T0 + pods * PERIOD_MS
            for name, start in (("the start", 0), ("6 h ago", newest - 6 * 3_600_000)):
                series, cpu, held = measure(root, args.reps, start)
                each = (cpu / series * 1e6, held / series)
                first = first or each
                print(
                    f"| {pods} | {name} | {series:,} | {cpu:.2f} | {held / 2**20:.0f} "
                    f"| {each[0]:.1f} | {each[1]:.0f} "
                    f"| {each[0] / first[0]:.2f} / {each[1] / first[1]:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
