"""The columnar parser has Arrow allocate with jemalloc (its default, mimalloc, parsed 30-45 %
slower in a Celery worker's forked child), unless ARROW_DEFAULT_MEMORY_POOL says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CSV = b"timestamp,metric_name,uuid,Hostname,value\n2025-07-18T00:00:00Z,M,GPU-1,h1,1\n"

PROBE = """
import io, os
import pyarrow as pa
from apps.ingest.columnar import ColumnarParser
before = pa.default_memory_pool().backend_name
rows = list(ColumnarParser(io.BytesIO({csv!r})))
after = pa.default_memory_pool().backend_name
pid = os.fork()
if pid == 0:  # a forked child (a Celery worker's) chooses again, and the same
    list(ColumnarParser(io.BytesIO({csv!r})))
    os._exit(0 if pa.default_memory_pool().backend_name == after else 3)
_, status = os.waitpid(pid, 0)
print(before, after, len(rows), os.waitstatus_to_exitcode(status))
"""


def probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(csv=CSV)],
        cwd=REPO,
        env={**clean, "DJANGO_SETTINGS_MODULE": "telemetry_site.settings", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return done.stdout.split()


def test_a_parse_allocates_with_jemalloc():
    _, after, rows, child = probe()
    assert after == "jemalloc" and rows == "1" and child == "0"


def test_an_operators_choice_of_allocator_stands():
    _, after, rows, _ = probe(ARROW_DEFAULT_MEMORY_POOL="system")
    assert after == "system" and rows == "1"
