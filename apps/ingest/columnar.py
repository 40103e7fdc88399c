"""Columnar CSV parsing on Arrow: the row parser's rules, its messages and line numbers, at
Arrow's speed.

The upload is read in blocks of whole lines. A block is *regular* when every line is
one record that any CSV reader splits the same way: ASCII, quotes only where RFC 4180
puts them (a field's start, its end, doubled inside), no line end inside quotes, no
lone `\\r`, no NUL, no line longer than the limits. numpy checks this on the bytes
(line ends, `\\r`), one regular expression over the block the quotes (the same test as
a quote's parity saying whether it opens or closes: tests/ingest/test_block_structure.py).
A regular block is parsed by pyarrow's CSV reader (its threads) into string
columns (only those the checks read; a row's every field is read again from the
block's bytes, by the same reader, for the few rows that need them: the rows the
reference judges, the facts rows), and checked on columns:

- uuids, hosts, times and metric names are checked once per distinct value (a
  block repeats them), by the row parser's own code;
- values that match a plain decimal pattern are cast by Arrow (correctly rounded,
  as Python's float()); DCGM blanks and anything else are left to the reference.

Rows that pass every check on columns are accepted as they are. Any other row (a
doubt on any column, a MIG instance) is handed, with its fields and line number, to
the row parser (`Parser`, the reference), which accepts or rejects it with its own
messages; lines with the wrong number of fields are rejected with its message. So
both parsers accept and refuse the same rows with the same values and messages
(tests/ingest/test_columnar_matches_rows.py checks it on random and hostile files).

The first irregular block, and anything the block reader cannot cut safely, sends
the rest of the file through the row parser: hostile files are slow, never wrong.
Iterating gives ColumnBatch objects (and Row objects once the row parser took over);
the Chunker takes both.
"""

from __future__ import annotations

import contextlib
import csv
import ctypes
import functools
import io
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from apps.ingest.formats import INSTANCE_COLUMN, INSTANCE_LABEL, LONG, MAX_METRIC_NAME, detect
from apps.ingest.numbers import DCGM_INT32_BLANK
from apps.ingest.parsing import (
    _GZIP_ERRORS,
    MAX_FIELD,
    Parser,
    Row,
    RowError,
    TooLarge,
    is_gzip,
    text_of,
)
from store.errors import InvalidSegment
from store.keys import check_segment
from store.workloads import WORKLOAD_LABELS

BLOCK_BYTES = 4 << 20
_PIECE = 8192  # what io.TextIOWrapper reads at a time (the row parser's reads)
_BOM = b"\xef\xbb\xbf"
# Plain decimals Arrow and Python read to the same float: no sign but `-`, digits on
# both sides of the point, a short exponent (no overflow, no underflow to 0).
_PLAIN = r"^-?[0-9]{1,15}(\.[0-9]{1,17})?([eE][-+]?[0-9]{1,2})?$"


class _LazyRows(Sequence[Row]):
    """A batch's facts rows, made at the first look: a chunker reads them only for GPUs it
    does not buffer yet (most blocks have none), and making them cost a tenth of the
    main thread's parse."""

    def __init__(self, make: Callable[[], list[Row]]) -> None:
        self._make: Callable[[], list[Row]] | None = make
        self._rows: list[Row] = []

    def _all(self) -> list[Row]:
        if self._make is not None:
            self._rows, self._make = self._make(), None
        return self._rows

    def __getitem__(self, index: Any) -> Any:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())


@dataclass
class ColumnBatch:
    """Accepted samples of consecutive rows, in row order (a GPU's samples in file order).

    `gpu[i]` indexes `uuids` (record uuids); `facts_rows[k]` is the first accepted
    row of `uuids[k]` in the batch (what its facts are read from).
    """

    uuids: list[str]
    facts_rows: Sequence[Row]
    names: list[str]
    gpu: np.ndarray
    ts: np.ndarray
    metric: np.ndarray
    value: np.ndarray
    line: np.ndarray  # the line of each sample's row (a wide row's samples share it)
    work: np.ndarray  # each sample's index in `workloads` (apps/ingest/workloads.py)
    workloads: list[dict]

    def __len__(self) -> int:
        return len(self.ts)

    def as_rows(self) -> list[Row]:
        """The batch as one Row per row (its samples in order; a GPU's facts row's fields
        as fields, what its facts are read from): for a caller that must judge rows."""
        rows: list[Row] = []
        cuts = np.flatnonzero(np.diff(self.line)) + 1
        starts, stops = [0, *cuts.tolist()], [*cuts.tolist(), len(self)]
        metric, value = self.metric.tolist(), self.value.tolist()
        for start, stop in zip(starts, stops, strict=True):
            code = int(self.gpu[start])
            facts = self.facts_rows[code]
            values = [(self.names[metric[i]], value[i]) for i in range(start, stop)]
            rows.append(
                Row(self.uuids[code], facts.host, int(self.ts[start]), values, facts.fields)
            )
        return rows

    def rows_at(self, start: int, stop: int) -> ColumnBatch:
        """Samples `start` to `stop` (cut between rows: a row's samples stay together)."""
        return ColumnBatch(
            self.uuids,
            self.facts_rows,
            self.names,
            self.gpu[start:stop],
            self.ts[start:stop],
            self.metric[start:stop],
            self.value[start:stop],
            self.line[start:stop],
            self.work[start:stop],
            self.workloads,
        )

    def without(self, dropped: np.ndarray) -> ColumnBatch:
        """The batch without the samples `dropped` marks (rows refused after parsing)."""
        keep = ~dropped
        return ColumnBatch(
            self.uuids,
            self.facts_rows,
            self.names,
            self.gpu[keep],
            self.ts[keep],
            self.metric[keep],
            self.value[keep],
            self.line[keep],
            self.work[keep],
            self.workloads,
        )


