"""Streaming CSV parsing: bytes in, validated rows out, bad rows reported by line.

Contract: every data row read is either yielded (accepted) or recorded as
rejected with its line number, so accepted + rejected == rows_read. Blank lines
are not rows. The header is validated before any row is read. See Parser for
how lines are numbered.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

from isal import igzip, isal_zlib

from apps.ingest.formats import (
    INSTANCE_COLUMN,
    INSTANCE_LABEL,
    LONG,
    MAX_METRIC_NAME,
    HeaderError,
    Layout,
    detect,
    gpu_uuid,
)
from apps.ingest.numbers import DCGM_INT32_BLANK as DCGM_BLANK_FLOOR
from apps.ingest.numbers import DECIMAL, NotANumber, is_blank, show
from apps.ingest.numbers import parse_value as _parse_number
from store.errors import Answer
from store.keys import MAX_TS, check_segment
from timeparse.timestamps import TimestampCache

__all__ = ["HeaderError", "Parser", "Row", "RowError", "open_text"]

_GZIP_MAGIC = b"\x1f\x8b"
# What a damaged gzip stream raises while it is read (never a plain OSError:
# a failing upload connection must not pass for a bad file).
_GZIP_ERRORS = (EOFError, zlib.error, isal_zlib.error, gzip.BadGzipFile)
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', re.DOTALL)
_LABEL_ESCAPE = re.compile(r"\\(.)", re.DOTALL)
# A field longer than this is a broken file, not telemetry.
MAX_FIELD = 64 * 1024
# uuids and hostnames already checked; cleared when full (each GPU repeats them).
_SEEN_SEGMENTS = 65536


class Row(NamedTuple):
    """One accepted row: its GPU, time, (metric, value) pairs, and raw fields for facts."""

    uuid: str
    host: str
    ts: int
    values: list[tuple[str, float]]
    fields: list[str]


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


RowFacts = Callable[[Row], dict]  # a row's GPU record facts (cluster, host, model, ...)


class RowRejected(ValueError):
    pass


class TooLarge(ValueError):
    """The input goes past a size limit (bytes uploaded, bytes decompressed, rows)."""

    answer = Answer(413, "TOO_LARGE")


# Decompressed bytes allowed before the ratio limit applies (a first small block).
_RATIO_ALLOWANCE = 1 << 16
# Compressed bytes handed to the decompressor per read: gzip asks for 128 KiB, and
# counting those before they are inflated would let a bomb expand 100 MB unchecked.
_TRICKLE = 8192


class _Trickle(io.RawIOBase):
    """Gives at most _TRICKLE bytes per read; `count` follows the bytes gzip takes."""

    def __init__(self, inner: BinaryIO) -> None:
        self._inner = inner
        self.count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(min(len(buf), _TRICKLE))
        self.count += len(data)
        buf[: len(data)] = data
        return len(data)


class _CappedReader(io.RawIOBase):
    """Refuses to give more than `limit` decompressed bytes, or more than `ratio` times
    the compressed bytes read so far (past a small allowance): gzip bombs stop here,
    the ratio one within the first kilobytes of a bomb."""

    def __init__(self, inner: BinaryIO, limit: int, ratio: int | None, source: _Trickle) -> None:
        self._inner = inner
        self._limit = limit
        self._ratio = ratio
        self._source = source
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        self._count += len(data)
        if self._count > self._limit:
            raise TooLarge(f"the file decompresses to more than the limit of {self._limit} bytes")
        ratio = self._ratio
        if ratio is not None and self._count > ratio * self._source.count + _RATIO_ALLOWANCE:
            raise TooLarge(
                f"the gzip data expands more than {ratio} times (INGEST_MAX_GZIP_RATIO): "
                "not telemetry, refused"
            )
        buf[: len(data)] = data
        return len(data)


def readinto_of(raw: Any) -> Callable[[Any], int | None] | None:
    """`raw`'s own readinto (a file's, a BytesIO's, Django's uploaded file's), which reads
    straight into the caller's buffer; None for a stream with only read() (io.RawIOBase's
    default readinto raises NotImplementedError)."""
    method = getattr(raw, "readinto", None)
    if method is None or getattr(type(raw), "readinto", None) is io.RawIOBase.readinto:
        return None
    return method  # type: ignore[no-any-return]


class _Peekable(io.RawIOBase):
    """Lets us look at the first bytes (gzip magic) of a stream that cannot seek."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""
        # large reads go straight into the reader's buffer: read() and a copy were two
        # of the four copies of every byte of a spooled upload
        self._readinto = readinto_of(raw)

    def _more(self, n: int) -> bytes:
        return self._raw.read(n)

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._more(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._readinto is not None:
            return self._readinto(buf) or 0
        data = self._more(len(buf))
        buf[: len(data)] = data
        return len(data)


def is_gzip(binary: BinaryIO) -> bool:
    """Whether `binary` (from open_binary) inflates gzip: its reads can fail midway."""
    return isinstance(binary, gzip.GzipFile) or isinstance(
        getattr(binary, "raw", None), _CappedReader
    )


def open_binary(
    raw: BinaryIO, max_decompressed: int | None = None, max_ratio: int | None = None
) -> BinaryIO:
    """The CSV bytes of `raw`: gzip detected by magic and inflated, within the limits.

    Gzip input that decompresses past `max_decompressed` bytes, or to more than
    `max_ratio` times the compressed bytes read (after the first 64 KiB), raises
    TooLarge when read there. A BOM is left in place (open_text drops it).
    """
    stream = _Peekable(raw)
    buffered: BinaryIO = io.BufferedReader(stream, buffer_size=1 << 16)
    if stream.peek(2) == _GZIP_MAGIC:
        source = _Trickle(buffered)
        # ISA-L's inflate: 3x zlib's speed (0.1 s of CPU for 128 MB of CSV, against 0.3 s)
        buffered = igzip.GzipFile(fileobj=source, mode="rb")  # type: ignore[assignment]
        if max_decompressed is not None or max_ratio is not None:
            limit = max_decompressed if max_decompressed is not None else 1 << 62
            capped = _CappedReader(buffered, limit, max_ratio, source)
            buffered = io.BufferedReader(capped, buffer_size=1 << 16)  # type: ignore[assignment]
    return buffered


def text_of(binary: BinaryIO, *, start: bool = True) -> io.TextIOWrapper:
    """Text of CSV bytes: UTF-8 (with or without BOM at the `start` of a file), any
    newline, bad bytes as U+FFFD."""
    encoding = "utf-8-sig" if start else "utf-8"
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")  # type: ignore[type-var]


def open_text(
    raw: BinaryIO, max_decompressed: int | None = None, max_ratio: int | None = None
) -> io.TextIOWrapper:
    """Text view of CSV bytes: gzip detected by magic, UTF-8 with or without BOM, any newline.

    Undecodable bytes become U+FFFD, so binary garbage ends as a header error or
    as rejected rows, never as an exception halfway through. Limits as open_binary.
    """
    return text_of(open_binary(raw, max_decompressed, max_ratio))


class _RecordTooLong(Exception):
    """Raised through csv.reader when a record passes the line limit (not a ValueError)."""


# States of the csv module's reader (default dialect, strict=False) that matter for
# finding where a record ends: only a quoted field carries a record over a line end.
_START, _UNQUOTED, _QUOTED, _QUOTE_IN_QUOTED = range(4)
_UNQUOTED_STOP = re.compile(r"[,\r\n]")


def _advance(text: str, state: int) -> int:
    """The reader's state after `text` read in `state` (jumps from one special
    character to the next: linear, and fast on long fields)."""
    pos, end = 0, len(text)
    while pos < end:
        if state == _QUOTED:
            quote = text.find('"', pos)
            if quote < 0:
                return _QUOTED
            state, pos = _QUOTE_IN_QUOTED, quote + 1
        elif state == _UNQUOTED:
            stop = _UNQUOTED_STOP.search(text, pos)
            if stop is None:
                return _UNQUOTED
            state, pos = _START, stop.end()
        else:
            char = text[pos]
            if state == _QUOTE_IN_QUOTED:
                # `""` is a quote inside the field; `,` or a line end ends it; text
                # after the closing quote goes on as an unquoted field (strict=False).
                state = _QUOTED if char == '"' else _START if char in ",\r\n" else _UNQUOTED
            elif char == '"':
                state = _QUOTED
            elif char not in ",\r\n":
                state = _UNQUOTED
                continue
            pos += 1
    return state


_BLANK_LINES = frozenset({"\n", "\r\n", "\r"})


class _Lines:
    """The physical lines of the text, fed to csv.reader one record at a time.

    Counts line ends (`count`); `start` is the line the last record began on
    (blank lines before it skipped). Refuses to read past `max_lines` of them (blank lines count:
    they cost reading too). A record longer than `limit` characters raises
    _RecordTooLong out of the reader; `skip_record` then reads on to where that
    record ends, as the csv module would have ended it, so nothing inside it is
    ever read as rows. `tick` is called every 1024 reads (the caller's budget).
    """

    def __init__(self, text: io.TextIOBase, limit: int, max_lines: int, tick: Any) -> None:
        self._readline = text.readline
        self._limit = limit
        self._max_lines = max_lines
        self._tick = tick
        self._reads = 0
        self.count = 0
        self.start = 1
        self._size = 0
        self._parts: list[str] = []

    def __iter__(self) -> _Lines:
        return self

    def begin(self) -> None:
        self._size = 0
        self._parts.clear()

    def _read(self) -> str:
        line = self._readline(self._limit + 1)
        self._reads += 1
        if not self._reads & 1023:
            self._tick()
        if line and line[-1] in "\r\n":
            self.count += 1
            if self.count > self._max_lines:
                raise TooLarge(
                    f"the file has more than {self._max_lines} lines (INGEST_MAX_ROWS; blank "
                    "and refused lines count too); split it, the rows before the limit are kept"
                )
        return line

    def __next__(self) -> str:
        if self._parts:
            line = self._read()
        else:
            # Blank lines between records are no rows: skipped here, cheaply (a file of
            # blank lines must not cost a csv record each). Inside a quoted field they
            # are data and go to the reader.
            self.start = self.count + 1
            line = self._read()
            while line in _BLANK_LINES:
                self.start = self.count + 1
                line = self._read()
        if not line:
            raise StopIteration
        self._parts.append(line)
        self._size += len(line)
        if self._size > self._limit:
            raise _RecordTooLong
        return line

    def skip_record(self) -> None:
        """Read to the end of the record whose lines were given out since `begin`."""
        state = _START
        for part in self._parts:
            state = _advance(part, state)
        last = self._parts[-1] if self._parts else "\n"
        while last[-1] not in "\r\n" or state == _QUOTED:
            last = self._read()
            if not last:
                return
            state = _advance(last, state)


def parse_value(text: str) -> float:
    """The value of a cell (numbers.parse_value), RowRejected when it is not one."""
    try:
        return _parse_number(text)
    except NotANumber as exc:
        raise RowRejected(str(exc)) from None


def parse_labels_raw(text: str) -> dict[str, str]:
    """The CSV's `labels_raw` cell, Prometheus-style `name="value",...` (CSV quoting already
    undone), into a dict. Lenient: what is not a label is skipped, a row is never refused for
    it (apps/ingest/exposition.py::parse_label_set is the strict one, for exposition text).

    Values are unescaped the Prometheus way: `\\"` is `"`, `\\\\` is `\\`, `\\n` a newline.
    """
    return {k: _LABEL_ESCAPE.sub(_unescape, v) if "\\" in v else v for k, v in _LABEL.findall(text)}


def _unescape(match: re.Match[str]) -> str:
    char = match[1]
    return "\n" if char == "n" else char


def _gzip_problem(exc: BaseException) -> str:
    if isinstance(exc, EOFError):
        return "the gzip data is truncated"
    return f"the gzip data is corrupt ({exc})"


def _gpu_index(text: str) -> int | None:
    """A GPU index as a number when it is a plain small one (`"²".isdigit()` is true too)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


def _show_duration(seconds: float) -> str:
    return f"{seconds / 60:g}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


@dataclass
class Parser:
    r"""Iterate to get accepted rows; counters and the first errors fill in as it goes.

    Line numbers (RowError.line) are the physical lines of the file as an editor
    shows them: the first line is 1 (usually the header) and every line end
    counts, `\n`, `\r\n` or a lone `\r`, including those inside a quoted field.
    A rejected row is reported at the line where it STARTS: a row whose quoted
    field holds a newline is reported at its first line, and the rows after it
    keep their own line numbers. A row longer than `max_line` characters, or
    that is not valid CSV, is rejected whole: reading goes on after its end (a
    quoted field's lines are never read as rows).

    gzip input found truncated or corrupt part way ends the parse: the rows
    before the damage go through, and the damage counts as one rejected row at
    the line where reading stopped; its error is kept even when `errors` is full
    (it replaces the last one). Damage before the header is a HeaderError.

    Limits raise TooLarge during iteration (rows before it were yielded): more
    than `max_lines` lines (every line counts, blank or refused), more than
    `max_cpu_seconds` of this thread's CPU time. With `max_future` (seconds), a
    row stamped later than `clock()` plus that is rejected. DCGM blank values
    (numbers.is_blank) are read as "no value": counted in `blank`, never yielded;
    a row left with no value but a blank one is accepted with no values.
    A MIG instance's row (`GPU_I_ID` in a column or in labels_raw) gets the
    instance's uuid (formats.gpu_uuid), as the scrape path names it.
    """

    text: io.TextIOBase
    max_errors: int = 20
    max_line: int = 256 * 1024
    max_metrics_per_gpu: int = 1000
    max_lines: int = 1 << 62
    max_cpu_seconds: float | None = None
    max_future: float | None = None
    clock: Any = time.time
    # Given a header layout, no header is read: `text` starts at line `line_offset` + 1
    # (how the columnar parser hands a part of a file to this one, the reference).
    header: Layout | None = None
    line_offset: int = 0
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    blank: int = 0
    errors: list[RowError] = field(default_factory=list)

    def __post_init__(self) -> None:
        csv.field_size_limit(MAX_FIELD)
        self._row_blank = 0
        self._cpu_start = time.thread_time()
        self._latest = MAX_TS
        self._tick()
        self.resume(self.text, self.line_offset)
        self._metrics_of: dict[str, set[str]] = {}
        self._good_metrics: set[str] = set()  # names already validated
        self._ts = TimestampCache(max_ms=MAX_TS)
        self._seen: set[str] = set()
        self.layout = self.header or self._read_header()
        self.format = self.layout.format
        ix = self.layout.index
        self._uuid_pos = ix["uuid"]
        self._host_pos = ix["hostname"]
        self._ts_pos = ix["timestamp"]
        self._instance_pos = ix.get(INSTANCE_COLUMN)
        self._labels_pos = ix.get("labels_raw")
        if self.format == LONG:
            self._metric_pos = ix["metric_name"]
            self._value_pos = ix["value"]
        self._column_names = {pos: name for name, pos in ix.items()}

    def resume(self, text: io.TextIOBase, lines_before: int) -> None:
        """Read on from `text`, whose first line is line `lines_before` + 1 of the file."""
        self.text = text
        self._lines = _Lines(text, self.max_line, self.max_lines, self._tick)
        self._lines.count = lines_before
        self._reader = csv.reader(self._lines)

    def _tick(self) -> None:
        """Budget checks, every 1024 lines read: CPU time, and the latest time accepted."""
        if self.max_future is not None:
            self._latest = min(MAX_TS, int((self.clock() + self.max_future) * 1000))
        limit = self.max_cpu_seconds
        if limit is not None and time.thread_time() - self._cpu_start > limit:
            raise TooLarge(
                f"parsing the upload took more than {limit:g} s of CPU time "
                "(INGEST_MAX_PARSE_SECONDS); split it, the rows before the limit are kept"
            )

    def _read_header(self) -> Layout:
        while True:
            self._lines.begin()
            try:
                header = next(self._reader)
            except StopIteration:
                raise HeaderError("the file is empty: expected a CSV header row") from None
            except _RecordTooLong:
                raise HeaderError(
                    f"the header row is longer than {self.max_line} characters"
                ) from None
            except csv.Error as exc:
                raise HeaderError(f"the header row is not valid CSV: {exc}") from None
            except _GZIP_ERRORS as exc:
                raise HeaderError(
                    f"the input starts like gzip but cannot be read: {_gzip_problem(exc)}"
                ) from None
            if any(cell.strip() for cell in header):
                return detect(header)

    def __iter__(self) -> Iterator[Row]:
        if self.layout.format == LONG:
            return self._iter_long()
        return self._iter_rows(self._wide_row)

    def _fast_long(self, fields: list[str]) -> Row | None:
        """The usual long-format row, checked against what earlier rows already validated.

        None whenever anything differs from the rows seen so far (new GPU, metric or
        time, odd spacing, a MIG instance, a value that is not a plain non-zero
        number below the DCGM blanks): the full checks of `_long_row` then decide,
        with their messages. Measured: about a quarter of the parse time on
        exports where every value repeats a known shape.
        """
        if len(fields) != self.layout.width:
            return None
        uuid, host = fields[self._uuid_pos], fields[self._host_pos]
        metric = fields[self._metric_pos]
        ts = self._ts.known(fields[self._ts_pos])
        seen = self._seen
        if ts is None or uuid not in seen or host not in seen or metric not in self._good_metrics:
            return None
        if ts > self._latest or self._instance_pos is not None:
            return None
        if self._labels_pos is not None and INSTANCE_LABEL in fields[self._labels_pos]:
            return None
        known = self._metrics_of.get(uuid)
        if known is None or metric not in known:
            return None
        text = fields[self._value_pos]
        if DECIMAL.fullmatch(text) is None:
            return None
        value = float(text)
        # zero (maybe an underflow), infinite, NaN or a DCGM blank: the full checks decide
        if not 0.0 < abs(value) < DCGM_BLANK_FLOOR:
            return None
        return Row(uuid, host, ts, [(metric, value)], fields)

    def _iter_long(self) -> Iterator[Row]:
        fast = self._fast_long
        for fields, start in self._records():
            row = fast(fields)
            if row is None:
                row = self._checked(fields, start, self._long_row)
                if row is None:
                    continue
            self.accepted += 1
            yield row

    def _checked(self, fields: list[str], start: int, convert: Any) -> Row | None:
        """`convert` the fields with every check; None (and counted) when rejected."""
        self._row_blank = 0
        try:
            row = convert(fields)
            self._check_metric_count(row)
        except ValueError as exc:  # RowRejected, InvalidSegment, bad timestamp
            self._reject(start, str(exc))
            return None
        self.blank += self._row_blank  # blanks of accepted rows only
        return row

    def _iter_rows(self, convert: Any) -> Iterator[Row]:
        for fields, start in self._records():
            row = self._checked(fields, start, convert)
            if row is not None:
                self.accepted += 1
                yield row

    def _records(self) -> Iterator[tuple[list[str], int]]:
        """(fields, first line) of every non-blank row; rows_read counts them. CSV and
        gzip damage and over-long rows are rejected here."""
        lines = self._lines
        while True:
            lines.begin()
            try:
                fields = self._next_fields()
            except StopIteration:
                return
            except _GZIP_ERRORS as exc:
                self.rows_read += 1
                message = f"{_gzip_problem(exc)}: nothing from this line on could be read"
                self._reject(lines.start, message, fatal=True)
                return
            start = lines.start
            if isinstance(fields, str):
                self.rows_read += 1
                self._reject(start, fields)
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            self.rows_read += 1
            yield fields, start

    def _next_fields(self) -> list[str] | str:
        """The next record's fields, or why it was refused (then skipped to its end)."""
        try:
            return next(self._reader)
        except _RecordTooLong:
            message = f"the row is longer than {self.max_line} characters"
        except csv.Error as exc:
            message = f"not valid CSV: {exc}"
        self._lines.skip_record()
        return message

    def _check_metric_count(self, row: Row) -> None:
        known = self._metrics_of.get(row.uuid)
        if known is not None and all(name in known for name, _ in row.values):
            return  # the usual case: nothing new for this GPU
        if known is None:
            known = self._metrics_of[row.uuid] = set()
        new = {name for name, _ in row.values} - known
        if new and len(known) + len(new) > self.max_metrics_per_gpu:
            raise RowRejected(
                f"GPU {row.uuid} already has {len(known)} metrics in this file: "
                f"at most {self.max_metrics_per_gpu} (INGEST_MAX_METRICS_PER_GPU)"
            )
        known |= new

    def _reject(self, line: int, message: str, *, fatal: bool = False) -> None:
        self.rejected += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(line, message))
        elif fatal and self.errors:
            self.errors[-1] = RowError(line, message)

    def _common(self, fields: list[str]) -> tuple[str, str, int]:
        if len(fields) != self.layout.width:
            raise RowRejected(f"expected {self.layout.width} fields, found {len(fields)}")
        uuid = fields[self._uuid_pos].strip()
        if not uuid:
            raise RowRejected("uuid is missing")
        uuid = gpu_uuid(uuid, self._instance(fields))
        host = fields[self._host_pos].strip()
        if not host:
            raise RowRejected("hostname is missing")
        seen = self._seen
        if uuid not in seen or host not in seen:
            check_segment(uuid, "uuid")
            check_segment(host, "hostname")
            if len(seen) >= _SEEN_SEGMENTS:
                seen.clear()
            seen.add(uuid)
            seen.add(host)
        ts = self._ts(fields[self._ts_pos])
        if ts > self._latest:
            raise RowRejected(
                f"timestamp {show(fields[self._ts_pos].strip())} is more than "
                f"{_show_duration(self.max_future or 0)} ahead of this server's clock "
                "(INGEST_MAX_FUTURE)"
            )
        return uuid, host, ts

    def _instance(self, fields: list[str]) -> str:
        """The MIG GPU instance id of a row: its GPU_I_ID column, else its labels_raw's."""
        if self._instance_pos is not None:
            gi = fields[self._instance_pos].strip()
            if gi:
                return gi
        if self._labels_pos is not None:
            text = fields[self._labels_pos]
            if INSTANCE_LABEL in text:
                return parse_labels_raw(text).get(INSTANCE_LABEL, "").strip()
        return ""

    def _value(self, text: str) -> float | None:
        """A cell's value; None (counted as blank) for a DCGM blank."""
        value = parse_value(text)
        if is_blank(value):
            self._row_blank += 1
            return None
        return value

    def _long_row(self, fields: list[str]) -> Row:
        uuid, host, ts = self._common(fields)
        metric = fields[self._metric_pos].strip()
        if metric not in self._good_metrics:
            if not metric:
                raise RowRejected("metric_name is missing")
            if len(metric) > MAX_METRIC_NAME or not metric.isprintable():
                raise RowRejected(f"metric_name {metric[:40]!r} is too long or not printable")
            if len(self._good_metrics) < _SEEN_SEGMENTS:
                self._good_metrics.add(metric)
        value = self._value(fields[self._value_pos])
        return Row(uuid, host, ts, [] if value is None else [(metric, value)], fields)

    def _wide_row(self, fields: list[str]) -> Row:
        uuid, host, ts = self._common(fields)
        values = []
        for pos, name, strict in self.layout.metric_columns:
            cell = fields[pos].strip()
            if not cell:
                continue
            try:
                value = self._value(cell)
            except RowRejected as exc:
                if strict:
                    raise RowRejected(f"column {self._column_names[pos]}: {exc}") from None
                continue  # an unknown column holding text is not a metric
            if value is not None:
                values.append((name, value))
        if not values and not self._row_blank:
            raise RowRejected("the row holds no metric value")
        return Row(uuid, host, ts, values, fields)

    @property
    def line(self) -> int:
        """The physical line where the row last yielded starts (for the caller's checks)."""
        return self._lines.start

    def refuse(self, message: str) -> None:
        """Count the row last yielded as rejected after all, for a check the caller made
        (the time policy: apps/ingest/service.py)."""
        self.accepted -= 1
        self._reject(self.line, message)

    def facts(self, row: Row, cluster: str) -> dict:
        """The GPU record facts carried by a row (labels parsed only when asked).

        Labels: labels_raw's, then the row's identifier columns under their header
        names (labels_raw wins where both name one). A MIG instance's facts carry
        its parent's uuid as `UUID`, with `GPU_I_ID` and `GPU_I_PROFILE`, as the
        scrape path's do.
        """
        ix = self.layout.index
        fields = row.fields

        def cell(name: str) -> str:
            pos = ix.get(name)
            return fields[pos].strip() if pos is not None else ""

        labels = parse_labels_raw(cell("labels_raw"))
        labels.pop("__name__", None)
        for pos, name in self.layout.identifiers:
            value = fields[pos].strip()
            if value:
                labels.setdefault(name, value)
        parent = fields[self._uuid_pos].strip()
        if row.uuid != parent:  # a MIG instance named from its parent
            labels["UUID"] = parent
            labels[INSTANCE_LABEL] = self._instance(fields)
            if cell("gpu_i_profile"):
                labels["GPU_I_PROFILE"] = cell("gpu_i_profile")
        # the first index the row gives decides, even when it is not a number
        indexes = (cell("gpu_id"), cell("gpu"), cell("index"), labels.get("gpu", ""))
        gpu_index = _gpu_index(next((i for i in indexes if i), ""))
        driver = cell("dcgm_fi_driver_version") or cell("driver_version")
        return {
            "uuid": row.uuid,
            "cluster": cluster,
            "host": row.host,
            "gpu_index": gpu_index,
            "device": cell("device") or (f"nvidia{gpu_index}" if gpu_index is not None else ""),
            "model": cell("modelname") or labels.get("modelName", "") or cell("name"),
            "driver": labels.get("DCGM_FI_DRIVER_VERSION", "") or driver,
            "labels": labels,
        }
