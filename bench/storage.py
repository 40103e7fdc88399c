"""Storage size and query latency: our block store against one JSON key per sample.

    .venv/bin/python -m bench.storage [--gpus 64] [--hours 24] [--query-days 8] [--reps 30]
    .venv/bin/python -m bench.storage --quick          # 8 GPUs x 6 h, a smoke run

One run, two fresh etcd servers one after the other (bench.harness.stack), so
each side is measured alone, with no history or free pages of the other:

1. A synthetic DCGM-like data set (tools/generate_sample.py's value model):
   --gpus GPUs x 10 metrics at 10 s for --hours, ending 2025-07-19T00:00Z; the
   first GPU (the *query GPU*) has --query-days of history instead, so that
   7-day windows can be queried at random starts.
2. Ours: the rows go through the ingest chunker (apps/ingest/chunking.py, the
   INGEST_CHUNK_ROWS / INGEST_BUFFER_ROWS settings) and the Celery payload
   round trip, then store.write.write_chunk, as a worker does; then one
   store.compaction.compact run with the default tiers (raw 1 h blocks, 1m and
   5m rollups) and retentions long enough to delete nothing.
3. Naive: the original Go pipeline's layout, one JSON document per sample at
   `/bench/naive/{uuid}/{ts:013d}/{metric}`, written 120 puts per transaction.
4. Size of each side: bytes of keys + values under its prefix (range reads),
   and the etcd db file after history compaction + defragmentation, minus the
   empty db; per sample. Rollup bytes per bucket, keys before/after compaction,
   etcd's anonymous RSS (its in-memory key index) per million keys.
5. Queries on the query GPU at random window starts (same starts on both
   sides): raw 1 h, 24 h and 7 d (ours: store.read.iter_raw into a list of
   rows; naive: range read + json.loads of each value), and a 24 h query at
   5-minute steps from the 5m rollups vs computed from raw blocks.

Prints one table (Markdown) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import random
import statistics
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
from tqdm import tqdm

from bench.harness import Stack, configure_this_process, stack
from tools import generate_sample as gs
from tools import services

STEP_MS = 10_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
END_MS = int(datetime(2025, 7, 19, tzinfo=UTC).timestamp() * 1000)
OURS_ROOT = "/bench/ours"
NAIVE_ROOT = "/bench/naive"
LIVE_ROOT = "/bench/live"
CLUSTER = "bench"
# Retentions far beyond the data, so that compaction deletes nothing; resolutions
# and block windows are the defaults (raw 1 h blocks, 1m and 5m rollups).
BENCH_TIERS = "raw:0:3650d,1m:60s:3650d,5m:5m:3650d"
NAIVE_TXN_OPS = 120
NAIVE_IN_FLIGHT = 3  # transactions in flight, so JSON encoding overlaps etcd's work
QUERY_WINDOWS = (("1 h", HOUR_MS), ("24 h", DAY_MS), ("7 d", 7 * DAY_MS))
DOWNSAMPLE_STEP_MS = 300_000
RESTART_DEADLINE_S = 600.0


def log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def bar(total: int, desc: str, unit: str = "sample") -> tqdm:
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True, file=sys.stderr)


# --- data set ----------------------------------------------------------------------


@dataclass
class Series:
    """One GPU's samples: timestamps (ms) and values (n_ts x 10, METRICS order)."""

    gpu: gs.Gpu
    ts: np.ndarray
    values: np.ndarray
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return int(self.values.size)

    def facts(self) -> dict:
        return {
            "uuid": self.gpu.uuid,
            "cluster": CLUSTER,
            "host": self.gpu.host,
            "gpu_index": self.gpu.index,
            "device": self.gpu.device,
            "model": gs.MODEL_NAME,
            "driver": gs.DRIVER_VERSION,
            "labels": self.labels,
        }


def labels_of(gpu: gs.Gpu) -> dict[str, str]:
    """The Prometheus labels of the export (labels_raw), without __name__."""
    return {
        "DCGM_FI_DRIVER_VERSION": gs.DRIVER_VERSION,
        "Hostname": gpu.host,
        "UUID": gpu.uuid,
        "device": gpu.device,
        "gpu": str(gpu.index),
        "instance": f"{gpu.host}:{gs.EXPORTER_PORT}",
        "job": gs.JOB,
        "modelName": gs.MODEL_NAME,
    }


