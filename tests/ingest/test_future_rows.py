"""Rows stamped too far ahead of the parsing process's clock are refused, each with its reason."""

from __future__ import annotations

import io

from apps.ingest.parsing import Parser, open_text
from tests.ingest.ingest_support import TS_MS, check_counts, long_csv, long_row

NOW = TS_MS / 1000  # the clock the parser is given: the sample rows' own time


def parse(rows: list[list[str]], max_future: float | None = 300.0) -> Parser:
    data = long_csv(rows)
    parser = Parser(open_text(io.BytesIO(data)), max_future=max_future, clock=lambda: NOW)  # type: ignore[arg-type]
    accepted = list(parser)
    check_counts(parser, accepted)
    parser.accepted_rows = accepted  # type: ignore[attr-defined]
    return parser


def test_a_row_more_than_max_future_ahead_is_rejected_with_the_reason():
    parser = parse(
        [
            long_row(timestamp="2025-07-18T20:42:34Z", value="1"),
            long_row(timestamp="2025-07-18T20:47:34Z", value="2"),  # exactly 5 minutes ahead
            long_row(timestamp="2025-07-18T20:47:35Z", value="3"),
            long_row(timestamp="2100-01-01T00:00:00Z", value="4"),
        ]
    )
    assert [r.values[0][1] for r in parser.accepted_rows] == [1.0, 2.0]  # type: ignore[attr-defined]
    assert [e.line for e in parser.errors] == [4, 5]
    message = parser.errors[1].message
    assert "'2100-01-01T00:00:00Z'" in message
    assert "more than 5m ahead of this server's clock (INGEST_MAX_FUTURE)" in message


def test_a_repeated_future_time_is_refused_every_time_not_only_the_first():
    future = "2025-07-18T21:00:00Z"
    parser = parse([long_row(timestamp=future, value=str(i)) for i in range(5)])
    assert (parser.accepted, parser.rejected) == (0, 5)


def test_a_known_gpu_and_metric_on_the_fast_path_is_checked_too():
    rows = [long_row(value="1"), long_row(timestamp="1752875000", value="2")]
    parser = parse(rows)
    assert (parser.accepted, parser.rejected) == (1, 1)


def test_without_a_limit_future_rows_are_read():
    parser = parse([long_row(timestamp="2100-01-01T00:00:00Z")], max_future=None)
    assert parser.accepted == 1
