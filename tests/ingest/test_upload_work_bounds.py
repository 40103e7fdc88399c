"""Upload work is bounded by what is read: blank lines, refused rows, gzip expansion, CPU time."""

from __future__ import annotations

import gzip
import io
import time
from pathlib import Path

import pytest

from apps.ingest.parsing import Parser, TooLarge, open_text
from tests.ingest.ingest_support import LONG_HEADER, long_csv, long_row


def parse(data: bytes, **limits) -> Parser:
    ratio = limits.pop("max_ratio", None)
    parser = Parser(open_text(io.BytesIO(data), max_ratio=ratio), **limits)  # type: ignore[arg-type]
    for _ in parser:
        pass
    return parser


def test_blank_lines_count_toward_the_line_limit():
    data = long_csv([long_row()]) + b"\n" * 10_000 + long_csv([long_row()])
    with pytest.raises(TooLarge, match=r"more than 5000 lines \(INGEST_MAX_ROWS"):
        parse(data, max_lines=5000)


def test_refused_rows_count_toward_the_line_limit():
    data = long_csv([long_row(value="bad")] * 100)
    with pytest.raises(TooLarge, match="more than 50 lines"):
        parse(data, max_lines=50)


def test_a_file_within_the_line_limit_is_read_whole():
    parser = parse(long_csv([long_row()] * 49), max_lines=50)
    assert parser.accepted == 49


def blank_line_bomb(size: int) -> bytes:
    """About `size` bytes of gzip that expand to ~1000 times as many blank lines: gzip
    members of 1 MiB of newlines each, one after the other (a valid gzip file)."""
    header = gzip.compress((",".join(LONG_HEADER) + "\n").encode())
    member = gzip.compress(b"\n" * (1 << 20), compresslevel=9)
    return header + member * (size // len(member))


def test_a_2_mb_gzip_of_blank_lines_ends_fast_with_a_clear_error():
    bomb = blank_line_bomb(2 * 1024 * 1024)
    started = time.monotonic()
    with pytest.raises(TooLarge, match=r"expands more than 100 times \(INGEST_MAX_GZIP_RATIO\)"):
        parse(bomb, max_ratio=100)
    assert time.monotonic() - started < 5.0  # it took 30 minutes before the limit


def test_an_ordinary_gzip_export_is_within_the_ratio():
    # the bundled sample compresses 33 times (the real export: 12)
    sample = (Path(__file__).resolve().parents[2] / "samples" / "dcgm_sample.csv").read_bytes()
    parser = parse(gzip.compress(sample, compresslevel=9), max_ratio=100)
    assert parser.accepted == sample.count(b"\n") - 1
    assert parser.rejected == 0


def test_the_cpu_budget_ends_a_long_parse_with_a_clear_error():
    data = long_csv([long_row(value="bad")]) + b'"x","y"\n' * 300_000
    started = time.monotonic()
    budget = r"more than 0.05 s of CPU time \(INGEST_MAX_PARSE_SECONDS\)"
    with pytest.raises(TooLarge, match=budget):
        parse(data, max_cpu_seconds=0.05)
    assert time.monotonic() - started < 2.0
