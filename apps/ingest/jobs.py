"""The ingest job: one lifecycle for every way rows come in.

The upload and the `ingest` command (service.ingest, a whole file in one send), the `stream`
command (a batch per send) and the `scrape` command (a scrape round per send) all feed a `Job`.
Its document `{root}/jobs/{id}` (store/jobs.py) is written:

- before the job's first chunk is enqueued (state "parsing", shown as running), so no chunk
  is ever queued for a job etcd does not know; a job that enqueues nothing is never written
  (but one whose first chunk its writer's quota refused: saved failed, naming the quota).
  The job takes its upload sequence then (store/jobs.py::new_upload_seq), and every chunk
  carries it: the newest upload of a sample wins (store/order.py). The jobs of a series
  (JobSeries) share one, their chunks numbered on: a live source is one upload;
- while it is parsed, at least every INGEST_JOB_HEARTBEAT as rows come in (`updated_at`
  and the counts so far), so a job whose process died is shown failed after
  INGEST_JOB_STALE with the counts it reached;
- when it ends: "parsed" (done once every chunk is stored) by `close`, or "failed" with the
  counts so far when a send raised after the document was written (best effort: etcd may be
  why it failed; the chunks already enqueued are still stored).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
from celery import current_app
from django.conf import settings
from kombu.exceptions import OperationalError

from apps.ingest.chunking import Chunk, Chunker
from apps.ingest.columnar import ColumnBatch
from apps.ingest.parsing import Row, RowError, RowFacts
from apps.ingest.workloads import RowWorkload, no_workload
from store import default_keys
from store.errors import Answer, StoreError
from store.horizon import Horizon
from store.jobs import new_job_id, new_upload_seq, save_job
from store.keys import Keys, check_segment
from store.tiers import tiers
from workers import payload

log = logging.getLogger(__name__)

PERSIST_TASK = "workers.persist_chunk"


class Tally(Protocol):
    """Rows read, accepted and rejected so far, with the first errors (a Parser is one);
    `blank`: DCGM blank values read as "no value" (not stored)."""

    rows_read: int
    accepted: int
    rejected: int
    blank: int
    errors: list[RowError]


@dataclass
class Counts:
    rows_read: int = 0
    accepted: int = 0
    rejected: int = 0
    blank: int = 0
    errors: list[RowError] = field(default_factory=list)


class BrokerUnavailable(OperationalError):
    """The task broker refused a chunk (still a kombu OperationalError for its callers)."""

    answer = Answer(503, "UNAVAILABLE", retry_after=5)


def enqueue(chunk: Chunk, root: str, job_id: str, upload: int = 0) -> None:
    """One chunk task, by name: ingest never imports the tasks (pyproject's import contracts).

    Raises BrokerUnavailable."""
    try:
        body = payload.encode(chunk, root, job_id, upload, settings.CHUNK_PAYLOAD_VERSION)
        # argsrepr: what inspect and monitors show of the task; Celery's own is a repr of
        # the payload's bytes cut at 1 KB (~0.5 ms a chunk, and of no use to anyone)
        shown = f"(chunk {chunk.seq} of job {job_id}: {chunk.samples} samples)"
        current_app.send_task(PERSIST_TASK, args=[body], serializer="msgpack", argsrepr=shown)
    except OperationalError as exc:
        raise BrokerUnavailable(f"the task broker is unavailable: {exc}") from exc


# A series takes a new upload sequence once its chunk numbers pass this: block keys hold six
# digits of them (store/keys.py), which leaves a job of the series 499,999 chunks.
CHUNKS_PER_SHARED_UPLOAD = 500_000


@dataclass
class SharedUpload:
    """One upload sequence for a series of jobs, their chunks numbered on from job to job.

    A live source (the stream and scrape commands, remote write) is one upload: its later
    chunks win, as a file's later rows do, and compaction merges a window of it into one
    block. With a sequence per job (a minute), a window kept a block per job forever:
    compaction keeps one per upload (store/order.py), and reads list and decode each."""

    seq: int | None = None  # taken by the first job that enqueues a chunk
    next_chunk: int = 0


class Job:
    """One ingest job: its document, its chunker, and when the document is saved.

    `send` cuts its rows into chunks and enqueues every one of them before it
    returns: a send is never held back to fill a chunk with the next one.
    A `send` that raises closes the job: it is saved as failed (best effort) when
    it was saved already, and the error is raised again. Chunk numbers of a job
    cannot be reused, so the caller sends the rest to a new Job (JobSeries
    does). `chunks_expected` counts the chunks actually enqueued. Not thread-safe.
    """

    def __init__(
        self,
        *,
        source: str,
        cluster: str | None,
        fmt: str,
        on_chunk: Callable[[Chunk], None] | None = None,
        resume: tuple[str, str, int] | None = None,
        shared: SharedUpload | None = None,
        on_unsent: Callable[[Chunk], None] | None = None,
    ) -> None:
        """`on_chunk` sees each chunk before it is enqueued (the upload's quota and retention
        tally), once the job is saved; what it raises refuses the chunk and fails the job.
        `on_unsent` sees a chunk `on_chunk` saw that the broker then refused (a refund).

        `resume` (job id, etcd root, upload sequence): continue a job whose document the
        upload already saved (`save_queued`; a large upload parsed in a worker, whose
        ETCD_PREFIX may not be the root the upload chose).

        `shared`: the upload sequence of a series of jobs (JobSeries), and the number this
        job's first chunk takes."""
        self.cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
        self._on_chunk = on_chunk
        self._on_unsent = on_unsent
        self._shared = shared
        self.job: dict[str, Any] = {
            "id": resume[0] if resume else new_job_id(),
            "source": source[:500],
            "cluster": self.cluster,
            "format": fmt,
            "state": "parsing",
            "created_at": int(time.time() * 1000),
        }
        self.closed = False
        self._keys = Keys(resume[1]) if resume else default_keys()
        self._started = time.monotonic()
        self._saved = resume is not None
        if resume:
            self.job["upload_seq"] = resume[2]
        self._last_save = 0.0
        self._enqueued = 0
        self._samples = 0  # in the chunks enqueued
        self._totals = Counts()
        self._current: Tally | None = None  # the running send's tally, when it keeps one
        self._facts: RowFacts = lambda row: {}
        self._workload: RowWorkload = no_workload
        self._chunker = Chunker(
            emit=self._emit,
            facts=lambda row: self._facts(row),
            workload=lambda row: self._workload(row),
            chunk_rows=settings.INGEST_CHUNK_ROWS,
            buffer_rows=settings.INGEST_BUFFER_ROWS,
            first_seq=shared.next_chunk if shared else 0,
        )

    @property
    def id(self) -> str:
        return self.job["id"]

    @property
    def saved(self) -> bool:
        return self._saved

    def send(
        self,
        rows: Iterable[Row],
        facts: RowFacts,
        *,
        rejected: int = 0,
        errors: Iterable[RowError] = (),
        accepted: int | None = None,
        tally: Tally | None = None,
        workload: RowWorkload = no_workload,
    ) -> int:
        """Enqueue `rows` (facts of a GPU come from `facts(row)` of its first row in a
        chunk) and count `rejected` more rows read; returns the samples enqueued.

        `accepted` is how many input rows `rows` stands for when that is not one
        per Row (a scrape groups a GPU's sample lines into one Row). With `tally`
        (the parser that yields `rows`), the counts are read from it instead, also
        while the send runs: a document saved mid-send shows the counts so far.
        `workload(row)` gives a row's pod/namespace/container (apps/ingest/workloads.py)."""
        if self.closed:
            raise RuntimeError(f"job {self.id} is closed")
        self._facts = facts
        self._workload = workload
        self._current = tally
        before = self._chunker.samples
        count = 0
        try:
            for row in rows:
                self._chunker.add(row)
                count += 1
            self._chunker.finish()
        except Exception as exc:
            self.fail(exc)
            raise
        if tally is None:
            accepted = count if accepted is None else accepted
            tally = Counts(accepted + rejected, accepted, rejected, errors=list(errors))
        self._current = None
        self._add(tally)
        return self._chunker.samples - before

    def fail(self, exc: BaseException) -> None:
        """Close the job: saved as failed with the counts so far when it was saved (best
        effort: etcd may be why it failed)."""
        self.closed = True
        if self._saved:
            self._update("failed", error=str(exc))
            with contextlib.suppress(StoreError):
                save_job(self._keys, self.job)

    def close(self, keep_refusals: bool = False) -> dict[str, Any] | None:
        """Save the final document; None when the job never enqueued a chunk (not written).
        With `keep_refusals`, a job that enqueued nothing but refused rows is saved failed,
        its errors listed: a stream's refusals stay visible (an upload answers them)."""
        if self.closed:
            return self.job if self._saved else None
        self.closed = True
        if not self._saved:
            if not (keep_refusals and self._totals.rejected):
                return None
            self._update("failed", error=f"no row accepted: {self._totals.rejected} refused")
            save_job(self._keys, self.job)
            self._saved = True
            return self.job
        self._update("parsed")
        save_job(self._keys, self.job)
        return self.job

    def summary(self) -> dict[str, Any]:
        """The document as it stands (state "parsed"), saved or not: what a refusal reports."""
        self._update("parsed")
        return self.job

    def _add(self, tally: Tally) -> None:
        self._totals.rows_read += tally.rows_read
        self._totals.accepted += tally.accepted
        self._totals.rejected += tally.rejected
        self._totals.blank += tally.blank
        room = settings.INGEST_MAX_ERRORS - len(self._totals.errors)
        self._totals.errors.extend(list(tally.errors)[: max(room, 0)])

    def alive(self) -> None:
        """Save the document with the counts so far when INGEST_JOB_HEARTBEAT has passed
        since the last save (only once it was saved): a job whose process dies shows them."""
        if self._saved and time.monotonic() - self._last_save >= settings.INGEST_JOB_HEARTBEAT:
            self._save("parsing")

    def _save(self, state: str) -> None:
        self._update(state)
        save_job(self._keys, self.job)
        self._last_save = time.monotonic()

    def save_queued(self) -> tuple[str, str, int]:
        """Save the document now (state "parsing", no counts yet), with its upload
        sequence: a large upload's job, answered before a worker parses it. Returns what
        that worker's Job resumes from."""
        self.job["upload_seq"] = new_upload_seq(self._keys, self.cluster)
        self._save("parsing")
        self._saved = True
        return self.id, self._keys.root, self.job["upload_seq"]

    def _emit(self, chunk: Chunk) -> None:
        if self._shared is not None:
            self._shared.next_chunk = chunk.seq + 1  # taken, even if it is never enqueued
        if not self._saved:
            self.job["upload_seq"] = self._upload_seq()
            self._save("parsing")
            self._saved = True
        if self._on_chunk is not None:  # after the save: a chunk it refuses fails a saved job
            self._on_chunk(chunk)
        try:
            enqueue(chunk, self._keys.root, self.id, self.job["upload_seq"])
        except BaseException:
            if self._on_unsent is not None:
                self._on_unsent(chunk)
            raise
        self._enqueued += 1
        self._samples += chunk.samples
        self.alive()

    def _upload_seq(self) -> int:
        if self._shared is None:
            return new_upload_seq(self._keys, self.cluster)
        if self._shared.seq is None:
            self._shared.seq = new_upload_seq(self._keys, self.cluster)
        return self._shared.seq

    def _update(self, state: str, error: str = "") -> None:
        totals, current = self._totals, self._current or Counts()
        errors = (totals.errors + list(current.errors))[: settings.INGEST_MAX_ERRORS]
        self.job.update(
            state=state,
            error=error,
            rows_read=totals.rows_read + current.rows_read,
            rows_accepted=totals.accepted + current.accepted,
            rows_rejected=totals.rejected + current.rejected,
            blank=totals.blank + current.blank,
            samples=self._samples,
            errors=[asdict(e) for e in errors],
            chunks_expected=self._enqueued,
            parse_seconds=round(time.monotonic() - self._started, 3),
            updated_at=int(time.time() * 1000),
        )


class JobSeries:
    """Rows sent as a series of jobs, a new one every `span` seconds (0: one job per send).

    The stream and scrape commands run for days: one job per batch would leave a
    job document per second in etcd (each kept for JOB_RETENTION), one job for
    the whole run would never be done. A job opened at t takes the sends until
    t + span; the first send after that, or `tick`, closes it. Thread-safe: the
    scraper's endpoint threads share one series (sends are serialized).

    Each job checks its rows against the time policy as uploads do (store/horizon.py):
    rows older than every tier keeps, counted back from their GPU's newest sample, are
    refused and counted as rejected with the reason (`refused_as_too_old` counts them for
    the whole series), and the job's document says at close, in `retention`, which rows
    each tier keeps only as rollups. One batch check per GPU and send.

    The jobs share one upload sequence (SharedUpload): the series is one upload.
    """

    def __init__(
        self,
        *,
        source: str,
        cluster: str | None,
        fmt: str,
        span: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
        self.source = source
        self.fmt = fmt
        self.span = span
        self.jobs_closed = 0
        self.jobs_failed = 0
        self.last_job_id = ""
        self._clock = clock
        self._lock = threading.Lock()
        self.refused_as_too_old = 0
        self._job: Job | None = None
        self._upload = SharedUpload()
        self._horizon: Horizon | None = None
        self._opened = 0.0

    def send(
        self,
        rows: Iterable[Row],
        facts: RowFacts,
        *,
        rejected: int = 0,
        errors: Iterable[RowError] = (),
        accepted: int | None = None,
        workload: RowWorkload = no_workload,
    ) -> int:
        """Job.send on the current job; a failed send leaves the next send a new job."""
        with self._lock:
            if self._job is not None and self._clock() - self._opened >= self.span:
                self._close_current()
            if self._job is None:
                horizon = self._horizon = Horizon(default_keys(), tiers(), self.cluster)
                if self._upload.next_chunk >= CHUNKS_PER_SHARED_UPLOAD:
                    self._upload = SharedUpload()
                self._job = Job(
                    source=self.source,
                    cluster=self.cluster,
                    fmt=self.fmt,
                    on_chunk=lambda chunk: _observe(horizon, chunk),
                    shared=self._upload,
                )
                self._opened = self._clock()
            job, horizon = self._job, self._horizon
            assert horizon is not None
            try:
                try:
                    rows, refused = _within_horizon(list(rows), horizon)
                except Exception as exc:  # etcd down reading the GPUs' newest samples
                    job.fail(exc)
                    raise
                if refused:
                    rejected, errors, accepted = _count_refused(refused, rejected, errors, accepted)
                    self.refused_as_too_old += len(refused)
                samples = job.send(
                    rows,
                    facts,
                    rejected=rejected,
                    errors=errors,
                    accepted=accepted,
                    workload=workload,
                )
            except Exception:
                self._job = None
                self.jobs_failed += 1
                raise
            if job.saved:
                self.last_job_id = job.job["id"]
            if self.span <= 0:
                self._close_current()
            return samples

    def tick(self) -> None:
        """Close the current job when its span is over, even without a new send."""
        with self._lock:
            if self._job is not None and self._clock() - self._opened >= self.span:
                self._close_current()

    def close(self) -> None:
        with self._lock:
            self._close_current()

    def _close_current(self) -> None:
        job, self._job = self._job, None
        if job is None:
            return
        if self._horizon is not None:
            job.job["retention"] = self._horizon.summary()
        try:
            closed = job.close(keep_refusals=True)
        except StoreError:  # its document stays as last saved (stale, then failed, if parsing)
            log.warning("closing job %s: the store is unavailable", job.id, exc_info=True)
            self.jobs_failed += 1
            return
        if closed is None:
            return
        if closed["state"] == "failed":
            self.jobs_failed += 1  # every row of its span refused
        else:
            self.jobs_closed += 1
        self.last_job_id = closed["id"]


def _observe(horizon: Horizon, chunk: Chunk) -> None:
    """Count a chunk's samples per GPU and raw window (the job's retention summary)."""
    for gpu in chunk.gpus:
        horizon.observe(str(gpu.facts["uuid"]), np.frombuffer(gpu.ts, dtype=np.int64))


def _within_horizon(
    parts: list[Row | ColumnBatch], horizon: Horizon
) -> tuple[list[Row | ColumnBatch], list[tuple[Row, str]]]:
    """`parts` without the rows older than every tier keeps, and those rows with why. One
    `Horizon.check_spans` for the send's GPUs (on columns for the columnar parser's
    batches); only when a GPU's rows span more than the longest retention back from its
    newest sample are the parts taken as rows (ColumnBatch.as_rows) and that GPU checked
    row by row (`check_rows`, in the send's order)."""
    if not parts:
        return parts, []
    columnar = any(isinstance(p, ColumnBatch) for p in parts)
    if columnar and horizon.check_spans(*_spans(parts)).all():
        return parts, []
    rows = [r for p in parts for r in ([p] if isinstance(p, Row) else p.as_rows())]
    uuids, codes = np.unique(np.array([r.uuid for r in rows]), return_inverse=True)
    ts = np.fromiter((r.ts for r in rows), dtype=np.int64, count=len(rows))
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    names = uuids.tolist()
    safe = horizon.check_spans(
        names, np.minimum.reduceat(ts[order], starts), np.maximum.reduceat(ts[order], starts)
    )
    if safe.all():
        return rows, []  # type: ignore[return-value]
    why: dict[int, str] = {}
    for g in np.flatnonzero(~safe).tolist():
        picked = order[starts[g] : starts[g + 1] if g + 1 < len(starts) else len(order)]
        # no line numbers here: the reason names the GPU instead
        lines = np.zeros(len(picked), dtype=np.int64)
        mask, reasons = horizon.check_rows(names[g], ts[picked], lines)
        why.update(zip(picked[mask].tolist(), (r for _, r in reasons), strict=True))
    if not why:
        return rows, []
    return [r for i, r in enumerate(rows) if i not in why], [(rows[i], why[i]) for i in sorted(why)]


def _spans(parts: list[Row | ColumnBatch]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The GPUs of `parts` with the first and last time of their samples."""
    uuids: list[str] = []
    times: list[np.ndarray] = []
    for p in parts:
        if isinstance(p, Row):
            uuids.append(p.uuid)
            times.append(np.array([p.ts], dtype=np.int64))
        else:
            uuids.extend(np.array(p.uuids, dtype=object)[p.gpu].tolist())
            times.append(p.ts.astype(np.int64))
    names, codes = np.unique(np.array(uuids), return_inverse=True)
    ts = np.concatenate(times)
    order = np.argsort(codes, kind="stable")
    starts = np.r_[0, np.flatnonzero(np.diff(codes[order])) + 1]
    return (
        names.tolist(),
        np.minimum.reduceat(ts[order], starts),
        np.maximum.reduceat(ts[order], starts),
    )


def _count_refused(
    refused: list[tuple[Row, str]],
    rejected: int,
    errors: Iterable[RowError],
    accepted: int | None,
) -> tuple[int, list[RowError], int | None]:
    """The send's counts with the refused rows moved from accepted to rejected. When
    `accepted` counts sample lines (scrape, remote write), a row stands for its values."""
    room = max(settings.INGEST_MAX_ERRORS - len(errors := list(errors)), 0)
    errors += [RowError(0, f"GPU {row.uuid}: {why}") for row, why in refused[:room]]
    if accepted is None:
        return rejected + len(refused), errors, None
    lines = sum(max(len(row.values), 1) for row, _ in refused)
    return rejected + lines, errors, max(accepted - lines, 0)
