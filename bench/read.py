"""The HTTP read path against Prometheus, on the same samples, in the same run.

    .venv/bin/python -m bench.read [--gpus 64] [--hours 24] [--reps 30] [--profile]
    .venv/bin/python -m bench.read --quick        # 8 GPUs x 6 h, 10 runs: a smoke run

1. Data: --gpus GPUs x 10 DCGM metrics at 10 s for --hours, ending 2025-07-19T00:00Z
   (bench/storage.py's data set and value model).
2. Ours: etcd and Redis (bench.harness.stack); the samples go through the ingest
   chunker and payload codec into store.write.write_chunk (as a worker writes them),
   then one compaction run (raw 1 h blocks, 1m and 5m rollups); then three uvicorn
   gateways over that etcd: one as shipped (decoded-block cache on; an answer asked
   again is given from memory while the store's watched view says nothing it read
   changed, apps/read/answers.py), one with READ_VIEW_LAG=0 (nothing kept: every query
   asks etcd, the block cache on), one with READ_CACHE_BYTES=0 and READ_VIEW_LAG=0
   (every query asks etcd and decodes its blocks again).
3. Prometheus: the same samples as OpenMetrics text (labels as dcgm-exporter's),
   backfilled with `promtool tsdb create-blocks-from openmetrics` (24 h blocks), then
   a real `prometheus` over those blocks (tools/prometheus.py).
4. Each query of the table: one warm-up per side, then --reps rounds (each side in turn
   within a round, so load from elsewhere hits all alike), each a full HTTP request
   on a kept-alive connection, the whole body read and decoded (orjson for JSON,
   lines for CSV), same client on both sides; sample counts checked equal where
   both sides answer the same samples. Prints p50/p99 (p99 of 30 runs = the slowest)
   and ours / Prometheus ratios.

--before TREE also runs a gateway from an earlier version's source tree over the same
etcd (`git archive COMMIT | tar -x -C TREE`, with a `.venv` link): "before" columns
for the queries its API knows (JSON rows then at most 10,000 per page).

--profile adds the top functions (cProfile, tottime) of the 24 h JSON rows query,
served through Django's test client in a child process (warm cache), for this
version and, with --before, the earlier one.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.harness import REPO, Stack, configure_this_process, stack
from bench.storage import (
    BENCH_TIERS,
    END_MS,
    OURS_ROOT,
    STEP_MS,
    Series,
    load_ours,
    log,
    make_dataset,
)
from tools import generate_sample as gs
from tools import prometheus

UTIL = "DCGM_FI_DEV_GPU_UTIL"


@dataclass
class Timing:
    ms: list[float]
    samples: int

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


class Client:
    """One kept-alive HTTP connection; `get` returns (status, headers, body)."""

    def __init__(self, base_url: str) -> None:
        parts = urllib.parse.urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)

    def get(self, path: str, params: dict | None = None, headers: dict | None = None):
        url = path + ("?" + urllib.parse.urlencode(params, doseq=True) if params else "")
        try:
            self.conn.request("GET", url, headers=headers or {})
            resp = self.conn.getresponse()
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
            # the server closed an idle kept-alive connection (uvicorn after 5 s): reconnect
            self.conn.close()
            self.conn.request("GET", url, headers=headers or {})
            resp = self.conn.getresponse()
        body = resp.read()
        if resp.status not in (200, 304):
            raise AssertionError(f"GET {url}: {resp.status} {body[:300]!r}")
        return resp.status, resp.headers, body


def timed(runs: dict[str, Callable[[], int]], reps: int, desc: str) -> dict[str, Timing]:
    """One warm-up of each, then `reps` rounds running each once (so that a burst of load
    elsewhere on the machine hits every side alike), the first one rotating; each must
    count the same samples every time."""
    expected = {name: run() for name, run in runs.items()}
    ms: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for i in range(reps):
        # each side goes first in turn: a side never always follows the same other one
        # (Prometheus frees a large answer's memory in the background, after answering)
        for name in order[i % len(order) :] + order[: i % len(order)]:
            run = runs[name]
            t0 = time.perf_counter()
            got = run()
            ms[name].append((time.perf_counter() - t0) * 1000)
            if got != expected[name]:
                raise AssertionError(f"{name} {desc}: {got} samples, {expected[name]} first")
    for name in runs:
        log(f"{name}: {desc}: p50 {statistics.median(ms[name]):.1f} ms ({expected[name]})")
    return {name: Timing(ms[name], expected[name]) for name in runs}


# --- loading --------------------------------------------------------------------------


def openmetrics_series(data: list[Series]) -> Iterator[tuple[str, dict, list]]:
    """Each metric family once, its series (one per GPU) contiguous, in time order."""
    from bench.storage import labels_of

    for m, name in enumerate(gs.METRICS):
        for s in data:
            secs = (s.ts / 1000).tolist()
            yield name, labels_of(s.gpu), list(zip(secs, s.values[:, m].tolist(), strict=True))


def load_prometheus(data: list[Series], tmp: Path) -> tuple[object, float]:
    started = time.perf_counter()
    om = tmp / "samples.om"
    count = prometheus.write_openmetrics(openmetrics_series(data), om)
    log(f"prometheus: {count} samples written as OpenMetrics; promtool backfill")
    prometheus.create_blocks(om, tmp / "tsdb")
    om.unlink()
    service = prometheus.start_prometheus(tmp / "prom", tmp / "tsdb")
    return service, time.perf_counter() - started


def load_stack(st: Stack, data: list[Series]) -> float:
    from django.conf import settings

    from store import client
    from store.compaction import compact
    from store.keys import Keys
    from store.tiers import tiers

    configure_this_process(st)
    settings.ETCD_ENDPOINTS = [st.etcd.url]
    client.reset()
    started = time.perf_counter()
    load_ours(data)
    report = compact(Keys(OURS_ROOT), tiers())
    if report.conflicts or report.skipped:
        raise AssertionError(f"unexpected compaction report: {report}")
    return time.perf_counter() - started


# --- the queries ---------------------------------------------------------------------


def iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + "Z"


def prom_count(body: bytes) -> int:
    answer = orjson.loads(body)
    assert answer["status"] == "success", answer
    result = answer["data"]["result"]
    if answer["data"]["resultType"] == "vector":
        return len(result)
    return sum(len(r["values"]) for r in result)


def ours_rows(body: bytes) -> int:
    answer = orjson.loads(body)
    assert answer["next"] is None, "one page expected"
    return len(answer["results"])


def ours_columns(body: bytes) -> int:
    answer = orjson.loads(body)
    return sum(sum(v is not None for v in col) for col in answer["series"].values())


def ours_fleet(body: bytes) -> int:
    return sum(UTIL in g["latest"] for g in orjson.loads(body)["results"])


def csv_rows(body: bytes) -> int:
    return body.count(b"\n") - 1


@dataclass
class Query:
    name: str
    ours: Callable[[Client], int]
    prom: Callable[[Client], int] | None  # None: compared with the Prometheus run of `key`
    key: str = ""
    same_samples: bool = True
    before: Callable[[Client], int] | None = None  # the same samples through the old API


def raw_window(hours: float) -> tuple[int, int]:
    span = int(hours * 3_600_000)
    return END_MS - span, END_MS - STEP_MS


def queries(uuid: str, uuids: int, hours: float) -> list[Query]:
    day_start, day_end = raw_window(min(24.0, hours))
    hour_start, hour_end = raw_window(1.0)
    tele = f"/api/v1/gpus/{uuid}/telemetry"
    select = f'{{UUID="{uuid}"}}'

    def ours(params: dict, count: Callable[[bytes], int], headers: dict | None = None):
        return lambda c: count(c.get(tele, params, headers)[2])

    def prom_range(query: str, start: int, end: int, step: str) -> Callable[[Client], int]:
        params = {"query": query, "start": start / 1000, "end": end / 1000, "step": step}
        return lambda c: prom_count(c.get("/api/v1/query_range", params)[2])

    day = {"start_time": iso(day_start), "end_time": iso(day_end)}
    hour = {"start_time": iso(hour_start), "end_time": iso(hour_end)}
    etag: dict[str, str] = {}

    def fleet_304(c: Client) -> int:
        if "tag" not in etag:
            etag["tag"] = c.get("/api/v1/gpus", {"limit": 1000})[1]["ETag"]
        status, _, _ = c.get("/api/v1/gpus", {"limit": 1000}, {"If-None-Match": etag["tag"]})
        assert status == 304
        return uuids

    bucket_q = f'avg_over_time({UTIL}{{UUID="{uuid}"}}[5m])'
    return [
        Query(
            "1 GPU, 10 metrics, 24 h raw, JSON rows (`limit=all`, one page)",
            ours({**day, "limit": "all"}, ours_rows),
            prom_range(select, day_start, day_end, "10s"),
            key="day",
            before=lambda c: _walk(c, tele, {**day, "limit": 10_000}),
        ),
        Query(
            "same, JSON rows in pages of 10,000 (`limit=10000`, 9 requests)",
            lambda c: _walk(c, tele, {**day, "limit": 10_000}),
            None,
            key="day",
            before=lambda c: _walk(c, tele, {**day, "limit": 10_000}),
        ),
        Query(
            "same, `format=columns`",
            ours({**day, "format": "columns"}, ours_columns),
            None,
            key="day",
        ),
        Query(
            "same, `format=csv`",
            ours({**day, "format": "csv"}, csv_rows),
            None,
            key="day",
            before=ours({**day, "format": "csv"}, csv_rows),
        ),
        Query(
            "same, JSON rows, zstd-compressed (`Accept-Encoding: zstd`)",
            lambda c: _zstd_rows(c, tele, {**day, "limit": "all"}),
            None,
            key="day",
        ),
        Query(
            "1 GPU, 10 metrics, 1 h raw, JSON rows",
            ours({**hour, "limit": "all"}, ours_rows),
            prom_range(select, hour_start, hour_end, "10s"),
            before=ours({**hour, "limit": 10_000}, ours_rows),
        ),
        Query(
            "1 GPU, 1 metric, 24 h as 5-minute averages",
            ours({**day, "metric": UTIL, "step": "5m", "agg": "avg"}, _results),
            prom_range(bucket_q, day_start + 300_000, day_end + STEP_MS, "5m"),
            same_samples=False,
            before=ours({**day, "metric": UTIL, "step": "5m", "agg": "avg"}, _results),
        ),
        Query(
            f"latest GPU_UTIL of {uuids} GPUs (`/api/v1/gpus`, 200)",
            lambda c: ours_fleet(c.get("/api/v1/gpus", {"limit": 1000})[2]),
            lambda c: prom_count(
                c.get("/api/v1/query", {"query": UTIL, "time": (END_MS - STEP_MS) / 1000})[2]
            ),
            key="fleet",
            before=lambda c: ours_fleet(c.get("/api/v1/gpus", {"limit": 1000})[2]),
        ),
        Query("same, polling with `If-None-Match` (304)", fleet_304, None, key="fleet"),
        Query(
            "floor: `GET /health` vs `/-/healthy` (no store read)",
            lambda c: int(c.get("/health")[0] == 200),
            lambda c: int(c.get("/-/healthy")[0] == 200),
            key="floor",
            before=lambda c: int(c.get("/health")[0] == 200),
        ),
    ]


def _results(body: bytes) -> int:
    return len(orjson.loads(body)["results"])


def _walk(c: Client, path: str, params: dict) -> int:
    total, url = 0, path + "?" + urllib.parse.urlencode(params)
    while url:
        answer = orjson.loads(c.get(url)[2])
        total += len(answer["results"])
        nxt = answer["next"]
        url = urllib.parse.urlsplit(nxt)._replace(scheme="", netloc="").geturl() if nxt else ""
    return total


def _zstd_rows(c: Client, path: str, params: dict) -> int:
    import zstandard

    _, headers, body = c.get(path, params, {"Accept-Encoding": "zstd"})
    assert headers["Content-Encoding"] == "zstd"
    return ours_rows(zstandard.ZstdDecompressor().decompressobj().decompress(body))


# --- profile --------------------------------------------------------------------------


# Run in a child process whose working folder and PYTHONPATH are the tree to profile, so
# the same code profiles this version and an earlier one (--before).
_PROFILE_CHILD = """
import cProfile, io, json, pstats, sys
import django
import orjson
django.setup()
from django.test import Client
url, params, top = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
client = Client()
def day():
    body = orjson.loads(client.get(url, params).content)
    while body["next"]:
        body = orjson.loads(client.get(body["next"]).content)
