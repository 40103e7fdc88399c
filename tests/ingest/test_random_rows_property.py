"""Property-style: seeded random files, some rows bad, parsed to exactly the expected result."""

from __future__ import annotations

import csv
import gzip
import io
import random
from datetime import UTC, datetime, timedelta, timezone

import pytest

from tests.ingest.ingest_support import LONG_HEADER, labels_raw, long_row, parse_all

T_MIN = 946_684_800_000  # 2000-01-01
T_MAX = 4_102_444_800_000  # 2100-01-01
HOSTS = [f"node-{i:02d}" for i in range(5)]
UUIDS = [f"GPU-{i:08x}-0000-4000-8000-{i * 7919:012x}" for i in range(12)]
METRICS = ["DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_POWER_USAGE", "X_Y"]

BAD_KINDS = {
    "value_text": ("value", lambda rng: rng.choice(["abc", "1,5", "--1", "0x1f", "12 13"])),
    "value_empty": ("value", lambda rng: rng.choice(["", "  "])),
    "value_nonfinite": ("value", lambda rng: rng.choice(["nan", "NaN", "inf", "-inf", "1e999"])),
    "ts_garbage": ("timestamp", lambda rng: rng.choice(["now", "2025-99-01T00:00:00Z", "x"])),
    "ts_before_1970": ("timestamp", lambda rng: rng.choice(["1969-07-20T20:17:00Z", "-5"])),
    "uuid_missing": ("uuid", lambda rng: ""),
    "uuid_slash": ("uuid", lambda rng: "GPU-1/2"),
    "uuid_nul": ("uuid", lambda rng: "GPU-\x00"),
    "host_dotdot": ("Hostname", lambda rng: ".."),
    "host_missing": ("Hostname", lambda rng: ""),
}


def random_timestamp(rng: random.Random) -> tuple[str, int]:
    """A timestamp in one of the accepted forms, and the millisecond it means."""
    ms = rng.randrange(T_MIN, T_MAX)
    form = rng.randrange(6)
    if form == 0:
        return f"{ms // 1000}.{ms % 1000:03d}", ms
    if form == 1:
        return str(ms), ms  # epoch milliseconds
    if form == 2:
        return str(ms // 1000), ms // 1000 * 1000
    offset = timedelta(minutes=rng.choice([0, 120, -330, 345, -720]))
    utc = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ms // 1000)
    local = utc.astimezone(timezone(offset))
    base = local.strftime("%Y-%m-%d" + rng.choice(["T", " "]) + "%H:%M:%S")
    digits = rng.randint(3, 9)
    fraction = f"{ms % 1000:03d}" + "".join(rng.choice("0123456789") for _ in range(digits - 3))
    zone = "Z" if offset == timedelta(0) and form == 3 else local.strftime("%z")
    zone = zone[:3] + ":" + zone[3:] if zone != "Z" else zone
    if form == 5 and offset == timedelta(0):
        zone = ""  # naive: UTC
    return f"{base}.{fraction}{zone}", ms


def random_value(rng: random.Random) -> tuple[str, float]:
    value = rng.choice([float(rng.randrange(0, 101)), rng.uniform(-1e6, 1e6), rng.random()])
    text = repr(value) if rng.random() < 0.8 else f" {value!r} "
    return text, value


def random_file(seed: int, n: int = 200) -> tuple[bytes, list[tuple], list[tuple[int, str]], int]:
    """CSV bytes; expected accepted (uuid, host, ts, values); (line, kind) of each bad row;
    how many blank lines were put between rows."""
    rng = random.Random(seed)
    line_end = rng.choice(["\n", "\r\n"])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator=line_end, quoting=csv.QUOTE_ALL)
    out.write(",".join(LONG_HEADER) + line_end)
    line = 2
    expected: list[tuple] = []
    bad: list[tuple[int, str]] = []
    blanks = 0
    for _ in range(n):
        while rng.random() < 0.05:
            out.write(line_end)
            line += 1
            blanks += 1
        uuid, host = rng.choice(UUIDS), rng.choice(HOSTS)
        ts_text, ts = random_timestamp(rng)
        value_text, value = random_value(rng)
        metric = rng.choice(METRICS)
        note = rng.choice(["", "plain", 'with "quotes", and commas', "two\nlines", "a\r\nb"])
        fields = long_row(
            timestamp=ts_text,
            metric_name=metric,
            uuid=uuid,
            Hostname=host,
            value=value_text,
            container=note,
            labels_raw=labels_raw(uuid, host, note=note.replace('"', '\\"')),
        )
        kind = rng.choice(list(BAD_KINDS)) if rng.random() < 0.25 else None
        if kind is not None:
            column, make = BAD_KINDS[kind]
            fields[LONG_HEADER.index(column)] = make(rng)
            bad.append((line, kind))
        elif rng.random() < 0.03:
            fields = fields[: rng.randrange(2, len(fields))]
            bad.append((line, "field_count"))
        else:
            expected.append((uuid, host, ts, [(metric, value)]))
        writer.writerow(fields)
        line += 1 + sum(f.count("\n") for f in fields)
    return out.getvalue().encode(), expected, bad, blanks


@pytest.mark.parametrize("seed", range(20))
def test_random_file_parses_to_exactly_the_expected_rows_and_errors(seed):
    data, expected, bad, _ = random_file(seed)
    parser, rows = parse_all(data, max_errors=1000)
    assert parser.rows_read == 200
    assert (parser.accepted, parser.rejected) == (len(expected), len(bad))
    assert [(r.uuid, r.host, r.ts, r.values) for r in rows] == expected
    assert [e.line for e in parser.errors] == [line for line, _ in bad]


@pytest.mark.parametrize("seed", range(20, 25))
def test_random_file_gzipped_parses_the_same(seed):
    data, expected, bad, _ = random_file(seed)
    parser, rows = parse_all(gzip.compress(data), max_errors=1000)
    assert [(r.uuid, r.host, r.ts, r.values) for r in rows] == expected
    assert [e.line for e in parser.errors] == [line for line, _ in bad]


def test_random_files_contain_every_kind_of_bad_row_and_some_blank_lines():
    # Guards the generator: the properties above must exercise what they claim to.
    kinds, blanks, multiline = set(), 0, 0
    for seed in range(20):
        data, _expected, bad, blank = random_file(seed)
        kinds |= {kind for _, kind in bad}
        blanks += blank
        multiline += data.count(b"two\nlines")
    assert kinds == {*BAD_KINDS, "field_count"}
    assert blanks > 0 and multiline > 0


def test_random_file_facts_carry_the_escaped_label():
    data, _expected, _, _ = random_file(3)
    parser, rows = parse_all(data)
    for r in rows:
        note = r.fields[LONG_HEADER.index("container")]
        assert parser.facts(r, "c")["labels"]["note"] == note
