"""What the upload-time retention check costs the parse (docs/PERFORMANCE.md, "Ingest").

    .venv/bin/python -m bench.horizon [--hosts 64] [--gpus-per-host 8] [--samples 60] [--runs 4]

Generates a DCGM long-format file, then parses it in this process, alternating runs
without and with the check `apps/ingest/service.py::_rows` makes on every row
(store/horizon.py: the inline bounds test, `Horizon.check` when it fails, and the
per-chunk tally), and prints the best rows/s of each (per second of the process's
CPU time) and their ratio. No etcd: the stored newest samples are taken as absent
(an empty store), which is the cost of the check itself.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--gpus-per-host", type=int, default=8)
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--runs", type=int, default=4)
    args = ap.parse_args()
    _setup()
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
