"""The columnar parser has Arrow allocate with jemalloc (its default, mimalloc, parsed 30-45 %
slower in a Celery worker's forked child), unless ARROW_DEFAULT_MEMORY_POOL says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

REPO = Path(__file__).resolve().parents[2]
CSV = b"timestamp,metric_name,uuid,Hostname,value\n2025-07-18T00:00:00Z,M,GPU-1,h1,1\n"

PROBE = """
import io
import pyarrow as pa
from apps.ingest.columnar import ColumnarParser
rows = list(ColumnarParser(io.BytesIO({csv!r})))
print(pa.default_memory_pool().backend_name, len(rows))
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


def has_jemalloc() -> bool:
    try:
        pa.jemalloc_memory_pool()
    except NotImplementedError:
        return False
    return True


@pytest.mark.skipif(not has_jemalloc(), reason="this pyarrow was built without jemalloc")
def test_a_parse_allocates_with_jemalloc():
    assert probe() == ["jemalloc", "1"]


def test_an_operators_choice_of_allocator_stands():
    assert probe(ARROW_DEFAULT_MEMORY_POOL="system") == ["system", "1"]
