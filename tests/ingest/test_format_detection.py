"""Format detection from the header row, input decoding (BOM, CRLF, gzip) and refused inputs."""

from __future__ import annotations

import gzip
import io
import random

import pytest

from apps.ingest.formats import LONG, WIDE, HeaderError, detect
from apps.ingest.parsing import Parser, open_text
from tests.ingest.ingest_support import (
    HOST,
    LONG_HEADER,
    TS_MS,
    UUID,
    WIDE_HEADER,
    csv_text,
    long_csv,
    long_row,
    parse_all,
    parser_for,
    wide_csv,
    wide_row,
)


def refused(data: bytes) -> HeaderError:
    """The HeaderError `data` is refused with (any other exception fails the test)."""
    with pytest.raises(HeaderError) as info:
        parser_for(data)
    return info.value


def test_dcgm_long_header_is_detected():
    parser, rows = parse_all(long_csv([long_row()]))
    assert parser.format == LONG
    assert [(r.uuid, r.host, r.ts, r.values) for r in rows] == [
        (UUID, HOST, TS_MS, [("DCGM_FI_DEV_GPU_UTIL", 42.0)])
    ]


@pytest.mark.parametrize("case", [str.upper, str.lower, str.title])
def test_long_header_is_detected_in_any_case(case):
    header = [case(name) for name in LONG_HEADER]
    parser, rows = parse_all(csv_text(header, [long_row()]).encode())
    assert parser.format == LONG
    assert rows[0].uuid == UUID


def test_long_header_with_spaces_around_names_is_detected():
    header = [f" {name} " for name in LONG_HEADER]
    parser, rows = parse_all(csv_text(header, [long_row()]).encode())
    assert parser.format == LONG and len(rows) == 1


def test_long_header_with_extra_columns_is_detected_and_extra_cells_ignored():
    header = [*LONG_HEADER, "cluster_zone", "note"]
    parser, rows = parse_all(csv_text(header, [[*long_row(value="7.5"), "eu-1", "x"]]).encode())
    assert parser.format == LONG
    assert rows[0].values == [("DCGM_FI_DEV_GPU_UTIL", 7.5)]


def test_long_header_with_reordered_columns_reads_cells_by_name():
    order = list(reversed(LONG_HEADER))
    row = dict(zip(LONG_HEADER, long_row(value="13"), strict=True))
    parser, rows = parse_all(csv_text(order, [[row[name] for name in order]]).encode())
    assert parser.format == LONG
    assert (rows[0].uuid, rows[0].host, rows[0].ts) == (UUID, HOST, TS_MS)
    assert rows[0].values == [("DCGM_FI_DEV_GPU_UTIL", 13.0)]
    assert parser.facts(rows[0], "c1")["driver"] == "535.129.03"


