"""Group accepted rows per GPU and cut them into chunks of about `chunk_rows` samples.

Rows are buffered per GPU up to `buffer_rows` samples (the memory bound: a row
that would go past it flushes first, so only a single row wider than the bound
can exceed it; a bound below `chunk_rows` is raised to `chunk_rows`). A flush
packs every buffer into chunks, a GPU's samples together when they fit in one,
so a chunk carries few GPUs with many samples each and the worker writes big
blocks. Chunks are numbered 0, 1, 2, ... in the order they are emitted.

The columnar parser's batches are gathered (SETTLE_SAMPLES) and put in GPU order
together; a row fed after them waits until they are in their buffers, so every GPU's
samples stay in file order.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from apps.ingest import workloads
from apps.ingest.parsing import Row, RowFacts

if TYPE_CHECKING:
    from apps.ingest.columnar import ColumnBatch


@dataclass
class GpuBuffer:
    facts: dict
    ts: array = field(default_factory=lambda: array("q"))
    metric: array = field(default_factory=lambda: array("i"))  # 4 bytes: the buffer is 20 B/sample
    value: array = field(default_factory=lambda: array("d"))
    periods: list = field(default_factory=list)  # workload periods (apps/ingest/workloads.py)

    def __len__(self) -> int:
        return len(self.ts)

    def part(self, start: int, stop: int) -> GpuBuffer:
        ts = self.ts[start:stop]
        periods = workloads.within(self.periods, min(ts), max(ts)) if ts else []
        return GpuBuffer(self.facts, ts, self.metric[start:stop], self.value[start:stop], periods)


@dataclass
class Chunk:
    """What one worker task persists: some GPUs' samples, metric names shared."""

    seq: int
    names: list[str]
    gpus: list[GpuBuffer]

    @property
    def samples(self) -> int:
        return sum(len(g) for g in self.gpus)


# Samples of column batches gathered before they are put in GPU order: the loop over
# GPUs then runs once per this many samples, not once per Arrow block (a block of a
# time-ordered file holds every GPU with a few samples each). Memory: 40 B a pending
# sample, ~125 B while they settle (16 MB at this size).
SETTLE_SAMPLES = 131_072


