"""Bad rows are rejected one by one, with their line and a message naming the problem."""

from __future__ import annotations

import gzip

import pytest

from apps.ingest.parsing import MAX_FIELD, RowError
from tests.ingest.ingest_support import (
    LONG_HEADER,
    UUID,
    csv_text,
    error_lines,
    long_csv,
    long_row,
    parse_all,
)


def one_bad_row(bad: list[str]) -> tuple[int, RowError]:
    """Parse good, bad, good (lines 2, 3, 4); return the accepted count and the one error."""
    parser, rows = parse_all(long_csv([long_row(value="1"), bad, long_row(value="2")]))
    assert [r.values[0][1] for r in rows] == [1.0, 2.0]
    assert parser.rejected == 1
    (error,) = parser.errors
    assert error.line == 3
    return len(rows), error


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ({"value": "abc"}, ["'abc'", "not a number"]),
        ({"value": "12,5"}, ["not a number"]),
        ({"value": ""}, ["value", "empty"]),
        ({"value": "   "}, ["value", "empty"]),
        ({"value": "NaN"}, ["not a finite number"]),
        ({"value": "nan"}, ["not a finite number"]),
        ({"value": "inf"}, ["not a finite number"]),
        ({"value": "-Infinity"}, ["not a finite number"]),
        ({"value": "1e400"}, ["'1e400'", "too large for a 64-bit float"]),
        ({"timestamp": "yesterday"}, ["timestamp", "'yesterday'"]),
        ({"timestamp": ""}, ["timestamp is empty"]),
        ({"timestamp": "2025-13-40T99:00:00Z"}, ["timestamp"]),
        ({"timestamp": "1969-12-31T23:59:59Z"}, ["before 1970"]),
        ({"timestamp": "9999-12-31T00:00:00Z"}, ["after 2286"]),
        ({"timestamp": "99999999999"}, ["after 2286"]),
        ({"uuid": ""}, ["uuid is missing"]),
        ({"uuid": "   "}, ["uuid is missing"]),
        ({"Hostname": ""}, ["hostname is missing"]),
        ({"uuid": "GPU-1/../x"}, ["uuid", "'/'"]),
        ({"uuid": ".."}, ["uuid", "not allowed"]),
        ({"Hostname": ".."}, ["hostname", "not allowed"]),
        ({"Hostname": "."}, ["hostname", "not allowed"]),
        ({"Hostname": "a/b"}, ["hostname", "'/'"]),
        ({"uuid": "GPU-" + "x" * 300}, ["uuid", "longer than"]),
        ({"uuid": "GPU-\x00-1"}, ["uuid", "control character"]),
        ({"Hostname": "host\x00"}, ["hostname", "control character"]),
        ({"Hostname": "host\x7f"}, ["hostname", "control character"]),
        ({"value": "1\x00"}, ["not a number"]),
        ({"metric_name": ""}, ["metric_name is missing"]),
        ({"metric_name": "M" * 201}, ["metric_name", "too long"]),
        ({"metric_name": "DCGM\tX"}, ["metric_name", "not printable"]),
    ],
)
def test_bad_field_is_rejected_with_its_line_number_and_a_message(override, words):
    _, error = one_bad_row(long_row(**override))
    for word in words:
        assert word in error.message, (word, error.message)


def test_row_with_too_few_fields_is_rejected_naming_the_counts():
    _, error = one_bad_row(long_row()[:-1])
    assert error.message == "expected 12 fields, found 11"


def test_row_with_too_many_fields_is_rejected_naming_the_counts():
    _, error = one_bad_row([*long_row(), "extra"])
    assert error.message == "expected 12 fields, found 13"


def test_row_of_one_word_is_rejected_as_wrong_field_count():
    _, error = one_bad_row(["garbage"])
    assert "found 1" in error.message


def test_nul_byte_in_a_field_nobody_reads_does_not_break_the_row():
    _parser, rows = parse_all(long_csv([long_row(container="c\x00ntainer")]))
    assert len(rows) == 1


def test_field_longer_than_max_field_is_rejected_and_parsing_goes_on():
    huge = "x" * (MAX_FIELD + 1)
    _, error = one_bad_row(long_row(container=huge))
    assert "field larger than field limit" in error.message


def test_field_of_exactly_max_field_characters_is_accepted():
    _parser, rows = parse_all(long_csv([long_row(container="x" * MAX_FIELD)]))
    assert len(rows) == 1


def test_long_garbage_in_a_message_is_cut_short():
    _, error = one_bad_row(long_row(value="9" * 30 + "z" * 10_000))
    assert len(error.message) < 200
    _, error = one_bad_row(long_row(timestamp="2025" + "z" * 10_000))
    assert len(error.message) < 200