day()  # warm-up
prof = cProfile.Profile()
prof.enable()
for _ in range(5):
    day()
prof.disable()
out = io.StringIO()
pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
print(out.getvalue())
"""


def profile_day(st: Stack, tree: Path, uuid: str, hours: float, limit: str, top: int = 14) -> str:
    """Top functions by own time of the 24 h JSON rows query (all pages, 5 runs) served
    by the code of `tree` in a child process, through Django's test client."""
    start, end = raw_window(min(24.0, hours))
    params = {"start_time": iso(start), "end_time": iso(end), "limit": limit}
    env = {**st.env, "PYTHONPATH": str(tree)}
    argv = [sys.executable, "-c", _PROFILE_CHILD, f"/api/v1/gpus/{uuid}/telemetry"]
    done = subprocess.run(
        [*argv, json.dumps(params), str(top)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return done.stdout.strip()


# --- main -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    data = make_dataset(args.gpus, args.hours, args.hours / 24, args.seed)
    samples = sum(s.samples for s in data)
    uuid = data[0].gpu.uuid
    env = {"STORAGE_TIERS": BENCH_TIERS, "ETCD_TIMEOUT": "600", "ETCD_PREFIX": OURS_ROOT}
    with stack(**env) as st, tempfile.TemporaryDirectory(prefix="bench-prom-") as tmp_name:
        load_s = load_stack(st, data)
        log(f"ours: {samples} samples stored and compacted in {load_s:.1f} s")
        prom, prom_s = load_prometheus(data, Path(tmp_name))
        log(f"prometheus: loaded and started in {prom_s:.1f} s")
        try:
            cached = Client(f"http://127.0.0.1:{st.start_gateway('gateway')}")
            # as shipped, but no answer kept: every read asks etcd (the block cache is on)
            st.env["READ_VIEW_LAG"] = "0"
            strict = Client(f"http://127.0.0.1:{st.start_gateway('gateway-strict')}")
            # no cache at all: blocks decoded again, no answer kept (etcd asked every time)
            st.env.update(READ_CACHE_BYTES="0", READ_VIEW_LAG="0")
            cold = Client(f"http://127.0.0.1:{st.start_gateway('gateway-nocache')}")
            for name in ("READ_CACHE_BYTES", "READ_VIEW_LAG"):
                del st.env[name]  # the profile and --before run as shipped
            old = (
                Client(f"http://127.0.0.1:{before_gateway(st, args.before)}")
                if args.before
                else None
            )
            theirs = Client(prom.url)
            qs = queries(uuid, len(data), args.hours)
            rows = measure(qs, cached, strict, cold, old, theirs, args.reps)
        finally:
            prom.stop()
        print(report(args, samples, load_s, prom_s, rows))
        if args.profile:
            print("\nProfile of the 24 h JSON rows query, `limit=all` (5 runs, warm cache):\n")
            print("```\n" + profile_day(st, REPO, uuid, args.hours, "all") + "\n```")
            if args.before:
                print("\nSame query before, pages of 10,000 (5 runs):\n")
                print("```\n" + profile_day(st, args.before, uuid, args.hours, "10000") + "\n```")


def before_gateway(st: Stack, tree: Path) -> int:
    """A gateway running the source tree `tree` (an earlier version) over the same etcd."""
    here = Path.cwd()
    env = dict(st.env)
    st.env.update(PYTHONPATH=str(tree))
    os.chdir(tree)  # `python -m uvicorn` imports from its working folder first
    try:
        return st.start_gateway("gateway-before")
    finally:
        os.chdir(here)
        st.env.clear()
        st.env.update(env)


def measure(
    qs: list[Query],
    cached: Client,
    strict: Client,
    cold: Client,
    old: Client | None,
    theirs: Client,
    reps: int,
) -> list:
    rows, shared = [], {}
    for q in qs:
        runs = {
            "ours": lambda q=q: q.ours(cached),
            "nothing kept": lambda q=q: q.ours(strict),
            "no cache": lambda q=q: q.ours(cold),
        }
        if old is not None and q.before is not None:
            runs["before"] = lambda q=q: q.before(old)
        if q.prom is not None:
            runs["prometheus"] = lambda q=q: q.prom(theirs)
        got = timed(runs, reps, q.name)
        if q.prom is not None:
            shared[q.key] = got["prometheus"]
            if q.same_samples and got["prometheus"].samples != got["ours"].samples:
                raise AssertionError(
                    f"{q.name}: ours {got['ours'].samples}, prometheus {got['prometheus'].samples}"
                )
        prom = shared[q.key]
        rows.append((q, got["ours"], got["nothing kept"], got["no cache"], got.get("before"), prom))
    return rows


def report(args, samples: int, load_s: float, prom_s: float, rows: list) -> str:
    lines = [
        f"Data: {args.gpus} GPUs x 10 metrics x {args.hours:g} h at 10 s = {samples:,} samples;"
        f" ours stored + compacted in {load_s:.0f} s, Prometheus backfilled + started in"
        f" {prom_s:.0f} s. {args.reps} runs after one warm-up, ms.",
        "",
        "| query | ours p50 / p99 | ours, nothing kept p50 | ours, cache off p50 "
        "| before p50 / p99 | before / ours | Prometheus p50 / p99 | ours / Prometheus "
        "| nothing kept / Prometheus |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for q, ours, strict, nocache, before, prom in rows:
        old = f"{before.p50:,.1f} / {before.p99:,.1f}" if before else "n/a"
        gain = f"{before.p50 / ours.p50:.1f}x" if before else ""
        lines.append(
            f"| {q.name} | {ours.p50:,.1f} / {ours.p99:,.1f} | {strict.p50:,.1f} | "
            f"{nocache.p50:,.1f} | {old} | {gain} | {prom.p50:,.1f} / {prom.p99:,.1f} | "
            f"{ours.p50 / prom.p50:.2f} | {strict.p50 / prom.p50:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument(
        "--before",
        type=Path,
        help="a source tree of an earlier version (e.g. `git archive` of a commit): its "
        "gateway runs over the same etcd and answers the queries its API knows",
    )
    parser.add_argument("--quick", action="store_true", help="8 GPUs x 6 h, 10 runs")
    args = parser.parse_args()
    if args.quick:
        args.gpus, args.hours, args.reps = 8, 6.0, 10
    if args.gpus < 1 or args.hours < 1 or args.reps < 1:
        parser.error("--gpus, --reps must be positive and --hours at least 1")
    prometheus.ensure_binaries()
    started = time.perf_counter()
    run(args)
    log(f"total {time.perf_counter() - started:.0f} s")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
