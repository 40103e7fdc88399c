"""Replaying a CSV file as a live source: batches, shards, processing-time stamps.

Also the pieces `stream` and `scrape` share: the one-line live status and the
graceful stop on SIGTERM / Ctrl-C.

Shard rule: process i of n (`--shard i/n`) takes the rows whose GPU uuid hashes
to i (CRC-32 of the uuid, modulo n). Every process computes the same hash, so
together the n processes send each row of a pass exactly once, and all rows of
one GPU go through one process: that GPU's samples reach the workers in order
from a single clock, a chunk holds whole GPUs (bigger blocks), and no two
streamers race on the same GPU's latest values. Splitting by row index would
balance rows more evenly, but it scatters every GPU over all n streamers.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import zlib
from argparse import ArgumentParser
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from django.conf import settings
from django.core.management.base import CommandError

from apps.ingest.columnar import ColumnarParser, ColumnBatch
from apps.ingest.parsing import Parser, Row, RowError, RowFacts, open_binary, text_of
from timeparse.durations import parse_duration


def duration_option(text: str) -> float:
    """A command-line duration (`--interval 500ms`) in seconds; CommandError naming the problem."""
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def add_source_arguments(parser: ArgumentParser, *, doing: str, unit: str) -> None:
    """The options every live source command takes: cluster, job span, status output."""
    parser.add_argument("--cluster", default=None, help="cluster name (default TELEMETRY_CLUSTER)")
    parser.add_argument(
        "--job-span",
        default="1m",
        help=f"one ingest job per this much time of {doing}; 0: one job per {unit}",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="plain status lines, no live status"
    )
    parser.add_argument("--status-every", default="10s", help="time between plain status lines")


class NoRowsInShard(ValueError):
    """A whole pass over the file gave this streamer nothing to send."""


@dataclass(frozen=True)
class Shard:
    """This process's share of the rows: GPUs whose uuid hashes to `index` modulo `count`."""

    index: int = 0
    count: int = 1

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`i/n` with 0 <= i < n; ValueError otherwise."""
        try:
            index_text, count_text = text.split("/")
            index, count = int(index_text), int(count_text)
        except ValueError:
            raise ValueError(f"shard {text!r} is not i/n (for example 0/2)") from None
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {text!r}: need 0 <= i < n")
        return cls(index, count)

    def owns(self, uuid: str) -> bool:
        return self.count == 1 or zlib.crc32(uuid.encode()) % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


Part = Row | ColumnBatch  # what a batch holds: the columnar parser's samples, or rows


@dataclass
class Batch:
    """Up to `batch_size` rows of this shard, with the rows rejected while reading them.

    `parts` are what the parser yielded (slices of its ColumnBatches, cut between
    rows, and Row objects once the row parser reads), sent to the Chunker as they
    are; `count` is how many rows they hold. A row of DCGM blanks only holds no
    sample: the columnar parser accepts it but yields nothing of it, so it is not
    counted here (it is never sent).
    """

    parts: list[Part]
    count: int
    facts: RowFacts
    pass_no: int
    number: int
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    @property
    def rows(self) -> list[Row]:
        """The batch as one Row per row (ColumnBatch.as_rows): to look at a batch, not
        to send it (the parts are sent)."""
        return [row for part in self.parts for row in _rows_of(part)]


def _rows_of(part: Part) -> list[Row]:
    return [part] if isinstance(part, Row) else part.as_rows()


def _row_starts(part: ColumnBatch) -> np.ndarray:
    """Where each row's samples start (a wide row's samples share its line, in row order)."""
    if not len(part):
        return np.zeros(0, dtype=np.int64)
    return np.concatenate([[0], np.flatnonzero(np.diff(part.line)) + 1])


class Replay:
    """Iterate to get the file's rows as batches, pass after pass when `loop` is on.

    The file is read by the uploads' parser (apps/ingest/columnar.py: Arrow on every
    core, the row parser for what it doubts, same rules and messages; the row parser
    alone with INGEST_PARSER=rows) and opened
    again for every pass (a file replaced between passes is read anew); a GPU's
    facts come from its first row in the pass. The last batch of a pass may be
    short: a batch never mixes two passes. Rejected rows are counted in the batch
    that was being filled when they were read (the columnar parser judges a block
    of rows at once: its rejections land in the first batch cut from it; each shard
    counts them: a bad row may have no uuid). Raises HeaderError or OSError when
    constructed (the file is checked at once), and NoRowsInShard from a pass that
    gave this shard no row (looping would spin).
    """

    def __init__(
        self, path: Path, *, batch_size: int, shard: Shard, loop: bool, cluster: str
    ) -> None:
        if batch_size < 1:
            raise ValueError("the batch size must be at least 1")
        self.path = path
        self.batch_size = batch_size
        self.shard = shard
        self.loop = loop
        self.cluster = cluster
        with open(path, "rb") as raw:
            self.format = self._parser(raw).format

    def _parser(self, raw: Any) -> ColumnarParser | Parser:
        # the uploads' parser, and like them the row parser alone with INGEST_PARSER=rows
        binary = open_binary(raw)
        if settings.INGEST_PARSER == "rows":
            return Parser(text_of(binary), max_errors=settings.INGEST_MAX_ERRORS)
        return ColumnarParser(binary, max_errors=settings.INGEST_MAX_ERRORS)

    def __iter__(self) -> Iterator[Batch]:
        pass_no = 0
        while True:
            pass_no += 1
            rows = 0
            for batch in self._one_pass(pass_no):
                rows += batch.count
                yield batch
            if rows == 0:
                raise NoRowsInShard(
                    f"{self.path}: a whole pass gave shard {self.shard} no row to send"
                )
            if not self.loop:
                return

    def _one_pass(self, pass_no: int) -> Iterator[Batch]:
        with open(self.path, "rb") as raw:
            parser = self._parser(raw)
            cluster = self.cluster
            known: dict[str, dict] = {}

            def facts(row: Row) -> dict:
                # A small batch holds one row of many GPUs: read each GPU's facts
                # (labels parsed) once per pass, from its first row, not per batch.
                found = known.get(row.uuid)
                if found is None:
                    found = known[row.uuid] = parser.facts(row, cluster)
                return found

            owned: dict[str, bool] = {}

            def mine(uuid: str) -> bool:
                found = owned.get(uuid)
                if found is None:
                    found = owned[uuid] = self.shard.owns(uuid)
                return found

            parts: list[Part] = []
            count = 0
            number = 0
            rejected_before, errors_before = 0, 0

            def cut() -> Batch:
                nonlocal parts, count, number, rejected_before, errors_before
                number += 1
                batch = Batch(
                    parts,
                    count,
                    facts,
                    pass_no,
                    number,
                    parser.rejected - rejected_before,
                    parser.errors[errors_before:],
                )
                parts, count = [], 0
                rejected_before, errors_before = parser.rejected, len(parser.errors)
                return batch

            for item in parser:
                if isinstance(item, Row):
                    if mine(item.uuid):
                        parts.append(item)
                        count += 1
                        if count >= self.batch_size:
                            yield cut()
                    continue
                owns = np.array([mine(u) for u in item.uuids], dtype=bool)
                piece = item if owns.all() else item.without(~owns[item.gpu])
                starts = _row_starts(piece)
                at = 0
                while at < len(starts):
                    take = min(self.batch_size - count, len(starts) - at)
                    stop = int(starts[at + take]) if at + take < len(starts) else len(piece)
                    parts.append(piece.rows_at(int(starts[at]), stop))
                    count += take
                    at += take
                    if count >= self.batch_size:
                        yield cut()
            if parts or parser.rejected > rejected_before:
                yield cut()


def now_ms() -> int:
    return int(time.time() * 1000)


def stamp(parts: list[Part], ts: int) -> list[Part]:
    """The parts with their time replaced by `ts` (the whole batch gets one time)."""
    return [
        part._replace(ts=ts)
        if isinstance(part, Row)
        else replace(part, ts=np.full(len(part), ts, dtype=np.int64))
        for part in parts
    ]


def repeats(parts: list[Part]) -> int:
    """Samples of a GPU metric already in `parts`: one stamp for all keeps only the last."""
    seen: set[tuple[str, str]] = set()
    repeated = 0
    for part in parts:
        if isinstance(part, Row):
            pairs = [(part.uuid, name) for name, _ in part.values]
        else:
            pairs = [
                (part.uuids[g], part.names[m])
                for g, m in zip(part.gpu.tolist(), part.metric.tolist(), strict=True)
            ]
        for key in pairs:
            if key in seen:
                repeated += 1
            else:
                seen.add(key)
    return repeated


class Progress:
    """A one-line live status: rewritten in place (`\\r`) on a TTY, else a plain line
    every `every` seconds. Thread-safe; `note` prints a message above the status.

    `out` and `err` are text streams with Django's OutputWrapper `write(msg, ending)`
    or plain `write(text)`; `detail` adds command-specific words to the line.
    """

    WINDOW_S = 10.0

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        label: str,
        live: bool,
        every: float = 10.0,
        detail: Callable[[], str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rows = 0
        self.errors = 0
        self._out, self._err = out, err
        self._label = label
        self._live = live
        self._every = 0.25 if live else every
        self._detail = detail
        self._clock = clock
        self._lock = threading.Lock()
        self._started = clock()
        self._last_shown = self._started
        self._history: deque[tuple[float, int]] = deque([(self._started, 0)])
        self._drawn = False

    def count(self, rows: int = 0, errors: int = 0) -> None:
        with self._lock:
            self.rows += rows
            self.errors += errors
            now = self._clock()
            self._history.append((now, self.rows))
            while len(self._history) > 2 and now - self._history[1][0] > self.WINDOW_S:
                self._history.popleft()

    def rate(self) -> float:
        """Rows per second over about the last WINDOW_S seconds."""
        with self._lock:
            return self._rate()

    def line(self) -> str:
        with self._lock:
            return self._line()

    def show(self, force: bool = False) -> None:
        """Print the status when it is due (or now with `force`)."""
        with self._lock:
            now = self._clock()
            if not force and now - self._last_shown < self._every:
                return
            self._last_shown = now
            if self._live:
                _write(self._out, f"\r{self._line()}\x1b[K")
                self._drawn = True
            else:
                _write(self._out, self._line() + "\n")

    def note(self, message: str) -> None:
        """A message line (an error report) on `err`, above the live status."""
        with self._lock:
            if self._drawn:
                _write(self._out, "\r\x1b[K")
            _write(self._err, message + "\n")
            if self._drawn:
                _write(self._out, f"\r{self._line()}\x1b[K")

    def _rate(self) -> float:
        t0, r0 = self._history[0]
        elapsed = self._clock() - t0
        return (self.rows - r0) / elapsed if elapsed > 0 else 0.0

    def _line(self) -> str:
        text = (
            f"{self._label}: {self.rows:,} rows sent, {self._rate():,.0f} rows/s, "
            f"{self.errors:,} errors"
        )
        if self._detail is not None:
            text += f", {self._detail()}"
        return text

    def finish(self) -> None:
        """End the live line so what follows starts on a fresh line."""
        with self._lock:
            if self._live and self._drawn:
                _write(self._out, "\n")
                self._drawn = False

    @property
    def elapsed(self) -> float:
        return self._clock() - self._started


def _write(stream: Any, text: str) -> None:
    try:
        stream.write(text, ending="")  # Django's OutputWrapper adds "\n" otherwise
    except TypeError:
        stream.write(text)
    with contextlib.suppress(AttributeError, ValueError, OSError):
        stream.flush()


@contextlib.contextmanager
def stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGTERM and SIGINT call `stop` (finish the work in hand, then leave).

    A second Ctrl-C raises KeyboardInterrupt at once. Outside the main thread
    (a test calling the command from a thread) signals cannot be caught: nothing
    is installed and the caller stops the command through `stop` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    asked = threading.Event()

    def handler(signum: int, frame: object) -> None:
        if signum == signal.SIGINT and asked.is_set():
            raise KeyboardInterrupt
        asked.set()
        stop()

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
