"""CPU time of each stage of an upload, run one after the other on a fresh stack.

    .venv/bin/python -m bench.ingest_stages [--rows 300000] [--parser columnar|rows] [--runs 2]

On 2 cores end to end is bound by the CPU time of every process (bench/ingest.py prints it
per process for a whole upload); this splits it by stage. Generates the bench.ingest file,
starts etcd and Redis, then, per run: parses the file and enqueues its chunks in this
process (`service.ingest`, no worker running: process CPU time), then starts a worker with
2 processes and waits until every chunk is stored (CPU time of its pool processes, of its
main process, of etcd and of Redis, from /proc; and the store's wall time). The parse's
share and the store's are then plain to see, and comparable between branches (CPU time,
not wall clock, on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.harness import Stack, configure_this_process, stack
from bench.ingest import children, cpu_seconds, generate


def one_run(st: Stack, path: Path) -> dict[str, float]:
    from apps.ingest import service
    from store import default_keys
    from store.jobs import load_job

    etcd, redis = st.etcd.proc.pid, st.redis.proc.pid
    started = time.process_time()
    with open(path, "rb") as fh:
        job = service.ingest(fh, source="bench")
    parse = time.process_time() - started
    worker = st.start_worker(2, name=f"worker-{job['id']}")
    pool = children(worker.proc.pid)
    before = [cpu_seconds(p) for p in (*pool, worker.proc.pid, etcd, redis)]
    started_store = time.monotonic()
    deadline = started_store + 600
    while True:
        state = load_job(default_keys(), job["id"])
        if state["chunks_done"] + state["chunks_failed"] >= state["chunks_expected"]:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"chunks not stored in 10 minutes: {state}")
        time.sleep(0.05)
    store_wall = time.monotonic() - started_store
    after = [cpu_seconds(p) for p in (*pool, worker.proc.pid, etcd, redis)]
    used = [a - b for a, b in zip(after, before, strict=True)]
    worker.stop()
    st.started.remove(worker)
    return {
        "rows": job["rows_accepted"],
        "chunks": job["chunks_expected"],
        "parse + enqueue": parse,
        "store: worker pool": sum(used[: len(pool)]),
        "store: worker main": used[-3],
        "store: etcd": used[-2],
        "store: redis": used[-1],
        "store wall": store_wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=300_000)
    parser.add_argument("--parser", choices=("columnar", "rows"), default="columnar")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--file", type=Path, help=argparse.SUPPRESS)  # one run, in a child
    args = parser.parse_args()
    if args.file is not None:
        single(args.file, args.parser)
        return
    with tempfile.TemporaryDirectory(prefix="bench-stages-") as tmp:
        path = Path(tmp) / "bench.csv"
        rows = generate(path, args.rows)
        print(f"file: {rows:,} rows, {path.stat().st_size / 1e6:,.0f} MB; parser {args.parser}")
        for run in range(args.runs):
            # a fresh process and stack each run: Django's settings point at one stack
            print(f"run {run + 1}:", flush=True)
            argv = [sys.executable, "-m", "bench.ingest_stages", "--file", str(path)]
            subprocess.run([*argv, "--parser", args.parser], check=True)
    print(f"load average at the end: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} cores")


def single(path: Path, parser: str) -> None:
    with stack(INGEST_PARSER=parser, ENABLE_WEBSOCKET="false") as st:
        configure_this_process(st)
        result = one_run(st, path)
    print(f"  {result['chunks']:.0f} chunks")
    for key, seconds in result.items():
        if key == "store wall":
            per_chunk = seconds / result["chunks"] * 1e3
            print(f"  {key:20} {seconds:6.2f} s wall  {per_chunk:6.1f} ms/chunk")
        elif key not in ("rows", "chunks"):
            per_row = seconds / result["rows"] * 1e6
            print(f"  {key:20} {seconds:6.2f} s CPU  {per_row:6.2f} us/row")


if __name__ == "__main__":
    main()
