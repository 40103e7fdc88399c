"""The real DCGM export in ../shared/peers-data parses completely, with the facts it carries."""

from __future__ import annotations

import gzip
from collections import Counter

import pytest

from apps.ingest.formats import LONG
from tests.ingest.ingest_support import REAL_CSV, parse_all
from timeparse.timestamps import parse_timestamp


@pytest.fixture(scope="module")
def real_bytes() -> bytes:
    if not REAL_CSV.exists():
        pytest.skip(f"the real DCGM export is not at {REAL_CSV}")
    return REAL_CSV.read_bytes()


def test_real_file_is_accepted_whole(real_bytes):
    parser, rows = parse_all(real_bytes)
    assert parser.format == LONG
    assert (parser.rows_read, parser.accepted, parser.rejected) == (2470, 2470, 0)
    assert parser.errors == []
    assert len({r.uuid for r in rows}) == 247
    assert len({r.host for r in rows}) == 31
    assert len({name for r in rows for name, _ in r.values}) == 10


def test_real_file_has_ten_metrics_per_gpu_at_four_times(real_bytes):
    _parser, rows = parse_all(real_bytes)
    per_gpu = Counter(r.uuid for r in rows)
    assert set(per_gpu.values()) == {10}
    first, last = parse_timestamp("2025-07-18T20:42:34Z"), parse_timestamp("2025-07-18T20:42:37Z")
    assert {r.ts for r in rows} == set(range(first, last + 1, 1000))


def test_real_file_facts_of_one_gpu(real_bytes):
    parser, rows = parse_all(real_bytes)
    row = next(r for r in rows if r.uuid == "GPU-5fd4f087-86f3-7a43-b711-4771313afc50")
    facts = parser.facts(row, "dgx")
    assert facts["host"] == "mtv5-dgx1-hgpu-031"
    assert facts["driver"] == "535.129.03"
    assert facts["model"] == "NVIDIA H100 80GB HBM3"
    assert (facts["gpu_index"], facts["device"]) == (0, "nvidia0")
    assert facts["labels"]["instance"] == "mtv5-dgx1-hgpu-031:9400"
    assert facts["labels"]["job"] == "dgx_dcgm_exporter"


def test_every_real_gpu_has_driver_and_model_facts(real_bytes):
    parser, rows = parse_all(real_bytes)
    facts = {r.uuid: parser.facts(r, "dgx") for r in rows}
    assert {f["driver"] for f in facts.values()} == {"535.129.03"}
    assert {f["model"] for f in facts.values()} == {"NVIDIA H100 80GB HBM3"}
    assert all(f["labels"]["UUID"] == uuid for uuid, f in facts.items())


def test_real_file_gzipped_gives_the_same_rows(real_bytes):
    _, plain = parse_all(real_bytes)
    _, zipped = parse_all(gzip.compress(real_bytes))
    assert zipped == plain


def test_real_file_with_crlf_and_bom_gives_the_same_rows(real_bytes):
    _, plain = parse_all(real_bytes)
    data = b"\xef\xbb\xbf" + real_bytes.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    _, variant = parse_all(data)
    assert [(r.uuid, r.host, r.ts, r.values) for r in variant] == [
        (r.uuid, r.host, r.ts, r.values) for r in plain
    ]