def test_unterminated_quote_at_the_end_of_the_file_is_rejected_not_raised():
    text = long_csv([long_row()]).decode() + '"2025-07-18T20:42:34Z","DCGM_X,"oops\n'
    parser, rows = parse_all(text.encode())
    assert (len(rows), parser.rejected) == (1, 1)
    assert error_lines(parser) == [3]


def test_every_kind_of_bad_row_among_good_rows_keeps_the_good_ones_and_all_lines():
    bad = [
        long_row(value="x"),
        long_row(value="nan"),
        long_row(timestamp="soon"),
        long_row(uuid=""),
        long_row(Hostname=""),
        long_row()[:5],
        long_row(uuid="a/b"),
        long_row(Hostname=".."),
        long_row(uuid="G\x00"),
        long_row(container="y" * (MAX_FIELD + 10)),
    ]
    rows: list[list[str]] = []
    bad_lines = []
    for i, row in enumerate(bad):
        rows.append(long_row(value=str(i)))
        rows.append(row)
        bad_lines.append(len(rows) + 1)  # +1: the header is line 1
    rows.append(long_row(value="99"))
    parser, accepted = parse_all(long_csv(rows))
    assert [r.values[0][1] for r in accepted] == [float(i) for i in range(len(bad))] + [99.0]
    assert (parser.rows_read, parser.rejected) == (len(rows), len(bad))
    assert error_lines(parser) == bad_lines
    assert all(e.message for e in parser.errors)


def test_errors_are_capped_at_max_errors_while_counts_go_on():
    rows = [long_row(value="bad") if i % 2 else long_row(value=str(i)) for i in range(100)]
    parser, _accepted = parse_all(long_csv(rows), max_errors=5)
    assert (parser.rows_read, parser.accepted, parser.rejected) == (100, 50, 50)
    assert len(parser.errors) == 5
    assert error_lines(parser) == [3, 5, 7, 9, 11]  # the first ones


def test_max_errors_zero_keeps_no_messages_but_counts():
    parser, _accepted = parse_all(long_csv([long_row(value="x")] * 3), max_errors=0)
    assert (parser.rejected, parser.errors) == (3, [])


def test_blank_and_whitespace_lines_are_not_rows():
    text = long_csv([long_row()]).decode() + "\n   \n\t\n" + csv_text(None, [long_row()])
    parser, rows = parse_all(text.encode())
    assert (parser.rows_read, len(rows)) == (2, 2)


def test_row_of_empty_fields_is_a_rejected_row_not_a_blank_line():
    parser, _rows = parse_all(long_csv([[""] * len(LONG_HEADER)]))
    assert (parser.rows_read, parser.rejected) == (1, 1)


def test_truncated_gzip_keeps_the_rows_before_and_reports_the_damage_at_its_line():
    rows = [long_row(value=str(i)) for i in range(5000)]
    data = gzip.compress(long_csv(rows), mtime=0)
    parser, accepted = parse_all(data[: len(data) // 2])
    assert 0 < len(accepted) < 5000
    assert [r.values[0][1] for r in accepted] == [float(i) for i in range(len(accepted))]
    (error,) = parser.errors
    assert "gzip" in error.message and "truncated" in error.message
    assert error.line == len(accepted) + 2  # the first line not read completely


def test_gzip_damage_is_reported_even_when_the_error_list_is_full():
    rows = [long_row(value="bad" if i < 10 else str(i)) for i in range(5000)]
    data = gzip.compress(long_csv(rows), mtime=0)
    parser, _accepted = parse_all(data[: len(data) // 2], max_errors=3)
    assert len(parser.errors) == 3
    assert error_lines(parser)[:2] == [2, 3]
    assert "truncated" in parser.errors[-1].message


def test_corrupt_gzip_in_the_middle_ends_the_parse_with_a_rejected_row():
    rows = [long_row(value=str(i)) for i in range(5000)]
    data = bytearray(gzip.compress(long_csv(rows), mtime=0))
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(64)
    parser, accepted = parse_all(bytes(data))
    assert 0 < len(accepted) < 5000
    assert parser.rejected >= 1
    assert "gzip" in parser.errors[-1].message


def test_uuid_check_is_not_skipped_for_a_bad_host_after_a_good_uuid():
    # The parser remembers checked uuids and hosts: a known uuid must not let a bad host in.
    parser, rows = parse_all(long_csv([long_row(), long_row(Hostname="x/y"), long_row(uuid=UUID)]))
    assert len(rows) == 2
    assert error_lines(parser) == [3]
