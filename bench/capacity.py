"""How many GPUs one 8 GiB etcd holds with 30 days of history: today's defaults vs these.

    .venv/bin/python -m bench.capacity [--gpus 1000] [--hours 24] [--baseline-rev REV]
    .venv/bin/python -m bench.capacity --gpus 16 --hours 6      # a smoke run

One run measures two *sides*, each in its own process on its own fresh etcd:

- **now**: this checkout, its default settings (STORAGE_TIERS, COMPACTION_INTERVAL, block codec);
- **baseline**: the code of `--baseline-rev` (default: the commit before issue 18, "today's
  defaults"), unpacked with `git archive` into a temporary folder and imported from there.

Each side simulates live ingest, as a fleet of dcgm-exporters uploading 5-minute files:
--gpus GPUs x 10 DCGM metrics at 10 s (tools/generate_sample.py's value model, the same
samples on both sides) for --hours plus 70 minutes (so the last whole day is over and
its rollups get written), every 5 minutes one `store.write.write_chunk` per 16 GPUs
(5,000-sample chunks, the ingest chunker's size before 2026-12-04) and a compaction run every
COMPACTION_INTERVAL of simulated time; etcd's own history compaction is done the way
`--auto-compaction-mode periodic --auto-compaction-retention 1h` does it (every hour, up
to the revision of an hour before), and the db file is measured just before each one:
the largest figure is *db with history*. At the end, history is compacted and etcd
defragmented: *db settled*. Every key is read back and its bytes counted per kind.

Extrapolation to 30 days (printed with its inputs): per GPU, db = bbolt overhead x (raw
bytes per GPU-day x raw retention days (at most 30) + each rollup tier's bytes per
GPU-day x its retention (at most 30) + chunk markers per GPU-day x 7 days + per-GPU keys)
+ history held. The per-GPU-day figures do not depend on the number of GPUs (every GPU
has its own keys), so a run with fewer GPUs than 1,000 measures the same unit costs with
more noise; the goal line uses 75 % of the 8 GiB quota (25 % headroom).

Prints one Markdown table on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BASELINE_REV = "c5dd1df"  # main before issue 18: codec v1, tiers raw 7d / 1m 30d / 5m 365d
QUOTA = 8 * 1024**3
HEADROOM = 0.75
DAYS = 30
JOB_RETENTION_DAYS = 7
STEP_MS = 10_000
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
CHUNK_MS = 5 * 60_000
CHUNK_SAMPLES = 5_000
ROOT = "/capacity"
T0 = 1_752_796_800_000  # 2025-07-18T00:00Z, a day boundary


def log(message: str) -> None:
    print(f"[capacity] {message}", file=sys.stderr, flush=True)


# --- one side (runs in its own process, imports `store` of its tree) -------------------


def make_values(n_gpus: int, n_ts: int, seed: int) -> tuple[list, np.ndarray]:
    """GPU facts and values (gpus x n_ts x 10) from generate_sample's model."""
    from tools import generate_sample as gs

    gpus = gs.make_gpus(seed, -(-n_gpus // 8), 8, "cap-node")[:n_gpus]
    values = np.empty((n_gpus, n_ts, len(gs.METRICS)), dtype=np.float64)
    for i, gpu in enumerate(gpus):
        rng = random.Random(f"{seed}/{gpu.uuid}")
        state = gs.initial_state(rng)
        text = [gs.step(state, rng).metric_values() for _ in range(n_ts)]
        values[i] = np.array(text, dtype=np.str_).astype(np.float64)
    facts = [
        {
            "uuid": g.uuid,
            "cluster": "capacity",
            "host": g.host,
            "gpu_index": g.index,
            "device": g.device,
            "model": gs.MODEL_NAME,
            "driver": gs.DRIVER_VERSION,
            "labels": {"Hostname": g.host, "UUID": g.uuid, "gpu": str(g.index)},
        }
        for g in gpus
    ]
    return facts, values


def chunk_batches(facts: list, values: np.ndarray, lo: int, hi: int) -> list[list]:
    """The GpuBatches of one 5-minute slice, cut into chunks of at most CHUNK_SAMPLES."""
    from store.codec import Samples
    from store.write import GpuBatch
    from tools import generate_sample as gs

    a, b = (lo - T0) // STEP_MS, (hi - T0) // STEP_MS
    ts = T0 + STEP_MS * np.arange(a, b, dtype=np.int64)
    k = len(gs.METRICS)
    per_chunk = max(1, CHUNK_SAMPLES // (len(ts) * k))
    metric = np.tile(np.arange(k, dtype=np.int32), len(ts))
    stamps = np.repeat(ts, k)
    batches = [
        GpuBatch(f, Samples(stamps, metric, values[i, a:b].ravel(), gs.METRICS))
        for i, f in enumerate(facts)
    ]
    return [batches[i : i + per_chunk] for i in range(0, len(batches), per_chunk)]


class EtcdHistory:
    """etcd's periodic auto-compaction (retention 1 h), on simulated time."""

    def __init__(self) -> None:
        self.marks: list[tuple[int, int]] = []  # (simulated ms, revision)
        self.peak_db = 0

    def hour(self, now_ms: int) -> None:
        from store import client, kv

        self.peak_db = max(self.peak_db, int(kv.status()["db_size"]))
        due = [rev for t, rev in self.marks if t <= now_ms - HOUR_MS]
        if due:
            _compact_history(client, max(due))
            self.marks = [(t, r) for t, r in self.marks if t > now_ms - HOUR_MS]
        self.marks.append((now_ms, kv.revision()))


def _compact_history(client, revision: int) -> None:
    try:
        client.get().compact(revision, physical=True)
    except Exception as exc:  # an already compacted revision is fine
        if "compacted" not in str(exc).lower():
            raise


def settle() -> int:
    """History compacted to now and the member defragmented; the db file size."""
    from store import client, kv

    _compact_history(client, kv.revision())
    kv.defragment()
    return int(kv.status()["db_size"])


def scan(tiers: list) -> dict:
    """Bytes (key + value) and keys per kind; rollup coverage in GPU-days per tier."""
    from store import kv
    from store.keys import Keys

    kinds = {"raw": f"{ROOT}/blocks/", "latest": f"{ROOT}/latest/", "chunks": f"{ROOT}/chunks/"}
    kinds["records"] = f"{ROOT}/clusters/"
    kinds["locators"] = f"{ROOT}/gpus/"
    for t in tiers[1:]:
        kinds[f"rollup {t.name}"] = f"{ROOT}/rollups/{t.name}/"
    out: dict = {"bytes": {}, "keys": {}, "coverage_days": {}}
    for kind, prefix in kinds.items():
        items = kv.get_prefix(prefix)
        out["bytes"][kind] = sum(len(i.key) + len(i.value) for i in items)
        out["keys"][kind] = len(items)
        if kind.startswith("rollup"):
            tier = next(t for t in tiers if f"rollup {t.name}" == kind)
            spans = [Keys.parse_block(i.key) for i in items]
            covered = sum(b.t_last - b.t_first + tier.resolution_ms for b in spans)
            out["coverage_days"][kind] = covered / DAY_MS
    total = kv.get_prefix(f"{ROOT}/")
    out["bytes"]["all"] = sum(len(i.key) + len(i.value) for i in total)
    out["keys"]["all"] = len(total)
    return out


def run_side(args: argparse.Namespace) -> dict:
    import django

    django.setup()
    from django.conf import settings

    from store import kv
    from store.compaction import compact
    from store.keys import Keys
    from store.tiers import tiers
    from store.write import write_chunk

    tier_list = tiers()
    window = tier_list[0].window_ms
    span = args.hours * HOUR_MS + 70 * 60_000
    n_ts = span // STEP_MS
    log(f"{args.side}: generating {args.gpus} GPUs x {n_ts} timestamps")
    facts, values = make_values(args.gpus, n_ts, args.seed)
    empty_db = settle()
    keys = Keys(ROOT)
    every = int(settings.COMPACTION_INTERVAL * 1000)
    history = EtcdHistory()
    load_s = compact_s = 0.0
    seq = 0
    for lo in range(T0, T0 + span, CHUNK_MS):
        hi = lo + CHUNK_MS
        t = time.perf_counter()
        for chunk in chunk_batches(facts, values, lo, hi):
            write_chunk(keys, f"{lo:013d}", seq, chunk, window)
            seq += 1
        load_s += time.perf_counter() - t
        if (hi - T0) % every == 0:
            t = time.perf_counter()
            compact(keys, tier_list)
            compact_s += time.perf_counter() - t
        if (hi - T0) % HOUR_MS == 0:
            history.hour(hi)
            log(f"{args.side}: {(hi - T0) / HOUR_MS:.0f} h simulated, db {history.peak_db:,} B")
    t = time.perf_counter()
    compact(keys, tier_list)
    compact_s += time.perf_counter() - t
    history.hour(T0 + span + HOUR_MS)
    settled = settle()
    found = scan(tier_list)
    return {
        "side": args.side,
        "gpus": args.gpus,
        "span_days": span / DAY_MS,
        "samples": int(values.size),
        "tiers": [[t.name, t.resolution_ms, t.retention_ms, t.window_ms] for t in tier_list],
        "compaction_interval_s": float(settings.COMPACTION_INTERVAL),
        "empty_db": empty_db,
        "peak_db": history.peak_db,
        "settled_db": settled,
        "load_s": load_s,
        "compact_s": compact_s,
        "etcd_version": kv.status()["version"],
        **found,
    }


# --- the orchestrator --------------------------------------------------------------------


def tree_of(rev: str, into: Path) -> Path:
    """The files of `rev` (git archive: the repository is not touched)."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", rev], cwd=REPO, check=True, capture_output=True
    ).stdout
    into.mkdir(parents=True, exist_ok=True)
    tar = into / "tree.tar"
    tar.write_bytes(archive)
    tree = into / "tree"
    with tarfile.open(tar) as t:
        t.extractall(tree, filter="data")
    return tree


def measure(side: str, tree: Path, tmp: Path, args: argparse.Namespace) -> dict:
    from tools import services

    with services.start_etcd(tmp / f"etcd-{side}", name=side) as etcd:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ETCD_", "STORAGE_", "COMPACTION_", "BLOCK_", "DJANGO_"))
        }
        env.update(
            PYTHONPATH=str(tree),
            DJANGO_SETTINGS_MODULE="telemetry_site.settings",
            DJANGO_DEBUG="true",
            ETCD_ENDPOINTS=etcd.url,
            ETCD_TIMEOUT="60",
        )
        argv = [sys.executable, str(Path(__file__).resolve()), "--side", side]
        argv += ["--gpus", str(args.gpus), "--hours", str(args.hours), "--seed", str(args.seed)]
        done = subprocess.run(argv, cwd=tree, env=env, check=True, stdout=subprocess.PIPE)
    return json.loads(done.stdout)


def per_gpu(m: dict) -> dict:
    """Per-GPU unit costs and the 30-day extrapolation of one side."""
    g, days = m["gpus"], m["span_days"]
    b = m["bytes"]
    overhead = (m["settled_db"] - m["empty_db"]) / b["all"]
    tiers = {name: (res, ret / DAY_MS) for name, res, ret, _ in m["tiers"]}
    raw_day = b["raw"] / g / days
    parts = {"raw": raw_day * min(tiers["raw"][1], DAYS)}
    rollup_day = {}
    for name, (_, ret_days) in tiers.items():
        if name == "raw":
            continue
        kind = f"rollup {name}"
        covered = m["coverage_days"].get(kind, 0.0)
        rollup_day[name] = b[kind] / covered if covered else float("nan")
        parts[kind] = rollup_day[name] * min(ret_days, DAYS)
    parts["chunk markers"] = b["chunks"] / g / days * JOB_RETENTION_DAYS
    parts["records, locators, latest"] = (b["records"] + b["locators"] + b["latest"]) / g
    data = overhead * sum(parts.values())
    history = max(0, m["peak_db"] - m["settled_db"]) / g
    total = data + history
    return {
        "overhead": overhead,
        "raw_day": raw_day,
        "rollup_day": rollup_day,
        "parts": parts,
        "data": data,
        "history": history,
        "history_gpu_day": history / days,
        "total": total,
        "gpus_full": QUOTA / total,
        "gpus_headroom": QUOTA * HEADROOM / total,
        "bytes_per_sample": b["raw"] / m["samples"],
    }


def report(base: dict, now: dict) -> str:
    pb, pn = per_gpu(base), per_gpu(now)
    rows = [
        "| | baseline (today's defaults) | now (these defaults) | now / baseline |",
        "|---|---:|---:|---:|",
    ]

    def row(name: str, a: float | str, b: float | str, ratio: bool = True) -> None:
        fa = f"{a:,.0f}" if isinstance(a, float | int) else a
        fb = f"{b:,.0f}" if isinstance(b, float | int) else b
        numbers = isinstance(a, float | int) and isinstance(b, float | int) and a
        r = f"{b / a:.2f}x" if ratio and numbers else ""
        rows.append(f"| {name} | {fa} | {fb} | {r} |")

    tiers = {
        m["side"]: ",".join(f"{t[0]}:{t[2] // DAY_MS}d" for t in m["tiers"]) for m in (base, now)
    }
    row("tiers (retention)", tiers["baseline"], tiers["now"], False)
    row(
        "compaction interval (s)",
        base["compaction_interval_s"],
        now["compaction_interval_s"],
        False,
    )
    row(
        "GPUs x days simulated",
        f"{base['gpus']} x {base['span_days']:.2f}",
        f"{now['gpus']} x {now['span_days']:.2f}",
        False,
    )
    rows.append(
        f"| raw bytes per sample (key + value) | {pb['bytes_per_sample']:.3f} | "
        f"{pn['bytes_per_sample']:.3f} | {pn['bytes_per_sample'] / pb['bytes_per_sample']:.2f}x |"
    )
    row("raw, bytes per GPU-day (key + value)", pb["raw_day"], pn["raw_day"])
    for name in sorted(set(pb["rollup_day"]) | set(pn["rollup_day"])):
        row(
            f"rollup {name}, bytes per GPU-day",
            pb["rollup_day"].get(name, "-"),
            pn["rollup_day"].get(name, "-"),
        )
    row("MVCC history held at its peak, bytes per GPU", pb["history"], pn["history"])
    row("MVCC history, bytes per GPU-day of ingest", pb["history_gpu_day"], pn["history_gpu_day"])
    rows.append(
        f"| bbolt overhead (db / key+value) | {pb['overhead']:.2f} | {pn['overhead']:.2f} | |"
    )
    row("db per GPU with 30 days, history included (bytes)", pb["total"], pn["total"])
    row("GPUs per 8 GiB shard", pb["gpus_full"], pn["gpus_full"])
    row("GPUs per 8 GiB shard with 25 % headroom", pb["gpus_headroom"], pn["gpus_headroom"])
    ok = pn["gpus_headroom"] >= 10_000
    rows.append("")
    rows.append(
        f"Goal >= 10,000 GPUs x 30 days in one 8 GiB shard with 25 % headroom: "
        f"**{'met' if ok else 'NOT met'}** ({pn['gpus_headroom']:,.0f}); "
        f"{pn['gpus_headroom'] / pb['gpus_headroom']:.1f}x today's defaults."
    )
    rows.append("")
    rows.append("30-day db per GPU, by part (bytes, before bbolt overhead):")
    for side, p in (("baseline", pb), ("now", pn)):
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in p["parts"].items())
        rows.append(f"- {side}: {parts}; history {p['history']:,.0f}")
    rows.append("")
    rows.append(
        f"etcd {now['etcd_version']}; load {base['load_s']:.0f} s / {now['load_s']:.0f} s, "
        f"compaction {base['compact_s']:.0f} s / {now['compact_s']:.0f} s (baseline / now)."
    )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=1000)
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--baseline-rev", default=BASELINE_REV)
    parser.add_argument("--now-rev", help="measure this commit instead of the working tree")
    parser.add_argument("--side", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        # run as a file: its folder comes first on sys.path; the side's tree must win
        here = Path(__file__).resolve().parent
        sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != here]
        print(json.dumps(run_side(args)))
        return
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="capacity-") as name:
        tmp = Path(name)
        base = measure("baseline", tree_of(args.baseline_rev, tmp / "baseline"), tmp, args)
        now_tree = tree_of(args.now_rev, tmp / "now") if args.now_rev else REPO
        now = measure("now", now_tree, tmp, args)
    log(f"measured: {json.dumps({'baseline': base, 'now': now})}")  # the raw figures, kept
    print(report(base, now))


if __name__ == "__main__":
    main()
