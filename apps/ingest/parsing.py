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
import math
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO, NamedTuple

from apps.ingest.formats import LONG, MAX_METRIC_NAME, HeaderError, Layout, detect
from store.errors import Answer
from store.keys import MAX_TS, check_segment
from timeparse.timestamps import TimestampCache

__all__ = ["HeaderError", "Parser", "Row", "RowError", "open_text"]

_GZIP_MAGIC = b"\x1f\x8b"
# What a damaged gzip stream raises while it is read (never a plain OSError:
# a failing upload connection must not pass for a bad file).
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)
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


class _CappedReader(io.RawIOBase):
    """Refuses to give more than `limit` decompressed bytes: gzip bombs stop here."""

    def __init__(self, inner: BinaryIO, limit: int) -> None:
        self._inner = inner
        self._limit = limit
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        data = self._inner.read(len(buf))
        self._count += len(data)
        if self._count > self._limit:
            raise TooLarge(f"the file decompresses to more than the limit of {self._limit} bytes")
        buf[: len(data)] = data
        return len(data)


class _Peekable(io.RawIOBase):
    """Lets us look at the first bytes (gzip magic) of a stream that cannot seek."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._head = b""

    def peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._raw.read(n - len(self._head))
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
        data = self._raw.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def open_text(raw: BinaryIO, max_decompressed: int | None = None) -> io.TextIOWrapper:
    """Text view of CSV bytes: gzip detected by magic, UTF-8 with or without BOM, any newline.

    Undecodable bytes become U+FFFD, so binary garbage ends as a header error or
    as rejected rows, never as an exception halfway through. Gzip input that
    decompresses past `max_decompressed` bytes raises TooLarge when read there.
    """
    stream = _Peekable(raw)
    buffered: BinaryIO = io.BufferedReader(stream, buffer_size=1 << 16)
    if stream.peek(2) == _GZIP_MAGIC:
        buffered = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
        if max_decompressed is not None:
            capped = _CappedReader(buffered, max_decompressed)
            buffered = io.BufferedReader(capped, buffer_size=1 << 16)  # type: ignore[assignment]
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="replace", newline="")


_LONG_LINE = "\x00line-too-long\x00"


def _bounded_lines(text: io.TextIOBase, limit: int) -> Iterator[str]:
    """The lines of `text`, but one longer than `limit` characters becomes a marker line.

    The rest of an over-long line is skipped in `limit`-sized pieces, so a file
    with no line end never sits in memory whole; the marker keeps line numbers
    right (it stands for one physical line) and is rejected as a row.
    """
    while True:
        line = text.readline(limit + 1)
        if not line:
            return
        if len(line) > limit and line[-1] not in "\r\n":
            while True:
                rest = text.readline(limit + 1)
                if not rest or rest[-1] in "\r\n":
                    break
            yield _LONG_LINE + "\n"
            continue
        yield line


def parse_value(text: str) -> float:
    s = text.strip()
    if not s:
        raise RowRejected("value is empty")
    try:
        value = float(s)
    except ValueError:
        raise RowRejected(f"value {s[:40]!r} is not a number") from None
    if not math.isfinite(value):
        raise RowRejected(f"value {s!r} is not a finite number")
    return value


def parse_labels(text: str) -> dict[str, str]:
    """Prometheus-style `name="value",...` (CSV quoting already undone) into a dict.

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
    """`gpu_id` as a number when it is a plain small one (`"²".isdigit()` is true too)."""
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


