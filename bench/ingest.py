"""Ingest throughput end to end: upload bytes in, every row persisted in etcd and queryable.

    .venv/bin/python -m bench.ingest [--rows 1000000] [--workers 2] [--baseline-rows 50000]

Generates a DCGM long-format file (512 GPUs x 10 metrics x rows/5120 timestamps), starts
etcd, Redis, a worker with --workers processes and a gateway, uploads the file over HTTP and
waits for the job to be done. Prints rows/s end to end, rows/s of the parse alone (same
code, in this process, no queue), the share of the wall time spent parsing, waiting in the
queue, in workers and in etcd (from /metrics), and the peak memory of the upload process
and of a worker. In the same run it measures the naive baseline (bench/naive.py: one task
per 100 JSON rows, one etcd key per sample) on --baseline-rows rows, and prints the ratio.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import Stack, stack
from tools import services
from tools.generate_sample import write as write_csv

GPUS_PER_HOST, HOSTS, METRICS = 8, 64, 10


def generate(path: Path, rows: int) -> int:
    samples = max(1, rows // (HOSTS * GPUS_PER_HOST * METRICS))
    return write_csv(path, hosts=HOSTS, gpus_per_host=GPUS_PER_HOST, samples=samples, seed=7)


def parse_alone(path: Path) -> float:
    """rows/s of parse + group + chunk + payload encoding, nothing sent."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    import django

    django.setup()
    from apps.ingest.chunking import Chunker
    from apps.ingest.parsing import Parser, open_text
    from workers import payload

    started = time.perf_counter()
    with open(path, "rb") as fh:
        parser = Parser(open_text(fh))
        chunker = Chunker(
            emit=lambda c: payload.encode(c, "/bench", "job"),
            facts=lambda row: parser.facts(row, "bench"),
            chunk_rows=5000,
            buffer_rows=100_000,
        )
        for row in parser:
            chunker.add(row)
        chunker.finish()
    return parser.rows_read / (time.perf_counter() - started)


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


def ours(st: Stack, path: Path, rows: int, workers: int) -> dict[str, float]:
    worker = st.start_worker(workers)
    port = st.start_gateway()
    gateway = st.started[-1]
    base = f"http://127.0.0.1:{port}"
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        path = Path(tmp) / "bench.csv"
        rows = generate(path, args.rows)
        size_mb = path.stat().st_size / 1e6
        print(
            f"file: {rows:,} rows, {size_mb:,.0f} MB; "
            f"{args.workers} worker processes; {os.cpu_count()} cores"
        )
        with stack() as st:
            metrics_dir = st.tmp / "metrics"
            metrics_dir.mkdir()
            st.env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            st.env["ENABLE_WEBSOCKET"] = "false"  # measured in bench/live.py
            ours_r = ours(st, path, rows, args.workers)
        parse_rate = parse_alone(path)
        with stack() as st:
            naive_r = naive(st, path, min(args.baseline_rows, rows), args.workers)
    print(f"{'':34}{'ours':>14}{'naive':>14}")
    print(f"{'rows':34}{ours_r['rows']:>14,}{naive_r['rows']:>14,}")
    print(f"{'wall time, s':34}{ours_r['wall_s']:>14.2f}{naive_r['wall_s']:>14.2f}")
    print(f"{'rows/s end to end':34}{ours_r['rows_per_s']:>14,.0f}{naive_r['rows_per_s']:>14,.0f}")
    print(f"{'ratio ours / naive':34}{ours_r['rows_per_s'] / naive_r['rows_per_s']:>14.1f}x")
    print(f"{'rows/s parse alone':34}{parse_rate:>14,.0f}")
    print(f"{'upload request (parse+enqueue), s':34}{ours_r['upload_s']:>14.2f}")
    for key in ("parse", "queue", "worker", "etcd"):
        print(f"{'share of wall time: ' + key:34}{ours_r[key + '_share']:>14.0%}")
    print(f"{'peak memory upload process, MB':34}{ours_r['upload_peak_mb']:>14.0f}")
    print(f"{'peak memory worker process, MB':34}{ours_r['worker_peak_mb']:>14.0f}")
    goal = ours_r["rows_per_s"] >= 100_000 and ours_r["rows_per_s"] >= 10 * naive_r["rows_per_s"]
    print(f"goal (>=100,000 rows/s and >=10x naive): {'met' if goal else 'MISSED'}")


if __name__ == "__main__":
    main()
