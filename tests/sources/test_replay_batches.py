"""The streamer's replay logic without services: batches, passes, shards, stamps, status."""

from __future__ import annotations

import io
import zlib
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest

from apps.ingest.columnar import ColumnBatch
from apps.ingest.formats import HeaderError
from apps.ingest.parsing import Parser, Row, open_text
from apps.ingest.scraping import Backoff, normalize_url
from apps.ingest.streaming import NoRowsInShard, Progress, Replay, Shard, repeats, stamp
from tools.generate_sample import write


@pytest.fixture
def csv_file(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "replay.csv"
    return path, write(path, hosts=3, gpus_per_host=4, samples=5, seed=3)


def replay(path: Path, **kwargs) -> Replay:
    kwargs.setdefault("batch_size", 25)
    kwargs.setdefault("shard", Shard())
    kwargs.setdefault("loop", False)
    return Replay(path, cluster="c", **kwargs)


def key(row: Row) -> tuple:
    return (row.uuid, row.values[0][0], row.ts)


def test_one_pass_gives_every_row_once_in_batches_of_the_size(csv_file):
    path, rows = csv_file  # 3 hosts x 4 GPUs x 10 metrics x 5 times = 600 rows
    batches = list(replay(path, batch_size=70))
    assert [len(b.rows) for b in batches] == [70] * 8 + [40]  # the last one is short
    assert [b.number for b in batches] == list(range(1, 10))
    assert {b.pass_no for b in batches} == {1}
    assert sum(len(b.rows) for b in batches) == rows == 600
    assert len({key(r) for b in batches for r in b.rows}) == rows


def test_looping_starts_over_and_never_mixes_two_passes_in_a_batch(csv_file):
    path, _ = csv_file
    batches = list(islice(replay(path, batch_size=250, loop=True), 7))
    assert [(b.pass_no, len(b.rows)) for b in batches] == [
        (1, 250),
        (1, 250),
        (1, 100),
        (2, 250),
        (2, 250),
        (2, 100),
        (3, 250),
    ]
    first = [key(r) for b in batches[:3] for r in b.rows]
    second = [key(r) for b in batches[3:6] for r in b.rows]
    assert first == second


@pytest.mark.parametrize("count", [2, 3, 5])
def test_shards_together_send_each_row_exactly_once_and_keep_each_gpu_whole(csv_file, count):
    path, rows = csv_file
    seen: Counter = Counter()
    owner: dict[str, int] = {}
    for index in range(count):
        for batch in replay(path, shard=Shard(index, count)):
            for row in batch.rows:
                seen[key(row)] += 1
                assert owner.setdefault(row.uuid, index) == index
    assert sum(seen.values()) == rows
    assert set(seen.values()) == {1}


def test_the_shard_rule_is_stable_across_processes():
    # CRC-32 of the uuid: the same in every process (Python's hash() is not).
    uuid = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
    assert zlib.crc32(uuid.encode()) % 4 == 1
    assert [Shard(i, 4).owns(uuid) for i in range(4)] == [False, True, False, False]


@pytest.mark.parametrize("text", ["2/2", "-1/2", "a/b", "1", "0/0", "1/2/3"])
def test_bad_shards_are_refused(text):
    with pytest.raises(ValueError):
        Shard.parse(text)


def test_a_shard_with_no_gpu_in_the_file_is_an_error_not_a_spin(csv_file):
    path, _ = csv_file
    lonely = next(i for i in range(64) if not any(Shard(i, 64).owns(u) for u in uuids(path)))
    with pytest.raises(NoRowsInShard):
        list(islice(replay(path, shard=Shard(lonely, 64), loop=True), 3))


def uuids(path: Path) -> set[str]:
    return {r.uuid for b in replay(path) for r in b.rows}


def test_rejected_rows_are_counted_in_the_batch_being_filled(csv_file):
    path, rows = csv_file
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"2025-07-18T20:00:00Z"', '"not a time"', 1)
    path.write_text("\n".join(lines) + "\n")
    batches = list(replay(path, batch_size=100))
    assert batches[0].rejected == 1
    assert batches[0].errors[0].line == 4
    assert sum(b.rejected for b in batches[1:]) == 0
    assert sum(len(b.rows) for b in batches) == rows - 1


def test_a_bad_header_or_a_missing_file_is_refused_at_once(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    with pytest.raises(HeaderError):
        replay(bad)
    with pytest.raises(OSError):
        replay(tmp_path / "missing.csv")


def test_gzip_files_replay_too(tmp_path):
    path = tmp_path / "replay.csv.gz"
    rows = write(path, hosts=1, gpus_per_host=2, samples=3, seed=4)
    assert sum(len(b.rows) for b in replay(path)) == rows


def test_stamping_gives_the_whole_batch_one_time_and_counts_repeats():
    rows = [
        Row("g1", "h", 1, [("A", 1.0)], []),
        Row("g2", "h", 1, [("A", 2.0)], []),
        Row("g1", "h", 2, [("A", 3.0), ("B", 4.0)], []),
    ]
    stamped = stamp(rows, 99)
    assert [r.ts for r in stamped] == [99, 99, 99]
    assert [r.values for r in stamped] == [r.values for r in rows]
    assert repeats(rows) == 1  # g1/A twice: with one stamp only the last is kept


def test_backoff_doubles_from_the_interval_up_to_the_cap_and_resets():
    backoff = Backoff(interval=2.0, cap=30.0)
    assert [backoff.failure() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert backoff.success() == 2.0
    assert backoff.failure() == 2.0
    assert Backoff(interval=60.0, cap=30.0).failure() == 60.0  # never below the interval


@pytest.mark.parametrize(
    ("given", "url"),
    [
        ("node-1", "http://node-1:9400/metrics"),
        ("node-1:9500", "http://node-1:9500/metrics"),
        ("10.0.0.5:9400/", "http://10.0.0.5:9400/metrics"),
        ("http://node-1/metrics", "http://node-1/metrics"),
        ("https://node-1:8443/custom", "https://node-1:8443/custom"),
    ],
)
def test_endpoint_urls_get_the_exporter_defaults(given, url):
    assert normalize_url(given) == url


@pytest.mark.parametrize("given", ["ftp://node/metrics", "http://", "node:notaport"])
def test_bad_endpoint_urls_are_refused(given):
    with pytest.raises(ValueError):
        normalize_url(given)


class FakeTty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_status_is_a_plain_line_every_period_when_not_a_tty():
    out, err, clock = io.StringIO(), io.StringIO(), Clock()
    progress = Progress(out, err, label="stream x", live=False, every=10.0, clock=clock)
    clock.now += 2
    progress.count(rows=100)
    progress.show()
    assert out.getvalue() == ""  # not due yet
    clock.now += 8
    progress.show()
    assert out.getvalue() == "stream x: 100 rows sent, 10 rows/s, 0 errors\n"
    progress.note("something failed")
    assert err.getvalue() == "something failed\n"
    assert "\r" not in out.getvalue()


def test_the_status_is_rewritten_in_place_on_a_tty():
    out, err, clock = FakeTty(), io.StringIO(), Clock()
    progress = Progress(out, err, label="scrape", live=True, clock=clock, detail=lambda: "1/2 up")
    clock.now += 1
    progress.count(rows=50, errors=1)
    progress.show()
    assert out.getvalue() == "\rscrape: 50 rows sent, 50 rows/s, 1 errors, 1/2 up\x1b[K"
    progress.note("endpoint down")
    assert err.getvalue() == "endpoint down\n"
    line = "scrape: 50 rows sent, 50 rows/s, 1 errors, 1/2 up"
    assert out.getvalue().endswith(f"\r\x1b[K\r{line}\x1b[K")
    progress.finish()
    assert out.getvalue().endswith("\n")


@pytest.mark.parametrize("fmt", ["long", "wide"])
def test_replay_reads_with_the_uploads_parser_and_gives_the_row_parsers_rows(tmp_path, fmt):
    path = tmp_path / f"{fmt}.csv"
    write(path, hosts=2, gpus_per_host=3, samples=4, seed=5, fmt=fmt)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace("2025-07-18T20:00:00Z", "not a time", 1)  # one refused row
    path.write_text("\n".join(lines) + "\n")
    with open(path, "rb") as raw:
        parser = Parser(open_text(raw))
        want = sorted((r.uuid, r.ts, tuple(r.values)) for r in parser if r.values)
    assert parser.rejected == 1
    got, rejected = [], 0
    for index in range(2):
        for batch in replay(path, batch_size=7, shard=Shard(index, 2)):
            assert batch.count == len(batch.rows) <= 7  # a wide row's samples stay in one row
            assert isinstance(batch.parts[0], ColumnBatch)  # the columnar path, not rows
            got += [(r.uuid, r.ts, tuple(r.values)) for r in batch.rows]
            rejected += batch.rejected
    assert sorted(got) == want  # every row once, across the shards, with its values
    assert rejected == 2  # each shard counts the refused row
