"""Ingest throughput end to end: upload bytes in, every row persisted in etcd and queryable.

    .venv/bin/python -m bench.ingest [--rows 1000000] [--workers 2] [--baseline-rows 50000]
                                     [--repeat 3]

Generates a DCGM long-format file (512 GPUs x 10 metrics x rows/5120 timestamps), starts
etcd, Redis, a worker with --workers processes and a gateway, uploads the file over HTTP and
waits for the job to be done: once with the columnar parser (INGEST_PARSER=columnar, the
default) and once with the row parser (INGEST_PARSER=rows), each on a fresh stack, --repeat
times alternated (the run with the median rate is shown, every run's rate listed). Prints,
for both, rows/s end to end and rows/s of the parse alone (parse + group + chunk + payload
encoding in this process, no queue), the share of the wall time spent parsing, waiting in
the queue, in workers and in etcd (from /metrics), and the peak memory of the upload
process and of a worker, and the CPU time of every process of the stack during the upload
(gateway, worker processes, etcd, Redis; from /proc): on 2 cores end to end is bound by the
sum, so its split says where a row's cost is. In the same run: the raw read rate of the file
by pyarrow's CSV reader alone (the limit of the parse), the naive baseline (bench/naive.py:
one task per 100 JSON rows, one etcd key per sample) on --baseline-rows rows, and promtool's
backfill (`promtool tsdb create-blocks-from openmetrics`) of the same samples with 2 h and
24 h blocks, and the floor no upload path can go under: the same upload to a bare ASGI app
(bench/sink.py, under uvicorn as the gateway) plus Arrow's raw read, against promtool's time.
The stack runs with its defaults, the live feed on (ENABLE_WEBSOCKET): with no
client listening, a worker builds no live payload (docs/LIVE.md).
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import Stack, stack
from tools import processes, services
from tools.generate_sample import write as write_csv

GPUS_PER_HOST, HOSTS, METRICS = 8, 64, 10


def generate(path: Path, rows: int) -> int:
    samples = max(1, rows // (HOSTS * GPUS_PER_HOST * METRICS))
    return write_csv(path, hosts=HOSTS, gpus_per_host=GPUS_PER_HOST, samples=samples, seed=7)


def parse_alone(path: Path, columnar: bool) -> float:
    """rows/s of parse + group + chunk + payload encoding, nothing sent."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    import django

    django.setup()
    from django.conf import settings

    from apps.ingest.chunking import Chunker
    from apps.ingest.columnar import ColumnarParser
    from apps.ingest.parsing import Parser, open_binary, text_of
    from workers import payload

    started = time.perf_counter()
    with open(path, "rb") as fh:
        binary = open_binary(fh)
        parser = ColumnarParser(binary) if columnar else Parser(text_of(binary))
        chunker = Chunker(
            emit=lambda c: payload.encode(c, "/bench", "job"),
            facts=lambda row: parser.facts(row, "bench"),
            chunk_rows=settings.INGEST_CHUNK_ROWS,
            buffer_rows=settings.INGEST_BUFFER_ROWS,
        )
        for item in parser:
            chunker.add(item)
        chunker.finish()
    return parser.rows_read / (time.perf_counter() - started)


def raw_read(path: Path) -> float:
    """rows/s of pyarrow's streaming CSV reader alone over the file (every column as read)."""
    import pyarrow.csv as pcsv

    started = time.perf_counter()
    rows = sum(batch.num_rows for batch in pcsv.open_csv(path))
    return rows / (time.perf_counter() - started)