def make_series(gpu: gs.Gpu, seed: int, first_ms: int, n: int) -> Series:
    """n timestamps from first_ms at 10 s; values from generate_sample's model."""
    rng = random.Random(f"{seed}/{gpu.uuid}")
    state = gs.initial_state(rng)
    text = [gs.step(state, rng).metric_values() for _ in range(n)]
    values = np.array(text, dtype=np.str_).astype(np.float64).reshape(n, len(gs.METRICS))
    ts = first_ms + STEP_MS * np.arange(n, dtype=np.int64)
    return Series(gpu, ts, values, labels_of(gpu))


def make_dataset(n_gpus: int, hours: float, query_days: float, seed: int) -> list[Series]:
    """GPUs of 8 per host, one random stream per GPU, all ending at END_MS."""
    hosts = -(-n_gpus // 8)
    gpus = gs.make_gpus(seed, hosts, 8, "bench-node")[:n_gpus]
    out = []

    def length(i: int) -> int:
        return round((query_days * 24 if i == 0 else hours) * HOUR_MS / STEP_MS)

    total = sum(length(i) for i in range(len(gpus)))
    with bar(total, "generate", "ts") as progress:
        for i, gpu in enumerate(gpus):
            n = length(i)
            out.append(make_series(gpu, seed, END_MS - STEP_MS * n, n))
            progress.update(n)
    return out


def rows_in_time_order(data: list[Series]) -> Iterator[tuple[Series, int]]:
    """(series, index) in the export's order: by timestamp, then GPU."""
    first = min(int(s.ts[0]) for s in data)
    offsets = [(int(s.ts[0]) - first) // STEP_MS for s in data]
    n_ts = max(o + len(s.ts) for o, s in zip(offsets, data, strict=True))
    for t in range(n_ts):
        for s, off in zip(data, offsets, strict=True):
            if 0 <= t - off < len(s.ts):
                yield s, t - off


# --- etcd helpers ------------------------------------------------------------------


def use_stack(st: Stack, first: bool) -> None:
    """Point this process's store at the stack's etcd."""
    from django.conf import settings

    from store import client
    from store.registry import known

    if first:
        configure_this_process(st)
    settings.ETCD_ENDPOINTS = [st.etcd.url]
    client.reset()
    known.clear()


def etcd_rss_anon(st: Stack) -> int:
    """Anonymous resident memory of the etcd process (heap: key index, caches), bytes.

    File-backed RSS (the mmap of the bolt db) is left out: it is page cache.
    """
    with open(f"/proc/{st.etcd.proc.pid}/status") as fh:
        for line in fh:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    return 0


def settle() -> int:
    """Compact etcd's MVCC history to now, defragment, and return the db file size.

    In production etcd's auto-compaction (1 h retention) and the upkeep's
    defragmentation do this; here it is done at once so that deleted and
    overwritten revisions do not count.
    """
    from store import client, kv

    rev = kv.revision()
    try:
        # kv has no wrapper for history compaction (the app leaves it to etcd's
        # --auto-compaction-*), so the client is called directly here.
        client.get().compact(rev, physical=True)
    except Exception as exc:  # a revision already compacted by etcd itself is fine
        if "compacted" not in str(exc).lower():
            raise
    kv.defragment()
    return int(kv.status()["db_size"])


def restart_etcd(st: Stack, extra_args: tuple[str, ...] = ()) -> None:
    """Restart the stack's etcd on the same data dir and ports (its index rebuilt from disk).

    With millions of keys the start (WAL replay, bolt open, index rebuild) takes
    more than the 30 s services.start_etcd allows by default.
    """
    from store import client

    services.ETCD_START_DEADLINE_S = RESTART_DEADLINE_S

    args = {a.split("=", 1)[0]: a.split("=", 1)[1] for a in st.etcd.proc.args if "=" in a}
    peer = int(args["--listen-peer-urls"].rsplit(":", 1)[1])
    st.etcd.stop(timeout=60)
    st.etcd = services.start_etcd(
        st.etcd.data_dir, port=st.etcd.port, peer_port=peer, extra_args=extra_args
    )
    st.started.append(st.etcd)
    client.reset()


def restart_with_snapshot(st: Stack) -> None:
    """Restart etcd so that it holds only its key index, not the raft log of the load.

    etcd keeps the raft entries since its last snapshot in memory (up to
    --snapshot-count, 100,000 in 3.4) and replays them from the WAL at start,
    so after a bulk load its memory is mostly raft log. One restart with
    --snapshot-count=1 and one write makes it snapshot; the next restart then
    replays nothing, and what it holds is the index rebuilt from the db.
    """
    from store import kv

    snap_dir = st.etcd.data_dir / "member" / "snap"
    before = set(snap_dir.glob("*.snap"))
    restart_etcd(st, ("--snapshot-count=1",))
    kv.put("/bench/snapshot-trigger", b"1")
    deadline = time.monotonic() + 120
    while not set(snap_dir.glob("*.snap")) - before:
        if time.monotonic() > deadline:
            raise RuntimeError("etcd did not write a snapshot")
        time.sleep(0.5)
    time.sleep(2)
    restart_etcd(st)


def etcd_heap_inuse(st: Stack) -> int:
    """go_memstats_heap_inuse_bytes from etcd's /metrics."""
    conn = http.client.HTTPConnection(st.etcd.host, st.etcd.port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        body = conn.getresponse().read().decode()
    finally:
        conn.close()
    for line in body.splitlines():
        if line.startswith("go_memstats_heap_inuse_bytes "):
            return int(float(line.split()[1]))
    return 0


@dataclass
class Scan:
    keys: int = 0
    key_bytes: int = 0
    value_bytes: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [keys, bytes]
    raw_samples: int = 0
    buckets: dict[str, int] = field(default_factory=dict)  # rollup tier -> buckets

    @property
    def total(self) -> int:
        return self.key_bytes + self.value_bytes

    def add(self, kind: str, key: str, value: bytes) -> None:
        self.keys += 1
        self.key_bytes += len(key.encode())
        self.value_bytes += len(value)
        entry = self.by_kind.setdefault(kind, [0, 0])
        entry[0] += 1
        entry[1] += len(key.encode()) + len(value)


def scan_ours() -> Scan:
    """Every key under OURS_ROOT with its value; decodes blocks to count samples and buckets."""
    from store import kv
    from store.codec import decode_block
    from store.rollup import decode_rollup

    scan = Scan()
    for item in kv.get_prefix(OURS_ROOT + "/"):
        parts = item.key[len(OURS_ROOT) + 1 :].split("/")
        kind = parts[0] if parts[0] != "rollups" else f"rollups/{parts[1]}"
        scan.add(kind, item.key, item.value)
        if kind == "blocks":
            scan.raw_samples += len(decode_block(item.value))
        elif kind.startswith("rollups/"):
            tier = kind.split("/", 1)[1]
            scan.buckets[tier] = scan.buckets.get(tier, 0) + len(decode_rollup(item.value))
    return scan


def naive_key(uuid: str, ts: int, metric: str = "") -> str:
    return f"{NAIVE_ROOT}/{uuid}/{ts:013d}/{metric}" if metric else f"{NAIVE_ROOT}/{uuid}/{ts:013d}"


def naive_range(uuid: str, start: int, end: int) -> Iterator[list]:
    """The naive keys of `uuid` with start <= ts <= end, one range read per day at most.

    One read of a whole week (~290 MB) would exceed the client's 256 MiB
    receive limit, so longer windows are read a day at a time.
    """
    from store import kv

    lo = start
    while lo <= end:
        hi = min(end, lo + DAY_MS - 1)
        yield kv.get_range(naive_key(uuid, lo), naive_key(uuid, hi + 1))
        lo = hi + 1


def scan_naive(data: list[Series]) -> Scan:
    scan = Scan()
    with bar(sum(s.samples for s in data), "scan naive", "key") as progress:
        for s in data:
            for items in naive_range(s.gpu.uuid, int(s.ts[0]), int(s.ts[-1])):
                for item in items:
                    scan.add("samples", item.key, item.value)
                progress.update(len(items))
    return scan


# --- loading -------------------------------------------------------------------------


def load_ours(data: list[Series]) -> tuple[float, int]:
    """Rows through the ingest chunker and payload codec into write_chunk; (seconds, chunks)."""
    from django.conf import settings

    from apps.ingest.chunking import Chunk, Chunker
    from apps.ingest.parsing import Row
    from store import window_ms
    from store.keys import Keys
    from store.write import write_chunk
    from workers import payload

    keys = Keys(OURS_ROOT)
    facts = {s.gpu.uuid: s.facts() for s in data}
    spent = [0.0]
    progress = bar(sum(s.samples for s in data), "load ours")

    def emit(chunk: Chunk) -> None:
        decoded = payload.decode(payload.encode(chunk, keys.root, "bench"))
        t0 = time.perf_counter()
        write_chunk(Keys(decoded.root), decoded.job, decoded.seq, decoded.batches, window_ms())
        spent[0] += time.perf_counter() - t0
        progress.update(chunk.samples)

    chunker = Chunker(
        emit,
        facts=lambda row: facts[row.uuid],
        chunk_rows=settings.INGEST_CHUNK_ROWS,
        buffer_rows=settings.INGEST_BUFFER_ROWS,
    )
    lists = {s.gpu.uuid: s.values.tolist() for s in data}
    names = gs.METRICS
    for s, i in rows_in_time_order(data):
        values = list(zip(names, lists[s.gpu.uuid][i], strict=True))
        chunker.add(Row(s.gpu.uuid, s.gpu.host, int(s.ts[i]), values, []))
    chunker.finish()
    progress.close()
    return spent[0], chunker.chunks


def naive_documents(data: list[Series]) -> Iterator[tuple[str, bytes]]:
    """One JSON document per sample, in arrival order, as the Go pipeline stored them."""
    stamps: dict[int, str] = {}
    lists = {s.gpu.uuid: s.values.tolist() for s in data}
    labels = {s.gpu.uuid: dict(sorted(s.labels.items())) for s in data}
    for s, i in rows_in_time_order(data):
        ts = int(s.ts[i])
        stamp = stamps.get(ts)
        if stamp is None:
            stamp = stamps[ts] = gs.format_rfc3339(datetime.fromtimestamp(ts / 1000, UTC))
        uuid = s.gpu.uuid
        for metric, value in zip(gs.METRICS, lists[uuid][i], strict=True):
            doc = {
                "timestamp": stamp,
                "gpu_id": s.gpu.index,
                "uuid": uuid,
                "hostname": s.gpu.host,
                "metric_name": metric,
                # Go's encoding/json writes 97, not 97.0
                "value": int(value) if value.is_integer() else value,
                "labels": labels[uuid],
            }
            yield naive_key(uuid, ts, metric), json.dumps(doc, separators=(",", ":")).encode()


def load_naive(data: list[Series]) -> float:
    """Transactions of 120 puts, a few in flight; returns seconds."""
    from store import kv

    t0 = time.perf_counter()
    pending: deque[tuple[Future, int]] = deque()
    with (
        ThreadPoolExecutor(NAIVE_IN_FLIGHT) as pool,
        bar(sum(s.samples for s in data), "load naive") as progress,
    ):
        ops: list = []

        def drain(limit: int) -> None:
            while len(pending) > limit:
                future, n = pending.popleft()
                future.result()
                progress.update(n)

        for key, value in naive_documents(data):
            ops.append(kv.op_put(key, value))
            if len(ops) == NAIVE_TXN_OPS:
                pending.append((pool.submit(kv.txn, [], ops), len(ops)))
                ops = []
                drain(NAIVE_IN_FLIGHT)
        if ops:
            pending.append((pool.submit(kv.txn, [], ops), len(ops)))
        drain(0)
    return time.perf_counter() - t0


# --- queries -------------------------------------------------------------------------


@dataclass
class Timing:
    ms: list[float]
    rows: int

    @property
    def p50(self) -> float:
        return statistics.median(self.ms)

    @property
    def p99(self) -> float:
        ordered = sorted(self.ms)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def time_query(fn: Callable[[int, int], int], starts: list[int], span: int, desc: str) -> Timing:
    """Run fn(start, end) once untimed (warm-up), then once per start; rows must not vary."""
    rows = fn(starts[0], starts[0] + span - 1)
    ms = []
    for start in tqdm(starts, desc=desc, unit="query", file=sys.stderr, leave=False):
        t0 = time.perf_counter()
        got = fn(start, start + span - 1)
        ms.append((time.perf_counter() - t0) * 1000)
        if got != rows:
            raise AssertionError(f"{desc}: {got} rows at start {start}, {rows} at the first")
    return Timing(ms, rows)


def window_starts(series: Series, span: int, reps: int, seed: int) -> tuple[list[int], int]:
    """Random starts on the sample grid with the window inside the data; (starts, span).

    When the data is shorter than the window, the window is the whole data.
    """
    first, last = int(series.ts[0]), int(series.ts[-1])
    span = min(span, last - first + STEP_MS)
    positions = (last + STEP_MS - span - first) // STEP_MS
    rng = random.Random(f"{seed}/{span}")
    return [first + STEP_MS * rng.randint(0, positions) for _ in range(reps)], span


def queries_ours(series: Series, plan: dict[str, tuple[list[int], int]]) -> dict[str, Timing]:
    from store import window_ms
    from store.keys import Keys
    from store.read import iter_raw, read_buckets
    from store.tiers import tiers

    keys = Keys(OURS_ROOT)
    uuid = series.gpu.uuid
    raw, five = tiers()[0], next(t for t in tiers() if t.resolution_ms == DOWNSAMPLE_STEP_MS)

    def raw_rows(start: int, end: int) -> int:
        rows = [r for s in iter_raw(keys, uuid, start, end, window_ms()) for r in s.rows()]
        return len(rows)

    def buckets(tier: object) -> Callable[[int, int], int]:
        def run(start: int, end: int) -> int:
            return len(read_buckets(keys, uuid, start, end, DOWNSAMPLE_STEP_MS, raw, tier))

        return run

    out = {name: time_query(raw_rows, *plan[name], f"ours {name}") for name, _ in QUERY_WINDOWS}
    starts, span = plan["24 h"]
    out["down rollup"] = time_query(buckets(five), starts, span, "ours 24 h by 5 min, rollups")
    out["down raw"] = time_query(buckets(None), starts, span, "ours 24 h by 5 min, raw")
    # both ways must give the same buckets
    a = read_buckets(keys, uuid, starts[0], starts[0] + span - 1, DOWNSAMPLE_STEP_MS, raw, five)
    b = read_buckets(keys, uuid, starts[0], starts[0] + span - 1, DOWNSAMPLE_STEP_MS, raw, None)
    if not (np.array_equal(a.ts, b.ts) and np.allclose(a.value("avg"), b.value("avg"))):
        raise AssertionError("rollup and raw 5-minute buckets differ")
    return out


def queries_naive(series: Series, plan: dict[str, tuple[list[int], int]]) -> dict[str, Timing]:
    uuid = series.gpu.uuid

    def rows(start: int, end: int) -> int:
        out = [json.loads(item.value) for items in naive_range(uuid, start, end) for item in items]
        return len(out)

    return {name: time_query(rows, *plan[name], f"naive {name}") for name, _ in QUERY_WINDOWS}


# --- MVCC history under live ingest --------------------------------------------------


@dataclass
class Churn:
    gpus: int = 0
    history_5min: float = 0.0  # db bytes of superseded revisions per GPU-hour
    history_hourly: float = 0.0


def _batches(data: list[Series], lo: int, hi: int) -> list:
    """Each GPU's samples with lo <= ts < hi, as write_chunk takes them."""
    from store.codec import Samples
    from store.write import GpuBatch

    out = []
    k = len(gs.METRICS)
    for s in data:
        sel = (s.ts >= lo) & (s.ts < hi)
        n = int(sel.sum())
        if n:
            samples = Samples(
                np.repeat(s.ts[sel], k),
                np.tile(np.arange(k, dtype=np.int32), n),
                s.values[sel].ravel(),
                gs.METRICS,
            )
            out.append(GpuBatch(s.facts(), samples))
    return out


def measure_churn(n_gpus: int, seed: int) -> Churn:
    """MVCC history written per GPU-hour by live ingest: 5-minute chunks, then compaction.

    The GPUs get 2.5 days of history first (the middle of a 5m rollup window,
    noon of a 1m rollup window: the blocks that compaction rewrites are half
    full, their average size over time). Then one hour with a compaction run
    after every chunk (COMPACTION_INTERVAL=5m, the default) and one hour with a
    single run at its end. Each hour's superseded revisions are measured as the
    db size after defragmentation minus the db size after history compaction and
    defragmentation; etcd keeps them until its auto-compaction (1 h retention).
    """
    from store import kv
    from store.compaction import compact
    from store.keys import Keys
    from store.tiers import tiers
    from store.write import write_chunk

    keys = Keys(LIVE_ROOT)
    window = tiers()[0].window_ms
    five_days = 5 * DAY_MS
    w5 = ((END_MS - 10 * DAY_MS) // five_days) * five_days
    live = w5 + 60 * HOUR_MS
    gpus = gs.make_gpus(seed + 1, -(-n_gpus // 8), 8, "live-node")[:n_gpus]
    data = [make_series(g, seed + 1, w5, (live + 2 * HOUR_MS - w5) // STEP_MS) for g in gpus]
    seq = 0
    for lo in tqdm(range(w5, live, 500 * STEP_MS), desc="churn preload", file=sys.stderr):
        write_chunk(keys, "pre", seq, _batches(data, lo, min(live, lo + 500 * STEP_MS)), window)
        seq += 1
    compact(keys, tiers())
    settle()
    out = Churn(gpus=n_gpus)
    for hour, every_chunk in ((0, True), (1, False)):
        start = live + hour * HOUR_MS
        for step in range(12):
            lo = start + step * 300_000
            write_chunk(keys, "live", seq, _batches(data, lo, lo + 300_000), window)
            seq += 1
            if every_chunk or step == 11:
                compact(keys, tiers())
        kv.defragment()
        with_history = int(kv.status()["db_size"])
        history = (with_history - settle()) / n_gpus
        if every_chunk:
            out.history_5min = history
        else:
            out.history_hourly = history
    return out


# --- the two sides -----------------------------------------------------------------


@dataclass
class Side:
    samples: int = 0
    load_s: float = 0.0
    compact_s: float = 0.0
    chunks: int = 0
    keys_before: int = 0
    keys_after: int = 0
    empty_db: int = 0
    db: int = 0
    scan: Scan = field(default_factory=Scan)
    rss_empty: int = 0
    rss_loaded: int = 0
    rss_restarted: int = 0
    heap_empty: int = 0
    heap_restarted: int = 0
    memory_note: str = ""
    churn: Churn | None = None
    etcd_version: str = ""
    queries: dict[str, Timing] = field(default_factory=dict)


def run_ours(data: list[Series], plan: dict, env: dict[str, str], seed: int) -> Side:
    side = Side(samples=sum(s.samples for s in data))
    with stack(**env) as st:
        use_stack(st, first=True)
        from store import kv
        from store.compaction import compact
        from store.keys import Keys
        from store.tiers import tiers

        side.etcd_version = kv.status()["version"]
        side.empty_db = settle()
        side.rss_empty = etcd_rss_anon(st)
        side.load_s, side.chunks = load_ours(data)
        side.keys_before = kv.count_prefix(OURS_ROOT + "/")
        log("ours: compaction (merge raw windows, build 1m and 5m rollups)")
        t0 = time.perf_counter()
        report = compact(Keys(OURS_ROOT), tiers())
        side.compact_s = time.perf_counter() - t0
        if report.conflicts or report.skipped or report.deleted_by_retention:
            raise AssertionError(f"unexpected compaction report: {report}")
        side.keys_after = kv.count_prefix(OURS_ROOT + "/")
        log("ours: history compaction + defragmentation")
        side.db = settle()
        side.scan = scan_ours()
        if side.scan.raw_samples != side.samples:
            raise AssertionError(f"blocks hold {side.scan.raw_samples} samples, not {side.samples}")
        side.rss_loaded = etcd_rss_anon(st)
        side.queries = queries_ours(data[0], plan)
        log("ours: MVCC history under live ingest (2 simulated hours)")
        side.churn = measure_churn(min(8, len(data)), seed)
    return side


def run_naive(data: list[Series], plan: dict) -> Side:
    side = Side(samples=sum(s.samples for s in data))
    with stack() as st:
        use_stack(st, first=False)
        from store import kv

        side.etcd_version = kv.status()["version"]
        side.empty_db = settle()
        side.rss_empty = etcd_rss_anon(st)
        side.heap_empty = etcd_heap_inuse(st)
        side.load_s = load_naive(data)
        side.keys_before = side.keys_after = kv.count_prefix(NAIVE_ROOT + "/")
        log("naive: history compaction + defragmentation")
        side.db = settle()
        side.rss_loaded = etcd_rss_anon(st)
        # Before the queries: a production etcd snapshots every --snapshot-count
        # entries and never holds a whole bulk load's raft log in memory.
        log("naive: restarting etcd (twice) to measure the memory of its key index alone")
        try:
            restart_with_snapshot(st)
            time.sleep(30)  # let Go's GC and scavenger settle after rebuilding the index
            side.rss_restarted = etcd_rss_anon(st)
            side.heap_restarted = etcd_heap_inuse(st)
        except (RuntimeError, OSError) as exc:
            side.memory_note = f"not measured: {str(exc).splitlines()[0][:160]}"
            log(f"naive: {side.memory_note}")
            if not st.etcd.running:
                restart_etcd(st)
        side.scan = scan_naive(data)
        if side.scan.keys != side.samples:
            raise AssertionError(f"naive holds {side.scan.keys} keys, not {side.samples}")
        side.queries = queries_naive(data[0], plan)
    return side


# --- report --------------------------------------------------------------------------


def fmt_int(n: float) -> str:
    return f"{round(n):,}"


def fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def goal(ok: bool, text: str) -> str:
    return f"{text}: {'met' if ok else 'MISSED'}"


def table(args: argparse.Namespace, data: list[Series], ours: Side, naive: Side) -> str:
    n = ours.samples
    lines = ["| measure | ours | naive | naive / ours | goal |", "|---|---:|---:|---:|---|"]

    def row(name: str, a: str, b: str = "", ratio: str = "", target: str = "") -> None:
        lines.append(f"| {name} | {a} | {b} | {ratio} | {target} |")

    row(
        "data set",
        f"{len(data)} GPUs x 10 metrics at 10 s: {args.hours:g} h each, "
        f"query GPU {args.query_days:g} d; {fmt_int(n)} samples",
        "same samples",
    )
    row(
        "machine",
        f"{os.cpu_count()} CPUs, {fmt(_mem_gib(), 1)} GiB, etcd {ours.etcd_version}, "
        f"Python {platform.python_version()}",
    )
    row(
        "load (s; samples/s)",
        f"{fmt(ours.load_s, 1)} s in write_chunk ({fmt_int(n / ours.load_s)}/s), "
        f"{ours.chunks} chunks",
        f"{fmt(naive.load_s, 1)} s ({fmt_int(n / naive.load_s)}/s), "
        f"{NAIVE_TXN_OPS} puts/txn, {NAIVE_IN_FLIGHT} in flight",
    )
    row("compaction run (s)", fmt(ours.compact_s, 1))
    row("keys before compaction", fmt_int(ours.keys_before), fmt_int(naive.keys_before))
    row(
        "keys after compaction",
        fmt_int(ours.keys_after),
        fmt_int(naive.keys_after),
        fmt(naive.keys_after / ours.keys_after, 0) + "x",
    )
    r_kv = naive.scan.total / ours.scan.total
    row(
        "key+value bytes under the prefix (MB)",
        fmt(ours.scan.total / 1e6, 1),
        fmt(naive.scan.total / 1e6, 1),
        fmt(r_kv, 1) + "x",
    )
    row(
        "key+value bytes / sample",
        fmt(ours.scan.total / n),
        fmt(naive.scan.total / n, 1),
        fmt(r_kv, 1) + "x",
        goal(r_kv >= 20, ">= 20x smaller"),
    )
    d_ours, d_naive = ours.db - ours.empty_db, naive.db - naive.empty_db
    r_db = d_naive / d_ours
    row(
        "etcd db after defrag, minus empty db (MB)",
        fmt(d_ours / 1e6, 1),
        fmt(d_naive / 1e6, 1),
        fmt(r_db, 1) + "x",
    )
    row(
        "etcd db bytes / sample",
        fmt(d_ours / n),
        fmt(d_naive / n, 1),
        fmt(r_db, 1) + "x",
        goal(r_db >= 20, ">= 20x smaller"),
    )
    row(
        "db / key+value bytes (bolt overhead)",
        fmt(d_ours / ours.scan.total),
        fmt(d_naive / naive.scan.total),
    )
    kinds = ours.scan.by_kind
    blocks = kinds.get("blocks", [0, 0])
    row(
        "ours: raw blocks (keys; bytes / sample)",
        f"{fmt_int(blocks[0])}; {fmt(blocks[1] / n)}",
    )
    for tier in sorted(ours.scan.buckets, key=lambda t: (len(t), t)):
        k, b = kinds[f"rollups/{tier}"]
        nb = ours.scan.buckets[tier]
        row(
            f"ours: {tier} rollups (keys; buckets; bytes / bucket)",
            f"{fmt_int(k)}; {fmt_int(nb)}; {fmt(b / nb)}",
        )
    other = {k: v for k, v in kinds.items() if k != "blocks" and not k.startswith("rollups/")}
    row(
        "ours: other keys (records, latest, chunk markers...)",
        f"{fmt_int(sum(v[0] for v in other.values()))} keys, "
        f"{fmt(sum(v[1] for v in other.values()) / 1e3, 1)} kB",
    )
    row(
        "naive: key + value bytes / sample",
        "",
        f"{fmt(naive.scan.key_bytes / n, 1)} + {fmt(naive.scan.value_bytes / n, 1)}",
    )
    per_m = 1e6 / naive.keys_after
    row(
        "etcd RssAnon: empty / just loaded, raft log included (MB)",
        f"{fmt(ours.rss_empty / 1e6, 0)} / {fmt(ours.rss_loaded / 1e6, 0)}",
        f"{fmt(naive.rss_empty / 1e6, 0)} / {fmt(naive.rss_loaded / 1e6, 0)}",
    )
    if naive.memory_note:
        row("naive: etcd memory of the key index", "", naive.memory_note)
    else:
        row(
            "naive: etcd RssAnon after restart, index only (MB)",
            "",
            fmt(naive.rss_restarted / 1e6, 0),
        )
        row(
            "naive: etcd memory per million keys (MB): RssAnon / Go heap in use",
            "",
            f"{fmt((naive.rss_restarted - naive.rss_empty) * per_m / 1e6, 0)} / "
            f"{fmt((naive.heap_restarted - naive.heap_empty) * per_m / 1e6, 0)}",
        )
    if ours.churn is not None:
        c = ours.churn
        row(
            f"ours, live ingest of {c.gpus} GPUs in 5-min chunks: MVCC history "
            "per GPU-hour (kB of db), compaction every 5 min / once an hour",
            f"{fmt(c.history_5min / 1e3, 0)} / {fmt(c.history_hourly / 1e3, 0)}",
        )
    reps = {name: len(ours.queries[name].ms) for name, _ in QUERY_WINDOWS}
    for name, span in QUERY_WINDOWS:
        a, b = ours.queries[name], naive.queries[name]
        got_h = a.rows / len(gs.METRICS) * STEP_MS / HOUR_MS
        note = "" if got_h >= span / HOUR_MS else f" (covers the {got_h:g} h present)"
        ratio50, ratio99 = b.p50 / a.p50, b.p99 / a.p99
        target = goal(ratio50 >= 10, ">= 10x faster (p50)") if name == "24 h" else ""
        row(
            f"raw {name}{note}, {fmt_int(a.rows)} rows, {reps[name]} runs: p50 / p99 ms",
            f"{fmt(a.p50, 1)} / {fmt(a.p99, 1)}",
            f"{fmt(b.p50, 1)} / {fmt(b.p99, 1)}",
            f"{fmt(ratio50, 1)}x / {fmt(ratio99, 1)}x",
            target,
        )
    a, b = ours.queries["down rollup"], ours.queries["down raw"]
    row(
        f"24 h by 5 min ({fmt_int(a.rows)} buckets): from 5m rollups / from raw, p50 / p99 ms",
        f"{fmt(a.p50, 1)} / {fmt(a.p99, 1)} vs {fmt(b.p50, 1)} / {fmt(b.p99, 1)}",
        "",
        f"raw / rollups {fmt(b.p50 / a.p50, 1)}x / {fmt(b.p99 / a.p99, 1)}x",
    )
    return "\n".join(lines)


def _mem_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gpus", type=int, default=64)
    parser.add_argument("--hours", type=float, default=24.0, help="history of each GPU")
    parser.add_argument(
        "--query-days", type=float, default=8.0, help="history of the query GPU (default 8)"
    )
    parser.add_argument("--reps", type=int, default=30, help="queries per window (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="8 GPUs x 6 h, 2 days, 10 reps")
    args = parser.parse_args()
    if args.quick:
        args.gpus, args.hours, args.query_days, args.reps = 8, 6.0, 2.0, 10
    if args.gpus < 1 or args.hours <= 0 or args.query_days <= 0 or args.reps < 1:
        parser.error("--gpus, --hours, --query-days and --reps must be positive")

    started = time.perf_counter()
    data = make_dataset(args.gpus, args.hours, args.query_days, args.seed)
    plan = {
        name: window_starts(data[0], span, args.reps, args.seed) for name, span in QUERY_WINDOWS
    }
    env = {"STORAGE_TIERS": BENCH_TIERS, "ETCD_TIMEOUT": "600"}
    ours = run_ours(data, plan, env, args.seed)
    naive = run_naive(data, plan)
    print(table(args, data, ours, naive))
    log(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
