"""PromQL latency: the same queries against our gateway and a real Prometheus, in one run.

    python -m bench.promql            # 64 GPUs x 24 h at 30 s (make bench-promql)
    python -m bench.promql --quick    # 8 GPUs x 6 h, for a try

Both hold the same samples: ours written through the worker's write path
(store.write.write_chunk) into etcd and served by a real gateway process (uvicorn);
Prometheus' from `promtool tsdb create-blocks-from openmetrics`. Each query runs
`--reps` times over HTTP against each, alternating, on a kept-alive connection per side
asking for gzip (as Grafana's data source proxy sends them) and on a new connection per
request without it; the table shows medians and the ratios ours / Prometheus (below 1.0:
we are faster). The goals (issue 15): query_range over 24 h of one GPU and over the fleet
<= 1.0, instant fleet queries <= 2.0.

    python -m bench.promql --ingest   # ours written to between queries, as a live store is

With --ingest, before each pair of requests (ours, Prometheus') one scrape of the fleet (a
sample per GPU and metric, stamped a step after the last, as if the clock went on) is
written, untimed, into ours through the worker's write path and into Prometheus by remote
write; the query then moves to that scrape's time (an instant at it, a range ending at it,
aligned to the step), as a dashboard at "now" refreshed at the scrape interval asks. Every
query of ours finds the store written since the previous one (its plans are read again, the
newest window's new blocks read and merged), where the default measures a store at rest. Ours is
compacted (untimed) before each query's runs, so each query meets what the first 2 x reps
scrapes after a compaction leave (30 minutes of 30 s scrapes at the defaults). Not like a
live store: the data set is dated 2025, so ranges read rollup tiers where they exist (as a
range past raw retention does), and our series catalog lives one second of wall clock, which
here spans many scrapes.

    python -m bench.promql --in-process   # our answers' own CPU, no HTTP and no Prometheus

With --in-process, each query's answer is made in this process by the function the views
call (apps.read.prometheus.views.respond, over real etcd), `--reps` x 30 times after a
warm-up: the CPU and wall time of the store and evaluation work alone, for comparing two
trees run one after the other (the HTTP rows add uvicorn, the read lane and the client).
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.parse
import urllib.request

import numpy as np

from bench.harness import configure_this_process, stack
from bench.read import Client
from tools import prometheus

T0 = 1_752_800_000_000
STEP_MS = 30_000
METRICS = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
)


def log(text: str) -> None:
    print(text, flush=True)


def fleet(gpus: int) -> list[dict]:
    out = []
    for n in range(gpus):
        host = f"node-{n // 8:02d}"
        uuid = f"GPU-{n:08x}-0000-4000-8000-{n:012x}"
        labels = {
            "UUID": uuid,
            "gpu": str(n % 8),
            "device": f"nvidia{n % 8}",
            "modelName": "NVIDIA H100 80GB HBM3",
            "Hostname": host,
            "DCGM_FI_DRIVER_VERSION": "535.129.03",
        }
        out.append(
            {
                "uuid": uuid,
                "cluster": "bench",
                "host": host,
                "gpu_index": n % 8,
                "device": f"nvidia{n % 8}",
                "model": labels["modelName"],
                "driver": labels["DCGM_FI_DRIVER_VERSION"],
                "labels": labels,
            }
        )
    return out


def series_values(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    return {
        "DCGM_FI_DEV_GPU_UTIL": rng.integers(0, 101, n).astype(float),
        "DCGM_FI_DEV_MEM_COPY_UTIL": rng.integers(0, 101, n).astype(float),
        "DCGM_FI_DEV_GPU_TEMP": np.clip(55 + np.cumsum(rng.normal(0, 0.3, n)), 30, 90).round(),
        "DCGM_FI_DEV_POWER_USAGE": (rng.random(n) * 500 + 60).round(3),
        "DCGM_FI_DEV_SM_CLOCK": np.full(n, 1980.0),
        "DCGM_FI_DEV_FB_USED": np.repeat(rng.integers(0, 80_000, n // 20 + 1), 20)[:n] * 1.0,
        "DCGM_FI_DEV_FB_FREE": 81_559.0 - np.repeat(rng.integers(0, 80_000, n // 20 + 1), 20)[:n],
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": np.cumsum(rng.random(n) * 30_000),
    }


def dataset(gpus: int, hours: float, seed: int) -> list[tuple[dict, np.ndarray, dict]]:
    rng = np.random.default_rng(seed)
    n = int(hours * 3_600_000 // STEP_MS)
    ts = T0 + np.arange(n, dtype=np.int64) * STEP_MS
    return [(facts, ts, series_values(rng, n)) for facts in fleet(gpus)]


def load_ours(data: list, root: str) -> float:
    from store import window_ms
    from store.codec import Samples
    from store.keys import Keys
    from store.write import GpuBatch, write_chunk

    keys, window = Keys(root), window_ms()
    started = time.perf_counter()
    names = tuple(METRICS)
    for n, (facts, ts, values) in enumerate(data):
        metric = np.repeat(np.arange(len(names), dtype=np.int32), len(ts))
        samples = Samples(
            np.tile(ts, len(names)), metric, np.concatenate([values[m] for m in names]), names
        )
        write_chunk(keys, "bench", n, [GpuBatch(facts, samples)], window)
    return time.perf_counter() - started


def prometheus_labels(facts: dict) -> dict[str, str]:
    """A GPU's series labels on Prometheus' side (its name aside)."""
    return {**facts["labels"], "cluster": facts["cluster"]}


def prometheus_series(data: list):
    for metric in METRICS:
        for facts, ts, values in data:
            yield (
                metric,
                prometheus_labels(facts),
                list(zip((ts / 1000).tolist(), values[metric].tolist(), strict=True)),
            )


def queries(data: list, hours: float) -> list[tuple[str, str, dict]]:
    end = (T0 + int(hours * 3_600_000) - STEP_MS) / 1000
    start = end - min(hours, 24) * 3600
    one = data[0][0]["uuid"]
    day = {"start": start, "end": end}
    return [
        (
            "range 24h, one GPU, step 60s",
            f'DCGM_FI_DEV_GPU_UTIL{{UUID="{one}"}}',
            {**day, "step": 60},
        ),
        (
            "range 24h, one GPU, avg_over_time 5m",
            f'avg_over_time(DCGM_FI_DEV_POWER_USAGE{{UUID="{one}"}}[5m])',
            {**day, "step": 300},
        ),
        ("range 24h, fleet avg, step 5m", "avg(DCGM_FI_DEV_GPU_UTIL)", {**day, "step": 300}),
        (
            "range 24h, fleet max by host, step 5m",
            "max by (Hostname) (DCGM_FI_DEV_GPU_TEMP)",
            {**day, "step": 300},
        ),
        (
            "range 24h, fleet rate, step 5m",
            "sum(rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m]))",
            {**day, "step": 300},
        ),
        ("instant, fleet selector", "DCGM_FI_DEV_GPU_UTIL", {"time": end}),
        ("instant, fleet sum", "sum(DCGM_FI_DEV_POWER_USAGE)", {"time": end}),
        ("instant, fleet topk", "topk(5, DCGM_FI_DEV_GPU_TEMP)", {"time": end}),
        (
            "instant, dashboard panel",
            'max(DCGM_FI_DEV_GPU_TEMP{Hostname=~".*", gpu=~".*"}) by (Hostname, gpu, uuid)',
            {"time": end},
        ),
    ]


def timed(url: str) -> tuple[float, int]:
    """A GET on a new connection (urllib closes it): (seconds, body bytes)."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as resp:
        body = resp.read()
    return time.perf_counter() - started, len(body)