def promtool_rates(path: Path, tmp: Path, repeat: int) -> dict[str, float]:
    """samples/s of promtool's backfill of the file's samples, with 2 h and 24 h blocks
    (the median of `repeat` runs, each into a new folder)."""
    from timeparse.timestamps import parse_timestamp
    from tools import prometheus

    series: dict[tuple[str, str, str], list[tuple[float, float]]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (row["metric_name"], row["uuid"], row["Hostname"])
            ts = parse_timestamp(row["timestamp"]) / 1000
            series.setdefault(key, []).append((ts, float(row["value"])))
    ordered = sorted(series.items())
    text = tmp / "samples.om"
    count = prometheus.write_openmetrics(
        ((name, {"UUID": u, "Hostname": host}, points) for (name, u, host), points in ordered),
        text,
    )
    rates = {}
    for blocks in ("2h", "24h"):
        seconds = [
            prometheus.create_blocks(text, tmp / f"tsdb-{blocks}-{n}", max_block_duration=blocks)
            for n in range(max(repeat, 1))
        ]
        rates[blocks] = count / statistics.median(seconds)
    return rates


def upload_floor(path: Path, repeat: int) -> float:
    """Seconds of the fastest of `repeat` uploads of the file, sent as `ours` sends it, to
    bench/sink.py (the body written to a file, nothing else) served by uvicorn as the
    gateway is: the least an upload of this file takes on this machine, before any check."""
    with stack() as st:
        sink = processes.start_gateway(st.tmp / "sink.log", st.env, app="bench.sink:app")
        st.started.append(sink)
        best = float("inf")
        for _ in range(max(repeat, 1)):
            started = time.perf_counter()
            with open(path, "rb") as fh:
                response = requests.post(
                    f"http://127.0.0.1:{sink.port}/",
                    data=fh,
                    headers={"Content-Type": "text/csv"},
                    timeout=3600,
                )
            best = min(best, time.perf_counter() - started)
            if response.text != str(path.stat().st_size):
                raise RuntimeError(f"the sink received {response.text} bytes")
    return best


def metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident memory) of a process, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of its reaped children, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def stack_cpu(st: Stack, gateway: int, worker: int) -> dict[str, float]:
    """CPU seconds so far of each kind of process of the stack (a worker's pool by pid)."""
    return {
        "gateway": cpu_seconds(gateway),
        "worker main": cpu_seconds(worker),
        "worker pool": sum(cpu_seconds(c) for c in children(worker)),
        "etcd": cpu_seconds(st.etcd.proc.pid),
        "redis": cpu_seconds(st.redis.proc.pid),
    }


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def ours(st: Stack, path: Path, rows: int, workers: int, parser: str) -> dict[str, float]:
    st.env["INGEST_PARSER"] = parser
    worker = st.start_worker(workers)
    port = st.start_gateway()
    gateway = st.started[-1]
    base = f"http://127.0.0.1:{port}"
    cpu_before = stack_cpu(st, gateway.proc.pid, worker.proc.pid)
    t0 = time.perf_counter()
    with open(path, "rb") as fh:
        response = requests.post(
            f"{base}/api/v1/csv/upload", data=fh, headers={"Content-Type": "text/csv"}, timeout=3600
        )
    t_upload = time.perf_counter() - t0
    response.raise_for_status()
    job = response.json()
    while job["state"] == "running":
        time.sleep(0.05)
        job = requests.get(f"{base}/api/v1/ingest/jobs/{job['id']}", timeout=60).json()
    wall = time.perf_counter() - t0
    cpu_after = stack_cpu(st, gateway.proc.pid, worker.proc.pid)
    assert job["state"] == "done" and job["rows_accepted"] == rows, job
    text = requests.get(f"{base}/metrics", timeout=60).text
    worker_busy = metric_sum(text, "telemetry_chunk_seconds_sum") / workers
    etcd_busy = (
        sum(
            metric_sum(text, "telemetry_etcd_request_seconds_sum", op=op)
            for op in ("txn", "get_many")
        )
        / workers
    )
    parse = float(job["parse_seconds"])
    return {
        "rows": rows,
        "wall_s": wall,
        "upload_s": t_upload,
        "rows_per_s": rows / wall,
        "parse_share": parse / wall,
        "worker_share": worker_busy / wall,
        "etcd_share": etcd_busy / wall,
        "queue_share": max(0.0, (wall - parse - worker_busy) / wall),
        "upload_peak_mb": peak_rss_mb(gateway.proc.pid),
        "worker_peak_mb": max((peak_rss_mb(c) for c in children(worker.proc.pid)), default=0.0),
        "cpu": {k: cpu_after[k] - cpu_before[k] for k in cpu_after},
    }


