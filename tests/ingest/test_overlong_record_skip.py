"""After refusing an over-long row or field, the parser skips to the end of that record."""

from __future__ import annotations

import io

from apps.ingest.parsing import MAX_FIELD, Parser, open_text
from tests.ingest.ingest_support import LONG_HEADER, check_counts, csv_text, long_csv, long_row

INTRUDER = "GPU-00000000-0000-0000-0000-00000000dead"


def row_shaped_lines(count: int) -> str:
    """Text that reads as rows of a GPU no row names, if parsed outside its quotes."""
    line = csv_text(None, [long_row(uuid=INTRUDER, value="666", labels_raw="")], quote_all=False)
    assert '"' not in line  # inside a quoted field, these lines do not end it
    return line * count


def parse(data: bytes, max_line: int) -> tuple[Parser, list]:
    parser = Parser(open_text(io.BytesIO(data)), max_line=max_line)  # type: ignore[arg-type]
    rows = list(parser)
    check_counts(parser, rows)
    return parser, rows


def test_row_shaped_lines_inside_an_over_long_quoted_field_never_become_rows():
    inside = row_shaped_lines(40)  # about 16 kB, many lines, each short
    data = long_csv([long_row(value="1"), long_row(labels_raw=inside), long_row(value="2")])
    parser, rows = parse(data, max_line=4000)
    assert INTRUDER not in {r.uuid for r in rows}
    assert [r.values[0][1] for r in rows] == [1.0, 2.0]
    (error,) = parser.errors
    assert error.line == 3
    assert "longer than 4000 characters" in error.message
    # the row after it keeps its own line number
    assert parser.rows_read == 3


def test_row_shaped_lines_inside_a_field_past_the_field_limit_never_become_rows():
    inside = "x" * MAX_FIELD + "\n" + row_shaped_lines(3)
    data = long_csv([long_row(labels_raw=inside), long_row(value="2")])
    parser, rows = parse(data, max_line=10 * MAX_FIELD)
    assert [r.uuid for r in rows] == [long_row()[4]]
    assert "field larger than field limit" in parser.errors[0].message
    assert parser.errors[0].line == 2


def test_one_endless_line_is_skipped_in_pieces_and_the_next_row_is_read():
    data = long_csv([long_row(container="y" * 50_000), long_row(value="5")])
    parser, rows = parse(data, max_line=1000)
    assert [r.values[0][1] for r in rows] == [5.0]
    assert [e.line for e in parser.errors] == [2]


def test_doubled_quotes_and_commas_inside_the_skipped_field_do_not_end_it_early():
    inside = ('a,"",b\n' + row_shaped_lines(1)) * 30
    data = long_csv([long_row(labels_raw=inside), long_row(value="3")])
    parser, rows = parse(data, max_line=2000)
    assert [r.values[0][1] for r in rows] == [3.0]
    assert INTRUDER not in {r.uuid for r in rows}
    # the next row's line: 1 header + the lines of the skipped record
    assert parser.errors[0].line == 2


def test_an_unterminated_quote_skips_to_the_end_of_the_file():
    text = ",".join(LONG_HEADER) + "\n" + '"' + "z" * 3000 + "\n" + row_shaped_lines(5)
    parser, rows = parse(text.encode(), max_line=1000)
    assert rows == []
    assert (parser.rows_read, parser.rejected) == (1, 1)