class Chunker:
    """Feed accepted rows with `add`; `finish` flushes the rest. `emit` gets each Chunk."""

    def __init__(
        self,
        emit: Callable[[Chunk], None],
        facts: RowFacts,
        chunk_rows: int,
        buffer_rows: int,
        workload: workloads.RowWorkload = workloads.no_workload,
        first_seq: int = 0,
    ) -> None:
        self._emit = emit
        self._facts = facts
        self._workload = workload
        self._chunk_rows = chunk_rows
        self._buffer_rows = max(buffer_rows, chunk_rows)
        self._names: list[str] = []
        self._name_ix: dict[str, int] = {}
        self._slots: list[GpuBuffer] = []  # the GPUs' buffers, in the order first seen
        self._slot_of: dict[str, int] = {}  # a uuid's index in `_slots`
        self._pending: list[tuple[np.ndarray, ...]] = []  # batches' columns, not yet settled
        self._pending_samples = 0
        self._pending_work: list[dict] = []  # the pending batches' workloads, distinct
        self._work_of: dict[tuple, int] = {}
        self._held = 0
        self.chunks = 0
        self.next_seq = first_seq  # a series' jobs number their chunks on (jobs.JobSeries)
        self.samples = 0

    def add(self, row: Row | ColumnBatch) -> None:
        """One row, or a ColumnBatch of rows (what the columnar parser yields)."""
        if not isinstance(row, Row):
            self.add_batch(row)
            return
        if not row.values:
            return  # a row of DCGM blanks only: nothing to store, no facts to take
        if self._held and self._held + len(row.values) > self._buffer_rows:
            self._flush()
        self._settle()  # batches before this row: their samples come first
        buf = self._slots[self._slot(row.uuid, row)]
        workloads.note(buf.periods, row.ts, self._workload(row))
        for name, value in row.values:
            ix = self._name_ix.get(name)
            if ix is None:
                ix = self._name_ix[name] = len(self._names)
                self._names.append(name)
            buf.ts.append(row.ts)
            buf.metric.append(ix)
            buf.value.append(value)
        self._held += len(row.values)

    def add_batch(self, batch: ColumnBatch) -> None:
        """Every sample of `batch`, each GPU's in batch order; facts from its facts row.

        The batch's codes are made the chunker's own (GPU slots, metric and workload
        indexes); batches are then gathered up to SETTLE_SAMPLES and put in GPU order
        together (`_settle`)."""
        if self._held and self._held + len(batch) > self._buffer_rows:
            self._flush()
        if not len(batch):
            return
        names = np.array([self._name(name) for name in batch.names], dtype=np.int64)
        slots = np.zeros(len(batch.uuids), dtype=np.int64)
        for code in np.unique(batch.gpu).tolist():
            slot = self._slot_of.get(batch.uuids[code])
            if slot is None:  # first seen here: its facts from this batch's facts row
                slot = self._slot(batch.uuids[code], batch.facts_rows[code])
            slots[code] = slot
        work = np.array([self._work_ix(labels) for labels in batch.workloads], dtype=np.int64)
        self._pending.append(
            (
                slots[batch.gpu],
                batch.ts.astype(np.int64, copy=False),
                names[batch.metric],
                batch.value.astype(np.float64, copy=False),
                work[batch.work],
            )
        )
        self._pending_samples += len(batch)
        self._held += len(batch)
        if self._held >= self._buffer_rows:
            self._flush()
        elif self._pending_samples >= SETTLE_SAMPLES:
            self._settle()

    def _work_ix(self, labels: dict) -> int:
        """The pending batches' index of `labels` (equal labels share one: their runs join)."""
        key = tuple(labels.items())
        ix = self._work_of.get(key)
        if ix is None:
            ix = self._work_of[key] = len(self._pending_work)
            self._pending_work.append(labels)
        return ix

    def _slot(self, uuid: str, facts_row: Row) -> int:
        slot = self._slot_of.get(uuid)
        if slot is None:
            slot = self._slot_of[uuid] = len(self._slots)
            self._slots.append(GpuBuffer(self._facts(facts_row)))
        return slot

    def _settle(self) -> None:
        """The pending batches' samples into their GPU buffers, each GPU's in batch order.

        Put in GPU order once (numpy); the loop over GPUs then only appends contiguous
        slices and notes each GPU's workload runs, their first and last times taken for
        all runs at once (reduceat)."""
        if not self._pending:
            return
        columns = zip(*self._pending, strict=True)
        slot, ts, metric, value, work = (np.concatenate(parts) for parts in columns)
        labels = self._pending_work
        self._pending, self._pending_work, self._pending_samples = [], [], 0
        self._work_of.clear()
        order = np.argsort(slot, kind="stable")
        codes = slot[order]
        ts = ts[order]
        value = value[order]
        metric = metric[order].astype(np.dtype(f"i{array('i').itemsize}"))
        work = work[order]
        gpu_cuts = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        # a run: consecutive samples of one GPU with one workload (the periods noted)
        runs = np.flatnonzero((codes[1:] != codes[:-1]) | (work[1:] != work[:-1])) + 1
        run_starts = np.concatenate([[0], runs])
        firsts = np.minimum.reduceat(ts, run_starts).tolist()
        lasts = np.maximum.reduceat(ts, run_starts).tolist()
        run_work = work[run_starts].tolist()
        run_starts_list = run_starts.tolist()
        starts = [0, *gpu_cuts.tolist()]
        stops = [*starts[1:], len(codes)]
        # bytes views, sliced per GPU: no numpy slice nor copy before the buffer's own
        ts_b, metric_b, value_b = (memoryview(a).cast("B") for a in (ts, metric, value))
        ts_w, metric_w, value_w = ts.itemsize, metric.itemsize, value.itemsize
        run = 0
        for start, stop, code in zip(starts, stops, codes[starts].tolist(), strict=True):
            buf = self._slots[code]
            while run < len(run_starts_list) and run_starts_list[run] < stop:
                workloads.note_span(buf.periods, firsts[run], lasts[run], labels[run_work[run]])
                run += 1
            buf.ts.frombytes(ts_b[start * ts_w : stop * ts_w])
            buf.metric.frombytes(metric_b[start * metric_w : stop * metric_w])
            buf.value.frombytes(value_b[start * value_w : stop * value_w])

    def _name(self, name: str) -> int:
        ix = self._name_ix.get(name)
        if ix is None:
            ix = self._name_ix[name] = len(self._names)
            self._names.append(name)
        return ix

    def finish(self) -> None:
        self._flush()

    def _flush(self) -> None:
        self._settle()
        pending: list[GpuBuffer] = []
        size = 0
        for buf in self._slots:
            for start in range(0, len(buf), self._chunk_rows):
                piece = buf.part(start, start + self._chunk_rows)
                if pending and size + len(piece) > self._chunk_rows:
                    self._send(pending)
                    pending, size = [], 0
                pending.append(piece)
                size += len(piece)
        if pending:
            self._send(pending)
        self._slots.clear()
        self._slot_of.clear()
        self._held = 0

    def _send(self, gpus: list[GpuBuffer]) -> None:
        chunk = Chunk(self.next_seq, list(self._names), gpus)
        self.next_seq += 1  # taken even when `emit` refuses the chunk: never reused
        self._emit(chunk)
        # counted once emitted: a chunk refused (a quota, the broker down) holds none
        self.chunks += 1
        self.samples += chunk.samples