def naive(st: Stack, path: Path, rows: int, workers: int) -> dict[str, float]:
    log = st.tmp / "naive.log"
    worker = services.start_command(
        "naive-worker",
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "bench.naive",
            "worker",
            "--loglevel",
            "INFO",
            "--concurrency",
            str(workers),
            "--queues",
            "naive",
            "--without-gossip",
            "--without-mingle",
        ],
        log_path=log,
        env=st.env,
        ready=lambda: services.log_contains(log, 0, b" ready."),
    )
    st.started.append(worker)
    os.environ.update({k: v for k, v in st.env.items() if k != "PYTHONPATH"})
    from django.conf import settings

    from bench import naive as naive_app
    from store import client

    settings.ETCD_ENDPOINTS = [st.etcd.url]  # Django was set up by the parse run, before this stack
    client.reset()

    t0 = time.perf_counter()
    sent = 0
    with open(path, newline="") as fh:
        batch: list[dict] = []
        for row in csv.DictReader(fh):
            batch.append(row)
            sent += 1
            if len(batch) == 100 or sent == rows:
                naive_app.store_rows.apply_async(args=[batch], serializer="json")
                batch = []
            if sent == rows:
                break
    from store import kv

    while kv.count_prefix(naive_app.ROOT + "/") < rows:
        time.sleep(0.1)
    wall = time.perf_counter() - t0
    return {"rows": rows, "wall_s": wall, "rows_per_s": rows / wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-rows", type=int, default=50_000)
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        help="end-to-end runs and parse-alone runs of each parser, alternated; the median "
        "is shown (a single run on 2 shared cores varies by a third)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = Path(tmp) / "bench.csv"
        rows = generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(
            f"file: {rows:,} rows, {size_mb:,.0f} MB; "
            f"{args.workers} worker processes; {os.cpu_count()} cores"
        )
        tries: dict[str, list[dict]] = {"columnar": [], "rows": []}
        speeds: dict[str, list[float]] = {"columnar": [], "rows": []}
        for _ in range(max(args.repeat, 1)):
            for parser in tries:
                with stack() as st:
                    metrics_dir = st.tmp / "metrics"
                    metrics_dir.mkdir()
                    st.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
                    tries[parser].append(ours(st, path, rows, args.workers, parser))
                speeds[parser].append(parse_alone(path, parser == "columnar"))
        runs = {parser: median_run(done) for parser, done in tries.items()}
        alone = {parser: statistics.median(done) for parser, done in speeds.items()}
        raws = [raw_read(path) for _ in range(max(args.repeat, 1))]
        raw = statistics.median(raws)
        floor = (upload_floor(path, args.repeat), rows / max(raws))
        for parser, done in tries.items():
            every = ", ".join(f"{r['rows_per_s']:,.0f}" for r in done)
            print(f"{parser}: rows/s end to end of each run: {every}")
        with stack() as st:
            naive_r = naive(st, path, min(args.baseline_rows, rows), args.workers)
        promtool = promtool_rates(path, Path(tmp), args.repeat) if prometheus_available() else {}
    new, old = runs["columnar"], runs["rows"]
    line("", "columnar", "row parser", "naive", fmt="")
    line("rows", new["rows"], old["rows"], naive_r["rows"], fmt=",")
    line("wall time, s", new["wall_s"], old["wall_s"], naive_r["wall_s"], fmt=".2f")
    line("rows/s end to end", new["rows_per_s"], old["rows_per_s"], naive_r["rows_per_s"])
    line("rows/s parse alone", alone["columnar"], alone["rows"])
    line("upload request (parse+enqueue), s", new["upload_s"], old["upload_s"], fmt=".2f")
    for key in ("parse", "queue", "worker", "etcd"):
        line("share of wall time: " + key, new[key + "_share"], old[key + "_share"], fmt=".0%")
    line("peak memory upload process, MB", new["upload_peak_mb"], old["upload_peak_mb"])
    line("peak memory worker process, MB", new["worker_peak_mb"], old["worker_peak_mb"])
    for kind in new["cpu"]:
        line(f"CPU s: {kind}", new["cpu"][kind], old["cpu"][kind], fmt=".2f")
    new_cpu, old_cpu = sum(new["cpu"].values()), sum(old["cpu"].values())
    line("CPU s: all processes", new_cpu, old_cpu, fmt=".2f")
    line("CPU us per row, all processes", new_cpu / rows * 1e6, old_cpu / rows * 1e6, fmt=".1f")
    line("pyarrow raw read, rows/s", raw)
    for blocks, rate in promtool.items():
        line(f"promtool backfill {blocks} blocks, samples/s", rate)
    if not promtool:
        print("promtool: not installed (make prometheus), not measured")
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")
    ratio = new["rows_per_s"] / old["rows_per_s"]
    print(f"end to end, columnar / row parser: {ratio:.1f}x (goal >= 3x)")
    print(f"end to end, columnar / naive: {new['rows_per_s'] / naive_r['rows_per_s']:.1f}x")
    print(f"parse alone, pyarrow raw read / columnar: {raw / alone['columnar']:.1f}x (goal <= 3x)")
    if promtool:
        ratio = new["rows_per_s"] / promtool["24h"]
        print(f"end to end, columnar / promtool 24h blocks: {ratio:.2f}x (goal > 1)")
        print_floor(rows, floor, rows / promtool["24h"], new)


def print_floor(rows: int, floor: tuple[float, float], promtool_s: float, new: dict) -> None:
    """What promtool's time leaves once the two steps no upload path can skip are done:
    receiving the body (a large upload is parsed once received) and Arrow reading it."""
    upload_s, read_s = floor
    floor_s = upload_s + read_s
    left = promtool_s - floor_s
    etcd_s = new["cpu"]["etcd"]
    print(f"floor: upload to a bare ASGI app (bench/sink.py, best run), s: {upload_s:.2f}")
    print(f"floor: pyarrow raw read (best run), s: {read_s:.2f}")
    print(
        f"floor: the two in a row, s: {floor_s:.2f} = {floor_s / promtool_s:.0%} of promtool's "
        f"24h backfill ({promtool_s:.2f} s)"
    )
    print(
        f"left for checks, grouping, encoding and storing: {left:.2f} s = "
        f"{left / rows * 1e6:.2f} us a row (etcd's own CPU in the columnar run: "
        f"{etcd_s / rows * 1e6:.2f} us a row; all processes: "
        f"{sum(new['cpu'].values()) / rows * 1e6:.1f})"
    )


def median_run(runs: list[dict]) -> dict:
    """The run with the median end-to-end rate (its figures stay those of one run)."""
    ordered = sorted(runs, key=lambda r: r["rows_per_s"])
    return ordered[(len(ordered) - 1) // 2]


def line(label: str, *values: object, fmt: str = ",.0f") -> None:
    print(f"{label:34}" + "".join(f"{v:>14{fmt}}" for v in values))


def prometheus_available() -> bool:
    from tools import prometheus

    return prometheus.available()


if __name__ == "__main__":
    main()
