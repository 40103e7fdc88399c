"""Timestamps: RFC 3339 / ISO 8601 and epoch seconds or milliseconds into epoch ms UTC."""

from __future__ import annotations

import random

import pytest

from store.keys import MAX_TS
from tests.ingest.ingest_support import TS_MS, long_csv, long_row, parse_all
from timeparse.timestamps import (
    EPOCH_MS_THRESHOLD,
    TimestampCache,
    format_timestamp,
    parse_timestamp,
)

# 2025-07-18T20:42:34Z
T = TS_MS


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("2025-07-18T20:42:34Z", T),
        ("2025-07-18T20:42:34+00:00", T),
        ("2025-07-18T22:42:34+02:00", T),
        ("2025-07-18T15:12:34-05:30", T),
        ("2025-07-19T01:42:34+05:00", T),
        ("2025-07-18t20:42:34z", T),
        ("2025-07-18T20:42:34", T),  # naive: UTC assumed
        ("2025-07-18 20:42:34", T),
        ("2025-07-18 20:42:34Z", T),
        ("  2025-07-18T20:42:34Z  ", T),
        ("1970-01-01T00:00:00Z", 0),
        ("2025-07-18", T - (20 * 3600 + 42 * 60 + 34) * 1000),
    ],
)
def test_rfc3339_forms_are_read_as_utc_milliseconds(text, ms):
    assert parse_timestamp(text) == ms


@pytest.mark.parametrize(
    ("fraction", "extra_ms"),
    [
        ("1", 100),
        ("12", 120),
        ("123", 123),
        ("1234", 123),
        ("12345", 123),
        ("123456", 123),
        ("1234567", 123),
        ("12345678", 123),
        ("123456789", 123),
        ("999999999", 999),
        ("000000001", 0),
    ],
)
def test_fractions_of_one_to_nine_digits_are_floored_to_the_millisecond(fraction, extra_ms):
    assert parse_timestamp(f"2025-07-18T20:42:34.{fraction}Z") == T + extra_ms
    assert parse_timestamp(f"2025-07-18T22:42:34.{fraction}+02:00") == T + extra_ms


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("1752871354", T),
        ("+1752871354", T),
        ("1752871354.0", T),
        ("1752871354.123", T + 123),
        ("1752871354.1239", T + 123),  # floored, never rounded up
        ("1752871354.999999", T + 999),
        ("1.752871354e9", T),
        ("1.752871354123E9", T + 123),
        ("17528713541.23e-1", T + 123),
        ("0", 0),
        ("0.5", 500),
        (".5", 500),
        ("1752871354123", T + 123),  # epoch milliseconds
        ("1.752871354123e12", T + 123),
        (str(EPOCH_MS_THRESHOLD), EPOCH_MS_THRESHOLD),  # at the threshold: milliseconds
        (str(EPOCH_MS_THRESHOLD - 1), (EPOCH_MS_THRESHOLD - 1) * 1000),  # below: seconds
    ],
)
def test_epoch_seconds_and_milliseconds_are_read_exactly(text, ms):
    assert parse_timestamp(text) == ms


@pytest.mark.parametrize(
    "text",
    [
        "1969-12-31T23:59:59Z",
        "1969-12-31T23:59:59.999Z",
        "1970-01-01T01:00:00+02:00",
        "0001-01-01T00:00:00Z",
        "-1",
        "-0.001",
        "-1752871354",
    ],
)
def test_times_before_1970_are_rejected(text):
    with pytest.raises(ValueError, match="before 1970"):
        parse_timestamp(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "yesterday",
        "nan",
        "NaN",
        "inf",
        "-inf",
        "1e999",
        "1e16",
        "0x10",
        "1_752_871_354",
        "2025-07-18T20:42:34ZZ",
        "2025-07-18T25:00:00Z",
        "2025-02-30T00:00:00Z",
        "2025/07/18 20:42:34",
        "18.07.2025 20:42",
        "Fri, 18 Jul 2025 20:42:34 GMT",
        "2025-07-18T20:42:34+2",
        "\x00",
        "\ufffd\ufffd",
    ],
)
def test_garbage_timestamps_are_rejected_with_value_error(text):
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


def test_extreme_iso_offsets_do_not_raise_anything_but_value_error():
    assert parse_timestamp("9999-12-31T23:59:59-23:59") > MAX_TS
    with pytest.raises(ValueError):
        parse_timestamp("0001-01-01T00:00:00+23:59")


def test_error_message_quotes_the_text_cut_short():
    with pytest.raises(ValueError) as info:
        parse_timestamp("z" * 100_000)
    assert len(str(info.value)) < 200


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (T, "2025-07-18T20:42:34Z"),
        (T + 5, "2025-07-18T20:42:34.005Z"),
        (T + 120, "2025-07-18T20:42:34.120Z"),
        (T + 999, "2025-07-18T20:42:34.999Z"),
        (0, "1970-01-01T00:00:00Z"),
        (MAX_TS, "2286-11-20T17:46:39.999Z"),
    ],
)
def test_format_timestamp_shows_milliseconds_only_when_not_zero(ms, text):
    assert format_timestamp(ms) == text


def test_format_then_parse_round_trips_every_millisecond_value():
    rng = random.Random(7)
    samples = [0, 1, 999, 1000, T, T + 1, MAX_TS] + [rng.randrange(MAX_TS) for _ in range(2000)]
    for ms in samples:
        assert parse_timestamp(format_timestamp(ms)) == ms, ms


def test_cache_returns_the_same_as_parse_timestamp_and_remembers_only_good_times():
    cache = TimestampCache(size=4)
    texts = [f"2025-07-18T20:42:{s:02d}Z" for s in range(10)] * 3
    assert [cache(t) for t in texts] == [parse_timestamp(t) for t in texts]
    with pytest.raises(ValueError):
        cache("bad")
    with pytest.raises(ValueError):
        cache("bad")


def test_cache_with_a_bound_refuses_later_times_every_time():
    cache = TimestampCache(max_ms=T)
    assert cache("2025-07-18T20:42:34Z") == T
    for _ in range(2):
        with pytest.raises(ValueError, match="after 2025-07-18T20:42:34Z"):
            cache("2025-07-18T20:42:35Z")


def test_parser_rejects_times_the_store_cannot_key():
    rows = [
        long_row(timestamp=format_timestamp(MAX_TS)),
        long_row(timestamp="2286-11-20T17:46:40Z"),
        long_row(timestamp="9999-12-31T23:59:59Z"),
    ]
    parser, accepted = parse_all(long_csv(rows))
    assert [r.ts for r in accepted] == [MAX_TS]
    assert [e.line for e in parser.errors] == [3, 4]


@pytest.mark.parametrize(
    "text",
    [
        "2025-07-18T20:42:34Z",
        "2025-07-18T22:42:34+02:00",
        "1752871354",
        "1752871354000",
        "1.7528713540e9",
    ],
)
def test_every_timestamp_form_reaches_the_row_as_the_same_millisecond(text):
    _parser, rows = parse_all(long_csv([long_row(timestamp=text)]))
    assert rows[0].ts == T