def test_minimal_long_header_with_only_required_columns_is_detected():
    header = ["timestamp", "metric_name", "uuid", "hostname", "value"]
    data = csv_text(header, [[str(TS_MS // 1000), "m", UUID, HOST, "1"]]).encode()
    parser, rows = parse_all(data)
    assert parser.format == LONG
    assert rows[0].ts == TS_MS
    facts = parser.facts(rows[0], "c1")
    assert (facts["gpu_index"], facts["device"], facts["model"], facts["driver"]) == (
        None,
        "",
        "",
        "",
    )


def test_wide_header_is_detected():
    parser, rows = parse_all(wide_csv([wide_row()]))
    assert parser.format == WIDE
    assert len(rows) == 1 and len(rows[0].values) == 8


def test_wide_header_in_upper_case_is_detected():
    header = [name.upper() for name in WIDE_HEADER]
    parser, rows = parse_all(csv_text(header, [wide_row()]).encode())
    assert parser.format == WIDE
    assert dict(rows[0].values)["DCGM_FI_DEV_GPU_UTIL"] == 90.0


def test_header_with_utf8_bom_is_detected():
    parser, rows = parse_all(b"\xef\xbb\xbf" + long_csv([long_row()]))
    assert parser.format == LONG
    assert rows[0].ts == TS_MS


def test_bom_is_stripped_by_detect_when_the_text_still_has_it():
    layout = detect(["\ufefftimestamp", "uuid", "hostname", "gpu_utilization"])
    assert layout.format == WIDE and layout.index["timestamp"] == 0


def test_crlf_line_ends_are_accepted_and_do_not_leak_into_values():
    data = long_csv([long_row(value="1"), long_row(value="2")], line_end="\r\n")
    assert b"\r\n" in data
    _parser, rows = parse_all(data)
    assert [r.values[0][1] for r in rows] == [1.0, 2.0]
    assert not any("\r" in field for r in rows for field in r.fields)


def test_crlf_wide_file_keeps_last_column_clean():
    _parser, rows = parse_all(wide_csv([wide_row(memory_clock_mhz="2619")], line_end="\r\n"))
    assert dict(rows[0].values)["DCGM_FI_DEV_MEM_CLOCK"] == 2619.0


def test_gzip_input_is_detected_by_magic_bytes():
    data = gzip.compress(long_csv([long_row(value="5"), long_row(value="6")]))
    parser, rows = parse_all(data)
    assert parser.format == LONG
    assert [r.values[0][1] for r in rows] == [5.0, 6.0]


def test_gzip_with_bom_and_crlf_inside_is_read():
    data = gzip.compress(b"\xef\xbb\xbf" + wide_csv([wide_row()], line_end="\r\n"))
    parser, rows = parse_all(data)
    assert parser.format == WIDE and len(rows) == 1


def test_gzip_is_read_from_a_stream_that_cannot_seek_or_peek():
    class Pipe(io.RawIOBase):
        """Hands out at most 3 bytes per read, like a slow socket."""

        def __init__(self, data: bytes) -> None:
            self._data = data

        def readable(self) -> bool:
            return True

        def read(self, n: int = -1) -> bytes:
            n = 3 if n < 0 else min(n, 3)
            chunk, self._data = self._data[:n], self._data[n:]
            return chunk

    data = gzip.compress(long_csv([long_row(value=str(i)) for i in range(50)]))
    parser = Parser(open_text(Pipe(data)))  # type: ignore[arg-type]
    assert [r.values[0][1] for r in parser] == [float(i) for i in range(50)]


@pytest.mark.parametrize(
    ("name", "compress"), [("metrics.csv.gz", False), ("metrics.csv", True), ("upload", True)]
)
def test_gzip_is_decided_by_the_bytes_not_the_file_name(name, compress):
    data = long_csv([long_row(value="3")])
    raw = io.BytesIO(gzip.compress(data) if compress else data)
    raw.name = name  # type: ignore[attr-defined]
    rows = list(Parser(open_text(raw)))
    assert [r.values for r in rows] == [[("DCGM_FI_DEV_GPU_UTIL", 3.0)]]


def test_header_that_fits_neither_format_names_the_missing_columns():
    error = refused(b"time,metric,gpu,val\n1,2,3,4\n")
    message = str(error)
    assert "timestamp, metric_name, uuid, hostname, value" in message
    assert "timestamp, uuid, hostname" in message


def test_header_missing_only_some_long_columns_names_exactly_those():
    header = [name for name in LONG_HEADER if name not in ("uuid", "value")]
    message = str(refused((",".join(header) + "\n").encode()))
    long_part = message.split("long format is missing ")[1].split(";")[0]
    assert long_part == "uuid, value"


def test_wide_header_without_metric_columns_is_refused_naming_that():
    message = str(refused(b"timestamp,uuid,hostname,gpu_id,device\n"))
    assert "at least one metric column" in message


def test_semicolon_separated_header_is_refused_and_shows_what_was_read():
    message = str(refused((";".join(LONG_HEADER) + "\n").encode()))
    assert "1 column" in message
    assert "timestamp;metric_name" in message


def test_empty_file_is_refused_as_empty():
    assert "empty" in str(refused(b""))


def test_file_with_only_blank_lines_is_refused_as_empty():
    assert "empty" in str(refused(b"\n\r\n   \n\n"))


def test_file_with_only_a_bom_is_refused_as_empty():
    assert "empty" in str(refused(b"\xef\xbb\xbf"))


def test_blank_lines_before_the_header_are_skipped():
    parser, rows = parse_all(b"\n\n" + long_csv([long_row()]))
    assert parser.format == LONG and len(rows) == 1


def test_header_only_file_has_no_rows():
    parser, rows = parse_all((",".join(LONG_HEADER) + "\n").encode())
    assert rows == [] and parser.rows_read == 0


def test_png_is_refused_with_header_error():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00" + bytes(range(256)) * 4
    refused(png)


@pytest.mark.parametrize("seed", range(25))
def test_random_bytes_are_refused_with_header_error(seed):
    rng = random.Random(seed)
    data = bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 5000)))
    refused(data)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_behind_gzip_magic_are_refused_with_header_error(seed):
    rng = random.Random(seed)
    refused(b"\x1f\x8b" + bytes(rng.getrandbits(8) for _ in range(2000)))


def test_gzip_truncated_before_the_header_is_refused_with_header_error():
    data = gzip.compress(long_csv([long_row()]))
    message = str(refused(data[:15]))
    assert "gzip" in message and "truncated" in message


def test_gzip_with_corrupt_data_is_refused_with_header_error():
    data = bytearray(gzip.compress(long_csv([long_row()] * 20)))
    data[12:40] = bytes(28)
    assert "gzip" in str(refused(bytes(data)))


def test_header_longer_than_the_field_limit_is_refused_with_header_error():
    message = str(refused(b"a" * 70_000 + b"\n"))
    assert "not valid CSV" in message


def test_header_error_is_a_value_error():
    assert issubclass(HeaderError, ValueError)
