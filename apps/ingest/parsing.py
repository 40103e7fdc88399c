"""Streaming CSV parsing: bytes in, validated rows out, bad rows reported by line.

Contract: every data row read is either yielded (accepted) or recorded as
rejected with its line number, so accepted + rejected == rows_read. Blank lines
are not rows. The header is validated before any row is read.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple

from apps.ingest.formats import LONG, HeaderError, Layout, detect
from apps.ingest.timeparse import TimestampCache
from store.keys import check_segment

__all__ = ["HeaderError", "Parser", "Row", "RowError", "open_text"]

_GZIP_MAGIC = b"\x1f\x8b"
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')
MAX_METRIC_NAME = 200
# A field longer than this is a broken file, not telemetry.
MAX_FIELD = 64 * 1024


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


class RowRejected(ValueError):
    pass


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


def open_text(raw: BinaryIO) -> io.TextIOWrapper:
    """Text view of CSV bytes: gzip detected by magic, UTF-8 with or without BOM, any newline.

    Undecodable bytes become U+FFFD, so binary garbage ends as a header error or
    as rejected rows, never as an exception halfway through.
    """
    stream = _Peekable(raw)
    buffered: BinaryIO = io.BufferedReader(stream, buffer_size=1 << 16)
    if stream.peek(2) == _GZIP_MAGIC:
        buffered = gzip.GzipFile(fileobj=buffered, mode="rb")  # type: ignore[assignment]
    return io.TextIOWrapper(buffered, encoding="utf-8-sig", errors="replace", newline="")


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
    """Prometheus-style `name="value",...` (CSV quoting already undone) into a dict."""
    return {k: v.replace('\\"', '"').replace("\\\\", "\\") for k, v in _LABEL.findall(text)}


@dataclass
class Parser:
    """Iterate to get accepted rows; counters and the first errors fill in as it goes."""

    text: io.TextIOBase
    max_errors: int = 20
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    errors: list[RowError] = field(default_factory=list)

    def __post_init__(self) -> None:
        csv.field_size_limit(MAX_FIELD)
        self._reader = csv.reader(self.text)
        self._ts = TimestampCache()
        self.layout = self._read_header()
        self.format = self.layout.format

    def _read_header(self) -> Layout:
        while True:
            try:
                header = next(self._reader)
            except StopIteration:
                raise HeaderError("the file is empty: expected a CSV header row") from None
            except csv.Error as exc:
                raise HeaderError(f"the header row is not valid CSV: {exc}") from None
            if any(cell.strip() for cell in header):
                return detect(header)

    def __iter__(self) -> Iterator[Row]:
        convert = self._long_row if self.layout.format == LONG else self._wide_row
        while True:
            try:
                fields = next(self._reader)
            except StopIteration:
                return
            except csv.Error as exc:
                self.rows_read += 1
                self._reject(f"not valid CSV: {exc}")
                continue
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            self.rows_read += 1
            try:
                row = convert(fields)
            except (RowRejected, ValueError) as exc:
                self._reject(str(exc))
                continue
            self.accepted += 1
            yield row

    def _reject(self, message: str) -> None:
        self.rejected += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(RowError(self._reader.line_num, message))

    def _common(self, fields: list[str]) -> tuple[str, str, int]:
        if len(fields) != self.layout.width:
            raise RowRejected(f"expected {self.layout.width} fields, found {len(fields)}")
        ix = self.layout.index
        uuid = fields[ix["uuid"]].strip()
        if not uuid:
            raise RowRejected("uuid is missing")
        host = fields[ix["hostname"]].strip()
        if not host:
            raise RowRejected("hostname is missing")
        check_segment(uuid, "uuid")
        check_segment(host, "hostname")
        return uuid, host, self._ts(fields[ix["timestamp"]])

    def _long_row(self, fields: list[str]) -> Row:
        uuid, host, ts = self._common(fields)
        ix = self.layout.index
        metric = fields[ix["metric_name"]].strip()
        if not metric:
            raise RowRejected("metric_name is missing")
        if len(metric) > MAX_METRIC_NAME or not metric.isprintable():
            raise RowRejected(f"metric_name {metric[:40]!r} is too long or not printable")
        return Row(uuid, host, ts, [(metric, parse_value(fields[ix["value"]]))], fields)

    def _wide_row(self, fields: list[str]) -> Row:
        uuid, host, ts = self._common(fields)
        values = []
        for pos, name, strict in self.layout.metric_columns:
            cell = fields[pos].strip()
            if not cell:
                continue
            if strict:
                values.append((name, parse_value(cell)))
                continue
            try:
                values.append((name, parse_value(cell)))
            except RowRejected:
                continue  # an unknown column holding text is not a metric
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
        gpu_id = cell("gpu_id")
        return {
            "uuid": row.uuid,
            "cluster": cluster,
            "host": row.host,
            "gpu_index": int(gpu_id) if gpu_id.isdigit() else None,
            "device": cell("device") or (f"nvidia{gpu_id}" if gpu_id.isdigit() else ""),
            "model": cell("modelname") or labels.get("modelName", ""),
            "driver": labels.get("DCGM_FI_DRIVER_VERSION", ""),
            "labels": labels,
        }