@dataclass
class Parser:
    r"""Iterate to get accepted rows; counters and the first errors fill in as it goes.

    Line numbers (RowError.line) are the physical lines of the file as an editor
    shows them: the first line is 1 (usually the header) and every line end
    counts, `\n`, `\r\n` or a lone `\r`, including those inside a quoted field.
    A rejected row is reported at the line where it STARTS: a row whose quoted
    field holds a newline is reported at its first line, and the rows after it
    keep their own line numbers.

    gzip input found truncated or corrupt part way ends the parse: the rows
    before the damage go through, and the damage counts as one rejected row at
    the line where reading stopped; its error is kept even when `errors` is full
    (it replaces the last one). Damage before the header is a HeaderError.
    """

    text: io.TextIOBase
    max_errors: int = 20
    max_line: int = 256 * 1024
    max_metrics_per_gpu: int = 1000
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    def __post_init__(self) -> None:
        csv.field_size_limit(MAX_FIELD)
        self._reader = csv.reader(_bounded_lines(self.text, self.max_line))
        self._metrics_of: dict[str, set[str]] = {}
        self._good_metrics: set[str] = set()  # names already validated
        self._ts = TimestampCache(max_ms=MAX_TS)
        self._seen: set[str] = set()
        self.layout = self._read_header()
        self.format = self.layout.format
        ix = self.layout.index
        self._uuid_pos = ix["uuid"]
        self._host_pos = ix["hostname"]
        self._ts_pos = ix["timestamp"]
        if self.format == LONG:
            self._metric_pos = ix["metric_name"]
            self._value_pos = ix["value"]
        self._column_names = {pos: name for name, pos in ix.items()}

    def _read_header(self) -> Layout:
        while True:
            try:
                header = next(self._reader)
            except StopIteration:
                raise HeaderError("the file is empty: expected a CSV header row") from None
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
        time, odd spacing, a value that is not a plain finite number): the full checks
        of `_long_row` then decide, with their messages. Measured: about a quarter of
        the parse time on exports where every value repeats a known shape.
        """
        if len(fields) != self.layout.width:
            return None
        uuid, host = fields[self._uuid_pos], fields[self._host_pos]
        metric = fields[self._metric_pos]
        ts = self._ts.known(fields[self._ts_pos])
        seen = self._seen
        if ts is None or uuid not in seen or host not in seen or metric not in self._good_metrics:
            return None
        known = self._metrics_of.get(uuid)
        if known is None or metric not in known:
            return None
        try:
            value = float(fields[self._value_pos])
        except ValueError:
            return None
        if value - value != 0.0:  # NaN or infinite
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
        try:
            if fields[0] == _LONG_LINE:
                raise RowRejected(f"the line is longer than {self.max_line} characters")
            row = convert(fields)
            self._check_metric_count(row)
        except ValueError as exc:  # RowRejected, InvalidSegment, bad timestamp
            self._reject(start, str(exc))
            return None
        return row

    def _iter_rows(self, convert: Any) -> Iterator[Row]:
        for fields, start in self._records():
            row = self._checked(fields, start, convert)
            if row is not None:
                self.accepted += 1
                yield row

    def _records(self) -> Iterator[tuple[list[str], int]]:
        """(fields, first line) of every non-blank row; rows_read counts them, CSV and gzip
        damage is rejected here."""
        reader = self._reader
        while True:
            # The row about to be read starts on the line after the last one consumed.
            start = reader.line_num + 1
            try:
                fields = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.rows_read += 1
                self._reject(start, f"not valid CSV: {exc}")
                continue
            except _GZIP_ERRORS as exc:
                self.rows_read += 1
                message = f"{_gzip_problem(exc)}: nothing from this line on could be read"
                self._reject(start, message, fatal=True)
                return
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            self.rows_read += 1
            yield fields, start

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
        return uuid, host, self._ts(fields[self._ts_pos])

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
        return Row(uuid, host, ts, [(metric, parse_value(fields[self._value_pos]))], fields)

    def _wide_row(self, fields: list[str]) -> Row:
        uuid, host, ts = self._common(fields)
        values = []
        for pos, name, strict in self.layout.metric_columns:
            cell = fields[pos].strip()
            if not cell:
                continue
            try:
                values.append((name, parse_value(cell)))
            except RowRejected as exc:
                if strict:
                    raise RowRejected(f"column {self._column_names[pos]}: {exc}") from None
                # an unknown column holding text is not a metric
        if not values:
            raise RowRejected("the row holds no metric value")
        return Row(uuid, host, ts, values, fields)

    def facts(self, row: Row, cluster: str) -> dict:
        """The GPU record facts carried by a row (labels parsed only when asked)."""
        ix = self.layout.index

        def cell(name: str) -> str:
            pos = ix.get(name)
            return row.fields[pos].strip() if pos is not None else ""

        labels = parse_labels(cell("labels_raw"))
        labels.pop("__name__", None)
        gpu_index = _gpu_index(cell("gpu_id"))
        return {
            "uuid": row.uuid,
            "cluster": cluster,
            "host": row.host,
            "gpu_index": gpu_index,
            "device": cell("device") or (f"nvidia{gpu_index}" if gpu_index is not None else ""),
            "model": cell("modelname") or labels.get("modelName", ""),
            "driver": labels.get("DCGM_FI_DRIVER_VERSION", ""),
            "labels": labels,
        }