def timed_on(client: Client, path: str) -> float:
    """A GET on `client`'s kept-alive connection, as Grafana's data source proxy sends
    queries (Go's HTTP client keeps its connections and asks for gzip): seconds."""
    started = time.perf_counter()
    client.get(path, headers={"Accept-Encoding": "gzip"})
    return time.perf_counter() - started


def in_process(args: argparse.Namespace) -> None:
    """CPU and wall ms per answer of each query, made by `views.respond` in this process."""
    data = dataset(args.gpus, args.hours, args.seed)
    with stack() as st:
        configure_this_process(st)
        from django.conf import settings

        from apps.read.prometheus import api, views

        log(f"ours: written in {load_ours(data, settings.ETCD_PREFIX):.1f} s")
        print("| query | CPU ms | wall ms |\n|---|---:|---:|")
        for label, query, params in queries(data, args.hours):
            given = {"query": [query], **{k: [str(v)] for k, v in params.items()}}
            asked = lambda name, given=given: given.get(name, [])  # noqa: E731
            endpoint = api.query_range if "step" in params else api.query
            calls = args.reps * 30
            for _ in range(calls // 5):
                views.respond(endpoint, asked)
            cpu, wall = time.process_time(), time.perf_counter()
            for _ in range(calls):
                views.respond(endpoint, asked)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            print(f"| {label} | {cpu / calls * 1000:.3f} | {wall / calls * 1000:.3f} |")


def run(args: argparse.Namespace) -> None:
    data = dataset(args.gpus, args.hours, args.seed)
    samples = sum(len(ts) * len(METRICS) for _, ts, _ in data)
    log(f"{args.gpus} GPUs x {args.hours} h at {STEP_MS // 1000} s: {samples:,} samples")
    with stack() as st:
        configure_this_process(st)
        from django.conf import settings

        loaded = load_ours(data, settings.ETCD_PREFIX)
        log(f"ours: written in {loaded:.1f} s")
        port = st.start_gateway()
        ours = f"http://127.0.0.1:{port}/prometheus/api/v1"
        om = st.tmp / "bench.om"
        prometheus.write_openmetrics(prometheus_series(data), om)
        backfill = prometheus.create_blocks(om, st.tmp / "tsdb")
        log(f"prometheus: backfilled in {backfill:.1f} s")
        extra = ["--web.enable-remote-write-receiver"] if args.ingest else []
        with prometheus.start_prometheus(
            st.tmp / "prom", tsdb_dir=st.tmp / "tsdb", extra_args=extra
        ) as prom:
            theirs = f"{prom.url}/api/v1"
            scrape = Scraper(data, f"{theirs}/write") if args.ingest else None
            plan = queries(data, args.hours)
            table(measure(plan, ours, theirs, args.reps, scrape, args.hours))
            if scrape is not None:
                log(f"ingest: {scrape.count} scrapes of {len(data)} GPUs, one before each pair")


class Scraper:
    """One scrape of the fleet each call (a sample per GPU and metric, stamped one step after
    the last): written into ours through the worker's write path, and remote-written into
    Prometheus (`prom`: its /api/v1/write), so both hold the same samples."""

    def __init__(self, data: list, prom: str) -> None:
        from django.conf import settings

        from store import window_ms
        from store.keys import Keys

        self.keys, self.window, self.prom = Keys(settings.ETCD_PREFIX), window_ms(), prom
        self.facts = [d[0] for d in data]
        self.at = int(data[0][1][-1])
        self.count = 0
        self.rng = np.random.default_rng(0)
        # counters go on from the data set's last values (no reset at every scrape)
        self.counters = {
            name: np.array([d[2][name][-1] for d in data])
            for name in METRICS
            if name.endswith("_TOTAL_ENERGY_CONSUMPTION")
        }

    def __call__(self) -> int:
        """Writes the next scrape; its time (ms)."""
        from store.codec import Samples
        from store.write import GpuBatch, write_chunk

        self.at += STEP_MS
        names = tuple(METRICS)
        values = self.rng.random((len(self.facts), len(names))) * 100
        for name, last in self.counters.items():
            last += self.rng.random(len(last)) * 30_000
            values[:, names.index(name)] = last
        metric = np.arange(len(names), dtype=np.int32)
        ts = np.full(len(names), self.at)
        batches = [
            GpuBatch(f, Samples(ts, metric, values[i], names)) for i, f in enumerate(self.facts)
        ]
        write_chunk(self.keys, "scrape", self.count, batches, self.window)
        series = [
            (
                {"__name__": name, **prometheus_labels(f)},
                [(self.at, float(values[i, j]))],
            )
            for i, f in enumerate(self.facts)
            for j, name in enumerate(names)
        ]
        prometheus.remote_write(self.prom, prometheus.remote_write_body(series))
        self.count += 1
        return self.at

    def compact(self) -> None:
        """What the upkeep does every COMPACTION_INTERVAL (rollups of closed windows too;
        no retention: the data set is dated 2025)."""
        from store.compaction import compact
        from store.tiers import tiers

        compact(self.keys, tiers(), retention=False)


def at_scrape(params: dict, at_ms: int, hours: float) -> dict:
    """`params` moved to a scrape at `at_ms`, as a dashboard at "now" asks: an instant at
    it; a range ending at it (aligned to the step, as Grafana aligns) over the same span."""
    if "time" in params:
        return {**params, "time": at_ms / 1000}
    step = params["step"]
    end = at_ms / 1000 // step * step
    return {**params, "start": end - min(hours, 24) * 3600, "end": end}


def measure(
    plan: list, ours: str, theirs: str, reps: int, scrape: Scraper | None = None, hours: float = 24
) -> list[tuple]:
    """Per query: the medians on kept-alive connections (ours, Prometheus) and on a new
    connection per request, each side in turn. With `scrape`, a scrape is written (untimed)
    before each pair of requests, and the query moves to its time."""
    rows = []
    clients = (Client(ours), Client(theirs))
    prefixes = tuple(urllib.parse.urlsplit(base).path for base in (ours, theirs))
    for label, query, params in plan:
        path = "query_range" if "step" in params else "query"

        # (full URLs for new connections, paths for the kept-alive clients) of both sides
        def urls(params: dict, query: str = query, path: str = path) -> tuple[tuple, tuple]:
            qs = urllib.parse.urlencode({"query": query, **params})
            full = (f"{ours}/{path}?{qs}", f"{theirs}/{path}?{qs}")
            return full, (f"{prefixes[0]}/{path}?{qs}", f"{prefixes[1]}/{path}?{qs}")

        full, paths = urls(params)
        if scrape is not None:
            # every query starts from a compacted store, then meets 0 to 2 x reps small
            # blocks per GPU: the first part of a compaction interval (half an hour at the
            # defaults), whatever its place in the list
            scrape.compact()
        for url in full:  # warm both (connections, caches) before timing
            timed(url)
        kept: tuple[list[float], list[float]] = ([], [])
        fresh: tuple[list[float], list[float]] = ([], [])
        for _ in range(reps):
            if scrape is not None:
                full, paths = urls(at_scrape(params, scrape(), hours))
            for side in (0, 1):
                kept[side].append(timed_on(clients[side], paths[side]))
            if scrape is not None:
                full, paths = urls(at_scrape(params, scrape(), hours))
            for side in (0, 1):
                fresh[side].append(timed(full[side])[0])
        a, b = statistics.median(kept[0]), statistics.median(kept[1])
        c, d = statistics.median(fresh[0]), statistics.median(fresh[1])
        rows.append((label, a * 1000, b * 1000, a / b, c * 1000, d * 1000, c / d))
    return rows


def table(rows: list[tuple]) -> None:
    log("")
    log(
        "| query | ours (ms) | Prometheus (ms) | ratio "
        "| new connection each: ours / Prometheus (ms) | ratio |"
    )
    log("|---|---:|---:|---:|---:|---:|")
    for label, a, b, ratio, c, d, fresh_ratio in rows:
        log(
            f"| {label} | {a:.1f} | {b:.1f} | {ratio:.2f} | {c:.1f} / {d:.1f} | {fresh_ratio:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 GPUs x 6 h, 5 reps")
    parser.add_argument(
        "--ingest", action="store_true", help="a scrape of the fleet written before each query"
    )
    parser.add_argument(
        "--in-process", action="store_true", help="our answers' CPU alone (no HTTP, no Prometheus)"
    )
    args = parser.parse_args()
    if args.quick:
        args.gpus, args.hours, args.reps = 8, 6.0, 5
    if args.gpus < 1 or args.hours <= 0 or args.reps < 1:
        parser.error("--gpus, --hours and --reps must be positive")
    if args.in_process:
        in_process(args)
        return
    prometheus.ensure_binaries()
    run(args)


if __name__ == "__main__":
    main()
