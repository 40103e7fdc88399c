"""What the upload-time retention check costs the parse (docs/PERFORMANCE.md, "Ingest").

    .venv/bin/python -m bench.horizon [--hosts 64] [--gpus-per-host 8] [--samples 60] [--runs 4]
    .venv/bin/python -m bench.horizon --series [--gpus 1000] [--runs 4]

Generates a DCGM long-format file, then parses it in this process, alternating runs
without and with the check `apps/ingest/service.py::_rows` makes on every row
(store/horizon.py: the inline bounds test, `Horizon.check` when it fails, and the
per-chunk tally), and prints the best rows/s of each (per second of the process's
CPU time) and their ratio. No etcd: the stored newest samples are taken as absent
(an empty store), which is the cost of the check itself.

`--series`: the same check on the `JobSeries` path (stream, scrape, remote write;
apps/ingest/jobs.py::_within_horizon), per send of live rows (two per GPU): one
`Horizon.check_rows` per GPU (the baseline) against `check_spans` for the whole
send, in microseconds per send and per row.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from tools.generate_sample import write as write_csv


def _setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    import django

    django.setup()


def parse(path: Path, check: bool) -> tuple[int, float]:
    """(rows, seconds) of parse + group + chunk, with or without the horizon check."""
    from apps.ingest.chunking import Chunker
    from apps.ingest.parsing import Parser, open_text
    from store.horizon import Horizon
    from store.keys import Keys
    from store.tiers import tiers

    horizon = Horizon(Keys("/bench"), tiers())
    horizon._stored = {}  # an empty store: no etcd read
    horizon._preloaded = True

    def observe(chunk) -> None:
        for gpu in chunk.gpus:
            horizon.observe(str(gpu.facts["uuid"]), np.frombuffer(gpu.ts, dtype=np.int64))

    started = time.process_time()  # CPU time: less sensitive to the load of other processes
    rows = 0
    with open(path, "rb") as fh:
        parser = Parser(open_text(fh))
        chunker = Chunker(
            emit=observe if check else (lambda chunk: None),
            facts=lambda row: parser.facts(row, "bench"),
            chunk_rows=5000,
            buffer_rows=100_000,
        )
        settled = horizon.settled
        for row in parser:
            if check:
                bounds = settled.get(row.uuid)
                unsettled = bounds is None or not bounds[0] <= row.ts <= bounds[1]
                if unsettled and horizon.check(row.uuid, row.ts, parser) is not None:
                    parser.refuse("too old")
                    continue
            chunker.add(row)
            rows += 1
        chunker.finish()
    if check:
        horizon.summary()
    return rows, time.process_time() - started


def series(gpus: int, runs: int) -> None:
    """Per-send cost of the JobSeries check, per-GPU `check_rows` against `check_spans`."""
    from apps.ingest.jobs import _within_horizon
    from apps.ingest.parsing import Row
    from store.horizon import Horizon
    from store.keys import Keys
    from store.tiers import tiers

    def per_gpu(rows: list[Row], horizon: Horizon) -> None:
        by_gpu: dict[str, list[int]] = {}
        for r in rows:
            by_gpu.setdefault(r.uuid, []).append(r.ts)
        for uuid, ts in by_gpu.items():
            horizon.check_rows(uuid, np.array(ts), np.zeros(len(ts), dtype=np.int64))

    def timed(check, rows: list[Row]) -> float:
        horizon = Horizon(Keys("/bench"), tiers())
        horizon._stored, horizon._preloaded = {}, True  # an empty store: no etcd read
        started = time.process_time()
        for _ in range(20):
            check(rows, horizon)
        return (time.process_time() - started) / 20

    base_ts = 1_752_800_000_000
    values = [("DCGM_FI_DEV_GPU_UTIL", 1.0)] * 10
    rows = [Row(f"GPU-{g}", "h", base_ts + k, values, []) for k in range(2) for g in range(gpus)]
    one, spans = [], []
    for _ in range(runs):
        one.append(timed(per_gpu, rows))
        spans.append(timed(_within_horizon, rows))
    a, b = min(one), min(spans)
    print(f"a send of {len(rows):,} rows of {gpus:,} GPUs, best of {runs} alternating runs")
    print(
        f"  check_rows per GPU (baseline): {a * 1e3:8.2f} ms/send {a / len(rows) * 1e6:6.2f} us/row"
    )
    print(
        f"  check_spans, then unsure GPUs: {b * 1e3:8.2f} ms/send {b / len(rows) * 1e6:6.2f} us/row"
    )
    print(f"  ratio baseline/check_spans:    {a / b:8.1f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--gpus-per-host", type=int, default=8)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--series", action="store_true", help="the JobSeries check per send")
    ap.add_argument("--gpus", type=int, default=1000, help="GPUs per send (--series)")
    args = ap.parse_args()
    _setup()
    if args.series:
        series(args.gpus, args.runs)
        return
    path = Path(tempfile.mkdtemp()) / "horizon.csv"
    total = write_csv(
        path, hosts=args.hosts, gpus_per_host=args.gpus_per_host, samples=args.samples, seed=7
    )
    without, with_check = [], []
    for _ in range(args.runs):  # alternating: both see the same machine load
        without.append(parse(path, check=False)[1])
        with_check.append(parse(path, check=True)[1])
    base, checked = min(without), min(with_check)
    print(f"{total:,} rows, best of {args.runs} alternating runs")
    print(f"  parse + chunk (baseline):          {total / base:>10,.0f} rows/s")
    print(f"  parse + chunk + retention check:   {total / checked:>10,.0f} rows/s")
    print(f"  ratio checked/baseline time:       {checked / base:>10.3f}")


if __name__ == "__main__":
    main()
