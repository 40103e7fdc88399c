"""Values are ASCII decimal numbers as Go and Prometheus read them; DCGM blanks are no value."""

from __future__ import annotations

import pytest

from apps.ingest.chunking import Chunker
from apps.ingest.numbers import NotANumber, is_blank, parse_value
from tests.ingest.ingest_support import (
    WIDE_HEADER,
    csv_text,
    long_csv,
    long_row,
    parse_all,
    wide_row,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("5", 5.0),
        ("+5", 5.0),  # Go's ParseFloat and Prometheus take a plus sign
        ("-5", -5.0),
        ("5.", 5.0),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("2.5E-3", 0.0025),
        ("0", 0.0),
        ("-0.0", 0.0),
        ("0e-999", 0.0),  # zero written as zero is no underflow
        ("1e-310", 1e-310),  # subnormal, still what was written
        (" 12.5\t", 12.5),
        ("1.7976931348623157e308", 1.7976931348623157e308),
    ],
)
def test_decimal_numbers_are_read(text, value):
    assert parse_value(text) == value


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("1_000", "not a number"),
        ("\uff11\uff12\uff13", "not a number"),  # full-width digits
        ("\u0663", "not a number"),  # Arabic-Indic three
        ("\u00b2", "not a number"),
        ("0x1p-2", "not a number"),
        ("1e", "not a number"),
        ("--5", "not a number"),
        ("5\u00a0", "not a number"),  # a no-break space is not ASCII space
        ("inf", "not a finite number"),
        ("-Infinity", "not a finite number"),
        ("NaN", "not a finite number"),
        ("1e400", "too large for a 64-bit float"),
        ("-1e400", "too large for a 64-bit float"),
        ("1e-400", "too small for a 64-bit float"),
        ("-0.0001e-330", "too small for a 64-bit float"),
        ("", "value is empty"),
    ],
)
def test_anything_else_is_refused_with_its_reason(text, words):
    with pytest.raises(NotANumber, match=words):
        parse_value(text)


@pytest.mark.parametrize("bad", ["1_000", "\uff11\uff12\uff13", "\u0663", "1e-400"])
def test_a_row_repeating_a_known_gpu_metric_and_time_gets_the_same_check(bad):
    # The second row takes the fast path of rows like ones already seen.
    parser, rows = parse_all(long_csv([long_row(value="1"), long_row(value=bad)]))
    assert [r.values for r in rows] == [[("DCGM_FI_DEV_GPU_UTIL", 1.0)]]
    (error,) = parser.errors
    assert error.line == 3
    assert repr(bad)[1:-1] in error.message or bad in error.message


# dcgm_fields.h: BLANK, NOT_FOUND, NOT_SUPPORTED, NOT_PERMISSIONED of each type.
DCGM_BLANKS = [
    "2147483632",
    "2147483633",
    "2147483634",
    "2147483635",
    "9223372036854775792",
    "9223372036854775793",
    "9223372036854775794",
    "9223372036854775795",
    "140737488355328",
    "1.40737488355328e14",
    "140737488355329.0",
    "140737488355331",
]


@pytest.mark.parametrize("text", DCGM_BLANKS)
def test_dcgm_blank_values_are_recognised(text):
    assert is_blank(parse_value(text))


@pytest.mark.parametrize(
    "text", ["2147483631", "140737488355327", "140737488355332", "-2147483632"]
)
def test_values_next_to_the_blanks_are_readings(text):
    assert not is_blank(parse_value(text))


def test_long_rows_with_a_blank_value_are_counted_never_stored():
    rows_in = [long_row(value="7")] + [long_row(value=b) for b in DCGM_BLANKS]
    parser, rows = parse_all(long_csv(rows_in))
    assert parser.blank == len(DCGM_BLANKS)
    assert parser.rejected == 0
    assert [v for r in rows for v in r.values] == [("DCGM_FI_DEV_GPU_UTIL", 7.0)]
    chunks = []
    chunker = Chunker(chunks.append, lambda row: {"uuid": row.uuid}, 100, 100)
    for row in rows:
        chunker.add(row)
    chunker.finish()
    assert chunker.samples == 1


def test_wide_cells_with_a_blank_are_skipped_and_counted():
    row = wide_row(gpu_utilization="2147483632", power_draw="140737488355328")
    parser, rows = parse_all(csv_text(WIDE_HEADER, [row], quote_all=False).encode())
    names = [name for name, _ in rows[0].values]
    assert parser.blank == 2
    assert "DCGM_FI_DEV_GPU_UTIL" not in names and "DCGM_FI_DEV_POWER_USAGE" not in names
    assert len(names) == 6


def test_a_wide_row_of_blanks_only_is_read_as_no_value_not_refused():
    blanks = {name: "9223372036854775792" for name in WIDE_HEADER[6:]}
    parser, rows = parse_all(csv_text(WIDE_HEADER, [wide_row(**blanks)], quote_all=False).encode())
    assert (parser.accepted, parser.rejected, parser.blank) == (1, 0, 8)
    assert rows[0].values == []


def test_blanks_of_a_refused_row_are_not_counted():
    row = wide_row(gpu_utilization="2147483632", temperature="hot")
    parser, _rows = parse_all(csv_text(WIDE_HEADER, [row], quote_all=False).encode())
    assert (parser.rejected, parser.blank) == (1, 0)