class _Irregular(Exception):
    """This block needs the row parser (from its first line on)."""


class _Chain(io.RawIOBase):
    """`head` bytes, then the rest of `tail` (or `failure` raised, the gzip damage that
    stopped the block reader): what the row parser reads after a switch."""

    def __init__(self, head: bytes, tail: BinaryIO, failure: BaseException | None) -> None:
        self._head = memoryview(head)
        self._tail = tail
        self._failure = failure

    def readable(self) -> bool:
        return True

    def readinto(self, buf: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        if self._failure is not None:
            raise self._failure
        data = self._tail.read(len(buf))
        buf[: len(data)] = data
        return len(data)


def _shape(block: bytes | bytearray, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(the offset of each line's `\n`, each line's content length) of a block of whole
    lines; _Irregular when the block is not regular (see the module doc).

    One pass per special byte for the line ends and `\r`; the quotes by one match of
    `_QUOTED_LINES` over the whole block (RE2, in Arrow: ~600 MB/s here; locating every
    quote with numpy and testing its neighbours cost 60 % more).
    """
    if not block.endswith(b"\n") or not block.isascii() or b"\x00" in block:
        raise _Irregular  # (a last line with no line end: the reference reads it)
    a = np.frombuffer(block, dtype=np.uint8)
    ends = np.flatnonzero(a == 10)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    lengths = ends - starts
    if int(lengths.max()) >= limit:
        raise _Irregular
    if b"\r" in block:
        crs = np.flatnonzero(a == 13)
        if not (a[crs + 1] == 10).all():
            raise _Irregular  # a lone \r ends a line for the row parser, not for Arrow
        lengths -= np.isin(ends - 1, crs)
    if b'"' in block and not _quoted_well(block):
        raise _Irregular
    return ends, lengths


def _libc_memmem() -> Callable[..., int | None] | None:
    """libc's memmem, or None where the process has none (then `in` searches)."""
    try:
        memmem = ctypes.CDLL(None).memmem
    except (OSError, AttributeError):
        return None
    memmem.restype = ctypes.c_void_p
    memmem.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return memmem  # type: ignore[no-any-return]


_MEMMEM = _libc_memmem()
_INSTANCE_BYTES = INSTANCE_LABEL.encode()


def _has(block: bytes | bytearray, needle: bytes) -> bool:
    """`needle in block`, by libc's memmem (vectorised: 2.5x faster than CPython's search
    on DCGM text, whose letters are the needle's; that search over every block was 0.08 s
    of the bench file's 0.8 s of parse). Without the GIL, as ctypes calls run."""
    if _MEMMEM is None or not block:
        return needle in block
    view = np.frombuffer(block, dtype=np.uint8)  # held: the buffer stays exported (unmovable)
    return _MEMMEM(view.ctypes.data, len(block), needle, len(needle)) is not None


# A line whose quotes are where RFC 4180 puts them: each field unquoted (no quote, comma,
# \r or \n) or quoted (any byte but a quote, \r or \n, quotes doubled inside), the line
# ending in \n or \r\n. The same test as counting quotes: the n-th quote of a block opens
# a field when n is even (after a comma, a line start or a quote) and closes it when n
# is odd (before a comma, a line end or a quote), and no line ends inside quotes.
_FIELD = r'(?:[^",\r\n]*|"(?:[^"\r\n]|"")*")'
_QUOTED_LINES = rf"^(?:{_FIELD}(?:,{_FIELD})*\r?\n)*$"


def _quoted_well(block: bytes | bytearray) -> bool:
    """Whether every line of `block` (whole lines) matches _QUOTED_LINES."""
    offsets = pa.py_buffer(np.array([0, len(block)], dtype=np.int64))
    whole = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(), 1, [None, offsets, pa.py_buffer(block)]
    )
    return bool(pc.match_substring_regex(whole, _QUOTED_LINES)[0].as_py())


@dataclass
class _Prepared:
    """A block read by Arrow (in a pool thread), waiting for its turn to be judged."""

    raw: bytes | bytearray
    lengths: np.ndarray | None = None  # None: irregular
    ends: np.ndarray | None = None  # each line's `\n` offset
    table: pa.Table | None = None
    invalid: list[tuple[int, int, str]] | None = None  # (record number, fields, text)
    mig: bool = False  # the bytes name a MIG instance (searched here, off the main thread)


def _prepare(
    raw: bytes | bytearray, width: int, limit: int, needed: list[int], for_mig: list[int]
) -> _Prepared:
    """Structure check and Arrow parse of one block; touches no parser state. Only the
    columns the checks read are converted (`needed`, and `for_mig` when the bytes name
    a MIG instance): a row's other fields are read again when asked (_Lines)."""
    try:
        ends, lengths = _shape(raw, limit)
    except _Irregular:
        return _Prepared(raw)
    invalid: list[tuple[int, int, str]] = []

    def skip(row: Any) -> str:
        invalid.append((row.number, row.actual_columns, row.text))
        return "skip"

    mig = _has(raw, _INSTANCE_BYTES)
    table = _read_table(raw, width, sorted({*needed, *(for_mig if mig else ())}), skip)
    # Arrow's allocator keeps each thread's freed pages: given back, a parse's peak memory
    # is 20-40 MB lower (measured on the bench file with mimalloc), at no measurable CPU
    # cost; with jemalloc (use_jemalloc) a 1 GB upload's worker peaked at 254 MB
    pa.default_memory_pool().release_unused()
    return _Prepared(raw, lengths, ends, table, invalid, mig)


def _read_table(
    data: bytes | bytearray, width: int, include: list[int] | None, skip: Any
) -> pa.Table:
    """Arrow's parse of regular lines into string columns `c0`, `c1`, ... (only those in
    `include`; every one with None). The bytes are ASCII (_shape checked): no UTF-8
    check."""
    names = _column_names(width)
    return pcsv.read_csv(
        pa.py_buffer(data),
        # one thread per block: blocks run side by side in the pool, and Arrow numbers
        # the rows it skips only when it reads alone
        read_options=pcsv.ReadOptions(column_names=names, use_threads=False, block_size=1 << 26),
        parse_options=pcsv.ParseOptions(
            newlines_in_values=False, ignore_empty_lines=True, invalid_row_handler=skip
        ),
        convert_options=pcsv.ConvertOptions(
            column_types=dict.fromkeys(names, pa.string()),
            include_columns=None if include is None else [names[i] for i in include],
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
            check_utf8=False,
        ),
    )


def _column_names(width: int) -> list[str]:
    return [f"c{i}" for i in range(width)]


@dataclass
class _Lines:
    """Where a block's table rows are in its bytes, to read a row's every field again
    (the table holds only the columns the checks read): for the rows the reference
    judges and the facts rows, a few per block."""

    raw: bytes | bytearray
    ends: np.ndarray  # each line's `\n` offset
    line_of_row: np.ndarray  # each table row's line in the block
    width: int

    def fields(self, rows: list[int]) -> list[list[str]]:
        """Every field of table rows `rows`, read by Arrow as the block was."""
        if not rows:
            return []
        ends = self.ends.tolist()
        with memoryview(self.raw) as view:
            data = b"".join(
                view[(ends[line - 1] + 1 if line else 0) : ends[line] + 1]
                for line in self.line_of_row[rows].tolist()
            )
        table = _read_table(data, self.width, None, None)
        if table.num_rows != len(rows):
            raise AssertionError("a row read again split otherwise")  # regular lines: never
        columns = [column.to_pylist() for column in table.columns]
        return [list(fields) for fields in zip(*columns, strict=True)]


def _pairs(gpu: np.ndarray, metric: np.ndarray) -> np.ndarray:
    """The sorted distinct `gpu << 32 | metric` of a block's samples: marks in a (GPU,
    metric) grid when it is small (it is: a block's GPUs times the file's metrics), which
    costs a tenth of np.unique's hashing of every sample."""
    metrics = int(metric.max()) + 1
    size = (int(gpu.max()) + 1) * metrics
    if size > 4 * len(gpu) + (1 << 16):
        return np.unique(gpu.astype(np.int64) << 32 | metric.astype(np.int64))
    seen = np.zeros(size, dtype=bool)
    seen[gpu.astype(np.int64) * metrics + metric] = True
    flat = np.flatnonzero(seen)
    return (flat // metrics) << 32 | flat % metrics


def _contains(sorted_values: np.ndarray, values: np.ndarray) -> np.ndarray:
    """np.isin for a sorted, distinct `sorted_values`, by binary search (isin sorts both)."""
    if not len(sorted_values):
        return np.zeros(len(values), dtype=bool)
    at = np.minimum(np.searchsorted(sorted_values, values), len(sorted_values) - 1)
    return sorted_values[at] == values


def _cell_column(table: pa.Table, pos: int) -> pa.Array:
    """The column of the file's field `pos` (the table holds only some, named by place)."""
    return _array(table.column(f"c{pos}"))


def _array(column: pa.ChunkedArray) -> pa.Array:
    """A column as one array: its only chunk as it is (a block is read as one chunk;
    combine_chunks copied it, labels_raw included)."""
    return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()


@functools.cache
def use_jemalloc() -> None:
    """Arrow allocates with jemalloc in this process, unless ARROW_DEFAULT_MEMORY_POOL says
    otherwise or this pyarrow has none. Its default, mimalloc, made the parse of the bench
    file 30-45 % slower in a Celery worker's forked child (0.98-1.36 s against 0.67-0.76 s,
    alternated runs; ~10 % in a plain process): docs/PERFORMANCE.md, issue 17. Once per
    process (a forked child inherits the choice); buffers keep the pool they came from."""
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL"):
        return
    with contextlib.suppress(NotImplementedError):  # built without jemalloc: the default
        pa.set_memory_pool(pa.jemalloc_memory_pool())


class ColumnarParser:
    """The Parser interface (iterate; counts, errors, facts) on Arrow; see the module doc."""

    def __init__(self, binary: BinaryIO, *, block_bytes: int = BLOCK_BYTES, **limits: Any) -> None:
        use_jemalloc()
        self._binary = binary
        self._block_bytes = block_bytes
        self._gzip = is_gzip(binary)
        self._carry = b""  # bytes read past the last whole line of a block
        self._failure: BaseException | None = None
        head = self._read_block(b"")
        self._rows_mode = False
        layout = None if self._failure is not None else self._header(head)
        if layout is None:
            rest = _Chain(head + self._carry, binary, self._failure)
            self.ref = Parser(text_of(rest), **limits)  # type: ignore[arg-type]
            self._rows_mode = True
            self._pending = b""
        else:
            line_end = head.index(b"\n") + 1
            self.ref = Parser(io.StringIO(""), header=layout, line_offset=1, **limits)  # type: ignore[arg-type]
            del head[:line_end]  # (at the front of a bytearray: no copy)
            self._pending = head
        self.layout = self.ref.layout
        self.format = self.ref.format
        self._line = 1  # lines consumed so far
        self._names: dict[str, int] = {}
        self._name_list: list[str] = []
        self._good: dict[str, bool] = {}  # uuid, host, metric texts already judged
        self._ts_of: dict[str, int | None] = {}
        self._mig_seen = False
        self._most_known = 0  # the most metrics any GPU has so far
        self._gpu_id: dict[str, int] = {}
        # (file-wide GPU number << 32 | metric code) of every pair `_register` has noted
        self._registered = np.zeros(0, dtype=np.int64)

    # --- the Parser interface ------------------------------------------------------
    @property
    def rows_read(self) -> int:
        return self.ref.rows_read

    @property
    def accepted(self) -> int:
        return self.ref.accepted

    @property
    def rejected(self) -> int:
        return self.ref.rejected

    @property
    def blank(self) -> int:
        return self.ref.blank

    @property
    def errors(self) -> list[RowError]:
        return self.ref.errors

    @property
    def max_errors(self) -> int:
        return self.ref.max_errors

    @property
    def line(self) -> int:
        """Where the row last yielded starts, once the row parser reads (Row items)."""
        return self.ref.line

    def refuse(self, message: str) -> None:
        """Parser.refuse, for the Row items (the row parser's)."""
        self.ref.refuse(message)

    def refuse_line(self, line: int, message: str) -> None:
        """Count an accepted row (at `line`) as rejected after all, for a check the caller
        made (the time policy: apps/ingest/service.py)."""
        self.ref.accepted -= 1
        self.ref._reject(line, message)

    def facts(self, row: Row, cluster: str) -> dict:
        return self.ref.facts(row, cluster)

    # --- reading -------------------------------------------------------------------
    def _read(self, data: bytes | bytearray) -> bytearray:
        """`data` plus up to a block more. Gzip is read in the pieces the row parser's text
        reader takes (8 KiB): gzip damage keeps what came before it (in `_failure`), as
        there. Plain bytes can fail only as a whole (a connection, a size limit): they are
        read a block at a time (8 KiB reads cost a fifth of the main thread's time),
        straight into the block's buffer (no copy between the reader and the block)."""
        if not self._gzip:
            return self._read_into(data)
        parts, size = [data], len(data)
        read = getattr(self._binary, "read1", self._binary.read)  # as TextIOWrapper reads
        try:
            while size < self._block_bytes:
                piece = read(_PIECE)
                if not piece:
                    break
                parts.append(piece)
                size += len(piece)
        except _GZIP_ERRORS as exc:
            self._failure = exc
        return bytearray().join(parts)

    def _read_into(self, data: bytes | bytearray) -> bytearray:
        block = bytearray(max(self._block_bytes, len(data)))
        block[: len(data)] = data
        size = len(data)
        with memoryview(block) as view:
            while size < len(block):
                with view[size:] as free:
                    got = self._binary.readinto(free)
                if not got:
                    break
                size += got
        del block[size:]  # in place: the buffer shrinks, nothing is copied
        return block

    def _read_block(self, pending: bytes | bytearray) -> bytearray:
        """`pending` plus bytes up to a block, cut after its last line end (all at EOF).
        With `_failure` set, everything read, uncut (the row parser takes it)."""
        data = self._read(pending)
        if self._failure is not None or not data or data.endswith(b"\n"):
            return data
        cut = data.rfind(b"\n") + 1
        while cut == 0:  # a block with no line end yet: read on (the line limit bounds it)
            more = self._read(b"")
            data += more
            if self._failure is not None or not more or len(data) > 4 * self._block_bytes:
                return data  # the row parser reads it (and refuses an endless line)
            cut = data.rfind(b"\n") + 1
        self._carry = bytes(data[cut:])
        del data[cut:]  # in place, as in _read_into
        return data

    @staticmethod
    def _header(head: bytes | bytearray) -> Any:
        """The layout from a plain first line, or None: the row parser reads the file then."""
        if head.startswith(_BOM):
            head = head[len(_BOM) :]
        end = head.find(b"\n")
        line = head[:end] if end >= 0 else b""
        plain = line.strip() and line.isascii() and not any(c in line for c in b'"\r\x00')
        if end < 0 or not plain:
            return None
        return detect(line.decode().split(","))  # HeaderError as the row parser says it

    def __iter__(self) -> Iterator[ColumnBatch | Row]:
        if self._rows_mode:
            yield from self.ref
            return
        limit = min(self.ref.max_line, MAX_FIELD)
        width = self.layout.width
        needed, for_mig = self._needed_columns()
        workers = max(1, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers, thread_name_prefix="csv-block") as pool:
            queue: deque[Future[_Prepared]] = deque()
            blocks = self._blocks()
            done = False
            while True:
                # keep every core busy: one block in flight per core (memory: a few blocks)
                while not done and len(queue) < workers:
                    raw = next(blocks, None)
                    if raw is None:
                        done = True
                    else:
                        queue.append(pool.submit(_prepare, raw, width, limit, needed, for_mig))
                if not queue:
                    break
                prepared = queue.popleft().result()
                try:
                    batch = self._apply(prepared)
                except _Irregular:
                    rest = b"".join([prepared.raw, *(f.result().raw for f in queue)])
                    queue.clear()
                    yield from self._switch(rest + self._carry)
                    return
                if batch is not None:
                    yield batch
            if self._failure is not None:
                yield from self._switch(self._carry)

    def _needed_columns(self) -> tuple[list[int], list[int]]:
        """(the fields the column checks read, those the MIG check reads too)."""
        index = self.layout.index
        names = ["uuid", "hostname", "timestamp", "metric_name", "value", *WORKLOAD_LABELS]
        needed = [index[n] for n in names if n in index]
        needed += [pos for pos, _name, _strict in self.layout.metric_columns]
        for_mig = [index[n] for n in (INSTANCE_COLUMN, "labels_raw") if n in index]
        if INSTANCE_COLUMN in index:
            return needed + for_mig, []  # every block is checked for instances
        return needed, for_mig

    def _blocks(self) -> Iterator[bytes]:
        """Blocks of whole lines; gzip damage ends them, what was read before it left in
        `_carry` for the row parser (which then reports the damage)."""
        if self._pending:
            yield self._pending
        while True:
            carry, self._carry = self._carry, b""
            block = self._read_block(carry)
            if self._failure is not None:
                self._carry = block
                return
            if not block:
                return
            yield block

    def _switch(self, rest: bytes) -> Iterator[Row]:
        """The row parser reads everything from here on."""
        chain = _Chain(rest, self._binary, self._failure)
        text = text_of(chain, start=False)  # type: ignore[arg-type]
        self.ref.resume(text, self._line)
        yield from self.ref

    # --- one regular block -----------------------------------------------------------
    def _apply(self, prepared: _Prepared) -> ColumnBatch | None:
        """Counts, line numbers and checks of a prepared block, in file order."""
        ref = self.ref
        lengths, table = prepared.lengths, prepared.table
        if lengths is None or table is None or prepared.invalid is None:
            raise _Irregular
        lines = len(lengths)
        if self._line + lines > ref.max_lines:
            raise _Irregular  # the row parser stops at the exact line, with its message
        numbers = np.arange(self._line + 1, self._line + 1 + lines)[lengths > 0]
        self._line += lines
        ref._tick()
        # Arrow numbers the non-empty lines 1, 2, ... and skips those it cannot fit
        skipped = np.array([number - 1 for number, _, _ in prepared.invalid], dtype=np.int64)
        kept = np.ones(len(numbers), dtype=bool)
        kept[skipped] = False
        if int(kept.sum()) != table.num_rows:
            raise _Irregular  # Arrow saw the lines otherwise: let the reference read them
        wrong: list[tuple[int, int]] = []
        for number, count, text in prepared.invalid:
            cells = next(csv.reader([text]), [])
            if len(cells) <= 1 and not "".join(cells).strip():
                continue  # a blank line for the row parser: not a row
            wrong.append((int(numbers[number - 1]), count))
        ref.rows_read += int(kept.sum()) + len(wrong)
        self._mig_seen = INSTANCE_COLUMN in self.layout.index or prepared.mig
        assert prepared.ends is not None  # (a regular block has its line ends)
        source = _Lines(
            prepared.raw, prepared.ends, np.flatnonzero(lengths > 0)[kept], self.layout.width
        )
        return self._judge(table if table.num_rows else None, numbers[kept], wrong, source)

    def _judge(
        self,
        table: pa.Table | None,
        lines: np.ndarray,
        wrong: list[tuple[int, int]],
        source: _Lines,
    ) -> ColumnBatch | None:
        """Accept what the columns prove good; the reference judges the rest, in line order."""
        n = 0 if table is None else table.num_rows
        if n:
            doubt, uuid_codes, uuids, ts, samples = self._columns(table)
        else:
            doubt, uuid_codes, uuids, ts, samples = np.zeros(0, bool), None, [], None, None
        events = sorted(
            [(line, -1, count) for line, count in wrong]
            + [(int(lines[i]), int(i), 0) for i in np.flatnonzero(doubt)]
        )
        extra: list[tuple[int, Row]] = []
        doubted = [index for _, index, _ in events if index >= 0]
        fields_of = dict(zip(doubted, source.fields(doubted), strict=True))
        for line, index, count in events:
            if index < 0:
                self.ref._reject(line, f"expected {self.layout.width} fields, found {count}")
                continue
            row = self.ref._checked(fields_of[index], line, self._convert)
            if row is not None:
                self.ref.accepted += 1
                extra.append((index, row))
        if not n:
            return None
        fast = ~doubt
        self.ref.accepted += int(fast.sum())
        return self._batch(table, fast, uuid_codes, uuids, ts, samples, extra, lines, source)

    @property
    def _convert(self) -> Any:
        return self.ref._long_row if self.format == LONG else self.ref._wide_row

    def _column(self, table: pa.Table, name: str) -> pa.Array | None:
        pos = self.layout.index.get(name)
        return None if pos is None else _cell_column(table, pos)

    def _columns(self, table: pa.Table) -> tuple:
        """(doubt mask, uuid codes, uuids, ts per row, (metric, value, row) per sample)."""
        n = table.num_rows
        doubt = np.zeros(n, dtype=bool)
        uuid_codes, uuids, bad = self._distinct(self._column(table, "uuid"), self._uuid_ok)
        doubt |= bad
        _, _, bad = self._distinct(self._column(table, "hostname"), self._host_ok)
        doubt |= bad
        ts, bad = self._times(self._column(table, "timestamp"))
        doubt |= bad
        doubt |= self._mig(table)
        if self.format == LONG:
            samples, bad = self._long_values(table)
        else:
            samples, bad = self._wide_values(table)
        doubt |= bad
        doubt |= self._metric_limit(uuid_codes, uuids, samples, n)
        return doubt, uuid_codes, uuids, ts, samples

    def _distinct(self, column: pa.Array, ok: Any) -> tuple[np.ndarray, list[str], np.ndarray]:
        encoded = pc.dictionary_encode(column)
        codes = encoded.indices.to_numpy(zero_copy_only=False)
        values = encoded.dictionary.to_pylist()
        good = np.array([ok(v) for v in values], dtype=bool)
        return codes, values, ~good[codes] if len(values) else np.zeros(len(codes), bool)

    def _segment_ok(self, text: str, kind: str) -> bool:
        key = f"{kind}\x00{text}"
        found = self._good.get(key)
        if found is None:
            try:
                found = bool(text) and text == text.strip() and bool(check_segment(text, kind))
            except InvalidSegment:
                found = False
            self._good[key] = found
        return found

    def _uuid_ok(self, text: str) -> bool:
        return self._segment_ok(text, "uuid")

    def _host_ok(self, text: str) -> bool:
        return self._segment_ok(text, "hostname")

    def _times(self, column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        codes, values, _ = self._distinct(column, lambda v: True)
        ref = self.ref
        parsed = []
        for text in values:
            ms = self._ts_of.get(text, -1)
            if ms == -1:
                try:
                    ms = ref._ts(text)
                except ValueError:
                    ms = None
                self._ts_of[text] = ms
            parsed.append(-1 if ms is None or ms > ref._latest else ms)
        if len(self._ts_of) > 65536:
            self._ts_of.clear()  # a file of ever new times must not grow this without end
        times = np.array(parsed, dtype=np.int64)[codes] if values else np.zeros(0, np.int64)
        return times, times < 0

    def _mig(self, table: pa.Table) -> np.ndarray:
        n = table.num_rows
        doubt = np.zeros(n, dtype=bool)
        if not self._mig_seen:
            return doubt
        instance = self._column(table, INSTANCE_COLUMN)
        if instance is not None:
            doubt |= pc.not_equal(instance, "").to_numpy(zero_copy_only=False)
        labels = self._column(table, "labels_raw")
        if labels is not None:
            doubt |= pc.match_substring(labels, INSTANCE_LABEL).to_numpy(zero_copy_only=False)
        return doubt

    def _metric_ok(self, text: str) -> bool:
        key = f"metric\x00{text}"
        found = self._good.get(key)
        if found is None:
            found = (
                bool(text)
                and text == text.strip()
                and len(text) <= MAX_METRIC_NAME
                and text.isprintable()
            )
            self._good[key] = found
        return found

    def _metric_code(self, name: str) -> int:
        code = self._names.get(name)
        if code is None:
            code = self._names[name] = len(self._name_list)
            self._name_list.append(name)
        return code

    @staticmethod
    def _numbers(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """(values, plain) of a text column: plain where Arrow's float equals float()'s."""
        plain = pc.match_substring_regex(column, _PLAIN)
        values = pc.cast(pc.if_else(plain, column, "0"), pa.float64()).to_numpy()
        plain_np = plain.to_numpy(zero_copy_only=False) & (np.abs(values) < DCGM_INT32_BLANK)
        return values, plain_np

    def _long_values(self, table: pa.Table) -> tuple[tuple, np.ndarray]:
        codes, names, bad_name = self._distinct(self._column(table, "metric_name"), self._metric_ok)
        # only good names get a code: a refused name never reaches a chunk's name list
        mapping = np.array(
            [self._metric_code(m) if self._metric_ok(m) else -1 for m in names], dtype=np.int32
        )
        values, plain = self._numbers(self._column(table, "value"))
        metric = mapping[codes] if len(names) else np.zeros(0, np.int32)
        rows = np.arange(table.num_rows)
        return (metric, values, rows), bad_name | ~plain

    def _wide_values(self, table: pa.Table) -> tuple[tuple, np.ndarray]:
        n = table.num_rows
        doubt = np.zeros(n, dtype=bool)
        present = np.zeros(n, dtype=bool)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for pos, name, _strict in self.layout.metric_columns:
            column = _cell_column(table, pos)
            empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
            values, plain = self._numbers(column)
            doubt |= ~empty & ~plain
            has = ~empty & plain
            present |= has
            rows = np.flatnonzero(has)
            code = self._metric_code(name)
            parts.append((np.full(rows.size, code, np.int32), values[rows], rows))
        doubt |= ~present  # no value at all: the reference says why
        if not parts:
            empty_i = np.zeros(0, np.int64)
            return (np.zeros(0, np.int32), np.zeros(0), empty_i), doubt
        metric = np.concatenate([p[0] for p in parts])
        values = np.concatenate([p[1] for p in parts])
        rows = np.concatenate([p[2] for p in parts])
        order = np.argsort(rows, kind="stable")  # row order, columns in header order
        return (metric[order], values[order], rows[order]), doubt

    def _metric_limit(
        self, uuid_codes: np.ndarray, uuids: list[str], samples: tuple, n: int
    ) -> np.ndarray:
        """Doubt every row of a GPU that could reach INGEST_MAX_METRICS_PER_GPU here: the
        reference then decides those rows one by one, in order."""
        metric, _values, rows = samples
        doubt = np.zeros(n, dtype=bool)
        if not len(uuids) or not len(metric):
            return doubt
        limit = self.ref.max_metrics_per_gpu
        if self._most_known + len(self._name_list) <= limit:
            return doubt  # no GPU can reach the limit in this batch
        gpu_of_sample = uuid_codes[rows]
        pairs = np.unique(gpu_of_sample.astype(np.int64) << 32 | metric.astype(np.int64))
        known = self.ref._metrics_of
        for code in np.unique(pairs >> 32):
            uuid = uuids[int(code)]
            names = {self._name_list[int(m)] for m in pairs[(pairs >> 32) == code] & 0xFFFFFFFF}
            have = known.get(uuid, set())
            if len(have | names) > limit:
                doubt |= uuid_codes == code
        return doubt

    def _batch(
        self,
        table: pa.Table,
        fast: np.ndarray,
        uuid_codes: np.ndarray,
        uuids: list[str],
        ts: np.ndarray,
        samples: tuple,
        extra: list[tuple[int, Row]],
        lines: np.ndarray,
        source: _Lines,
    ) -> ColumnBatch | None:
        metric, values, rows = samples
        keep = fast[rows]
        metric, values, rows = metric[keep], values[keep], rows[keep]
        gpu = uuid_codes[rows].astype(np.int32)
        times = ts[rows]
        self._register(gpu, metric, uuids)
        record_uuids = list(uuids)
        if extra:
            gpu, times, metric, values, rows = self._merge(
                extra, record_uuids, gpu, times, metric, values, rows
            )
        # after the merge: rows judged by the row parser may have named new metrics
        names = list(self._name_list)
        if not len(times):
            return None
        row_work, workloads = self._workloads(table)
        return ColumnBatch(
            uuids=record_uuids,
            facts_rows=_LazyRows(lambda: self._facts_rows(source, record_uuids, gpu, rows, extra)),
            names=names,
            gpu=gpu,
            ts=times,
            metric=metric,
            value=values,
            line=lines[rows],
            work=row_work[rows],
            workloads=workloads,
        )

    def _workloads(self, table: pa.Table) -> tuple[np.ndarray, list[dict]]:
        """Each row's workload (its container, pod and namespace cells, stripped and
        non-empty, as workloads.csv_workload reads a row) as an index into a list."""
        columns = [(n, self.layout.index[n]) for n in WORKLOAD_LABELS if n in self.layout.index]
        n = table.num_rows
        texts = [_cell_column(table, pos) for _, pos in columns]
        if not texts or all(pc.all(pc.equal(t, "")).as_py() for t in texts):
            return np.zeros(n, dtype=np.int32), [{}]
        joined = pc.binary_join_element_wise(*texts, "\x00")
        encoded = pc.dictionary_encode(joined)
        workloads = []
        for value in encoded.dictionary.to_pylist():
            cells = value.split("\x00")
            workloads.append(
                {name: v.strip() for (name, _), v in zip(columns, cells, strict=True) if v.strip()}
            )
        return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int32), workloads

    def _register(self, gpu: np.ndarray, metric: np.ndarray, uuids: list[str]) -> None:
        """Fast rows' metrics join their GPU's known set, as _check_metric_count does
        (a GPU at a time: a block holds each GPU's few metrics many times)."""
        if not len(gpu):
            return
        pairs = _pairs(gpu, metric)
        # only the (GPU, metric) pairs no earlier block registered: usually none, and the
        # loop below over every GPU of every block was a tenth of the main thread's parse
        ids = self._gpu_ids(uuids)
        global_pairs = ids[pairs >> 32] << 32 | (pairs & 0xFFFFFFFF)
        new = ~_contains(self._registered, global_pairs)
        if not new.any():
            return
        pairs = pairs[new]
        self._registered = np.union1d(self._registered, global_pairs[new])
        codes = pairs >> 32
        cuts = np.flatnonzero(np.diff(codes)) + 1
        known = self.ref._metrics_of
        starts = [0, *cuts.tolist()]
        for start, part in zip(starts, np.split(pairs & 0xFFFFFFFF, cuts), strict=True):
            uuid = uuids[int(codes[start])]
            names = {self._name_list[m] for m in part.tolist()}
            have = known.get(uuid)
            if have is None:
                have = known[uuid] = set()
            elif names <= have:
                continue
            have |= names
            self._most_known = max(self._most_known, len(have))

    def _gpu_ids(self, uuids: list[str]) -> np.ndarray:
        """A file-wide number for each of a batch's GPUs (batch codes are per block)."""
        ids = self._gpu_id
        return np.fromiter((ids.setdefault(u, len(ids)) for u in uuids), np.int64, len(uuids))

    def _merge(
        self,
        extra: list[tuple[int, Row]],
        uuids: list[str],
        gpu: np.ndarray,
        times: np.ndarray,
        metric: np.ndarray,
        values: np.ndarray,
        rows: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """The reference's accepted rows put back among the fast ones, in row order."""
        index = {u: i for i, u in enumerate(uuids)}
        e_gpu, e_ts, e_metric, e_value, e_rows = [], [], [], [], []
        for row_index, row in extra:
            code = index.get(row.uuid)
            if code is None:
                code = index[row.uuid] = len(uuids)
                uuids.append(row.uuid)
            for name, value in row.values:
                e_gpu.append(code)
                e_ts.append(row.ts)
                e_metric.append(self._metric_code(name))
                e_value.append(value)
                e_rows.append(row_index)
        gpu = np.concatenate([gpu, np.array(e_gpu, np.int32)])
        times = np.concatenate([times, np.array(e_ts, np.int64)])
        metric = np.concatenate([metric, np.array(e_metric, np.int32)])
        values = np.concatenate([values, np.array(e_value, np.float64)])
        rows = np.concatenate([rows, np.array(e_rows, np.int64)])
        order = np.argsort(rows, kind="stable")
        return gpu[order], times[order], metric[order], values[order], rows[order]

    def _facts_rows(
        self,
        source: _Lines,
        uuids: list[str],
        gpu: np.ndarray,
        rows: np.ndarray,
        extra: list[tuple[int, Row]],
    ) -> list[Row]:
        by_index = dict(extra)
        out: list[Row | None] = [None] * len(uuids)
        # each GPU's first sample: minimum.at over the small GPU codes, not np.unique's
        # sort of every sample (that sort was the largest cost of this function)
        first_at = np.full(len(uuids), len(gpu), dtype=np.int64)
        np.minimum.at(first_at, gpu, np.arange(len(gpu)))
        codes = np.flatnonzero(first_at < len(gpu))
        first = first_at[codes]
        wanted = [(c, int(rows[at])) for c, at in zip(codes.tolist(), first.tolist(), strict=True)]
        fast = [(c, r) for c, r in wanted if r not in by_index]
        for code, row_index in wanted:
            out[code] = by_index.get(row_index)
        if fast:
            host_pos = self.layout.index["hostname"]
            every = source.fields([r for _, r in fast])
            for (code, _r), fields in zip(fast, every, strict=True):
                out[code] = Row(uuids[code], fields[host_pos], 0, [], fields)
        empty = [Row(u, "", 0, [], []) for u in uuids]
        return [r if r is not None else e for r, e in zip(out, empty, strict=True)]


__all__ = ["BLOCK_BYTES", "ColumnBatch", "ColumnarParser", "TooLarge"]
