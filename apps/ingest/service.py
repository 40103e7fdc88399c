"""Ingest a CSV stream: parse, group per GPU, enqueue chunk tasks, record the job.

Views and commands call `ingest`; it holds the whole upload path.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import Any, BinaryIO

from django.conf import settings

from apps.ingest import payload
from apps.ingest.chunking import Chunk, Chunker
from apps.ingest.parsing import Parser, Row, RowError, TooLarge, open_text
from observability.logs import job_context
from observability.metrics import ROWS
from store import default_keys
from store.errors import StoreError
from store.jobs import list_jobs as store_list_jobs
from store.jobs import load_job, new_job_id, save_job
from store.keys import Keys, check_segment
from timeparse.timestamps import format_timestamp

PERSIST_TASK = "workers.persist_chunk"

log = logging.getLogger(__name__)


class NoRows(ValueError):
    """The file had a valid header but no data row."""


class NothingAccepted(ValueError):
    """Every row was rejected; carries the parse summary."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__("no row of the file was accepted")
        self.summary = summary


UploadTooLarge = TooLarge  # the name views and commands catch (413)


class _LimitedReader:
    """Counts bytes as they are read and refuses to read past `limit`."""

    def __init__(self, raw: BinaryIO, limit: int, progress: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._limit = limit
        self._progress = progress
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self.count += len(data)
        if self.count > self._limit:
            raise UploadTooLarge(f"the upload is larger than the limit of {self._limit} bytes")
        if self._progress is not None and data:
            self._progress(len(data))
        return data


def _enqueue(chunk: Chunk, root: str, job_id: str) -> None:
    from telemetry_site.celery import app

    app.send_task(PERSIST_TASK, args=[payload.encode(chunk, root, job_id)], serializer="msgpack")


def ingest(
    raw: BinaryIO,
    *,
    source: str,
    cluster: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Parse `raw` and enqueue its chunks; returns the saved job document.

    Raises HeaderError, NoRows, NothingAccepted, InvalidSegment (bad cluster
    name): nothing was written or enqueued. Raises UploadTooLarge,
    StoreUnavailable, or the broker's error at any point.

    The job document is saved (state "parsing") before the first chunk is
    enqueued, so no chunk is ever queued for a job etcd does not know: with
    etcd down the upload fails before anything is enqueued. A failure after the
    first chunk was enqueued saves the job as failed, with the counts so far:
    those chunks are still persisted (idempotently, so uploading again is safe).
    """
    cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
    keys = default_keys()
    started = time.monotonic()
    reader = _LimitedReader(raw, settings.INGEST_MAX_UPLOAD_BYTES, progress)
    parser = Parser(
        open_text(reader, settings.INGEST_MAX_DECOMPRESSED_BYTES),  # type: ignore[arg-type]
        max_errors=settings.INGEST_MAX_ERRORS,
        max_line=settings.INGEST_MAX_LINE_CHARS,
        max_metrics_per_gpu=settings.INGEST_MAX_METRICS_PER_GPU,
    )
    job = _job(new_job_id(), source, cluster, parser.format)
    saved = False

    def emit(chunk: Chunk) -> None:
        nonlocal saved
        if not saved:
            _finish(job, parser, chunker, started, state="parsing")
            save_job(keys, job)
            saved = True
        _enqueue(chunk, keys.root, job["id"])

    chunker = Chunker(
        emit=emit,
        facts=lambda row: parser.facts(row, cluster),
        chunk_rows=settings.INGEST_CHUNK_ROWS,
        buffer_rows=settings.INGEST_BUFFER_ROWS,
    )
    with job_context(job["id"]):
        log.info("ingest of %s into cluster %s started (%s format)", source, cluster, parser.format)
        try:
            _parse_all(parser, chunker)
        except Exception as exc:
            log.warning("ingest of %s stopped: %s", source, exc)
            if saved:
                _save_failed(keys, job, parser, chunker, started, exc)
            raise
        _finish(job, parser, chunker, started, state="parsed")
        ROWS.labels("accepted").inc(parser.accepted)
        ROWS.labels("rejected").inc(parser.rejected)
        log.info(
            "ingest of %s parsed: %d rows, %d accepted, %d rejected, %d chunks queued",
            source,
            parser.rows_read,
            parser.accepted,
            parser.rejected,
            chunker.chunks,
        )
        if parser.rows_read == 0:
            raise NoRows("the file has a header but no data rows")
        if parser.accepted == 0:
            raise NothingAccepted(job)
        save_job(keys, job)
    return job


def _parse_all(parser: Parser, chunker: Chunker) -> None:
    max_rows = settings.INGEST_MAX_ROWS
    for row in parser:
        if parser.rows_read > max_rows:
            raise TooLarge(
                f"the file has more than {max_rows} rows (INGEST_MAX_ROWS); "
                "split it, the rows before the limit are kept"
            )
        chunker.add(row)
    chunker.finish()


def _save_failed(
    keys: Keys, job: dict, parser: Parser, chunker: Chunker, started: float, exc: Exception
) -> None:
    """Mark a saved job failed, with the counts so far; best effort."""
    _finish(job, parser, chunker, started, state="failed", error=str(exc))
    # etcd may be the reason we failed; the caller raises the original error anyway.
    with contextlib.suppress(StoreError):
        save_job(keys, job)


def _job(job_id: str, source: str, cluster: str, fmt: str) -> dict[str, Any]:
    return {
        "id": job_id,
        "source": source[:500],
        "cluster": cluster,
        "format": fmt,
        "state": "parsing",
        "created_at": int(time.time() * 1000),
    }


def _finish(
    job: dict, parser: Parser, chunker: Chunker, started: float, state: str, error: str = ""
) -> None:
    job.update(
        state=state,
        error=error,
        rows_read=parser.rows_read,
        rows_accepted=parser.accepted,
        rows_rejected=parser.rejected,
        samples=chunker.samples,
        errors=[asdict(e) for e in parser.errors],
        chunks_expected=chunker.chunks,
        parse_seconds=round(time.monotonic() - started, 3),
    )


def job_status(job_id: str) -> dict[str, Any]:
    """The job as the API shows it: the saved document plus progress and a derived state."""
    return public_job(load_job(default_keys(), job_id))


def list_jobs(limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    """(number of jobs, one page of them as the API shows them), newest first."""
    count, jobs = store_list_jobs(default_keys(), limit, offset)
    return count, [public_job(job) for job in jobs]


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """The saved document with its derived state; times in RFC 3339 like every API time.

    The document keeps `created_at` in epoch milliseconds (job retention compares it).
    """
    created = job.get("created_at")
    shown = format_timestamp(created) if isinstance(created, int) else created
    return {**job, "state": public_state(job), "created_at": shown}


def public_state(job: dict[str, Any]) -> str:
    """running, done or failed, from the saved document and the workers' markers."""
    finished = job.get("chunks_done", 0) + job.get("chunks_failed", 0)
    if job["state"] == "failed":
        return "failed"
    if job["state"] == "parsing" or finished < job.get("chunks_expected", 0):
        return "running"  # still reading the file, or chunks still queued
    return "failed" if job.get("chunks_failed") else "done"


# --- Rows parsed elsewhere: the streamer's batches and the scraper's rounds -------------

RowFacts = Callable[[Row], dict]


class RowsJob:
    """One ingest job fed with rows already parsed, a batch at a time (stream, scrape).

    `send` cuts its rows into chunks and enqueues every one of them before it
    returns: a batch is never held back to fill a chunk with the next one. As in
    `ingest`, the job document is saved (state "parsing", shown as running)
    before the job's first chunk is enqueued, so no chunk is queued for a job
    etcd does not know; `close` saves the final counts (state "parsed": done once
    every chunk is stored). A job that never enqueued a chunk is never written.

    A `send` that raises closes the job: it is saved as failed (best effort) when
    it was saved already, and the error is raised again. Chunk numbers of a job
    cannot be reused, so the caller sends the rest to a new RowsJob (JobSeries
    does). `chunks_expected` counts the chunks actually enqueued. Not thread-safe.
    """

    def __init__(self, *, source: str, cluster: str | None, fmt: str) -> None:
        self.cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
        self.job = _job(new_job_id(), source, self.cluster, fmt)
        self.closed = False
        self._keys = default_keys()
        self._started = time.monotonic()
        self._saved = False
        self._enqueued = 0
        self._counts = {"rows_read": 0, "rows_accepted": 0, "rows_rejected": 0}
        self._errors: list[RowError] = []
        self._facts: RowFacts = lambda row: {}
        self._chunker = Chunker(
            emit=self._emit,
            facts=lambda row: self._facts(row),
            chunk_rows=settings.INGEST_CHUNK_ROWS,
            buffer_rows=settings.INGEST_BUFFER_ROWS,
        )

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
    ) -> int:
        """Enqueue `rows` (facts of a GPU come from `facts(row)` of its first row in a
        chunk) and count `rejected` more rows read; returns the samples enqueued.

        `accepted` is how many input rows `rows` stands for when that is not one
        per Row (a scrape groups a GPU's sample lines into one Row)."""
        if self.closed:
            raise RuntimeError(f"job {self.job['id']} is closed")
        self._facts = facts
        before = self._chunker.samples
        count = 0
        try:
            for row in rows:
                self._chunker.add(row)
                count += 1
            self._chunker.finish()
        except Exception as exc:
            self.closed = True
            if self._saved:
                self._update("failed", error=str(exc))
                with contextlib.suppress(StoreError):
                    save_job(self._keys, self.job)
            raise
        accepted = count if accepted is None else accepted
        self._counts["rows_read"] += accepted + rejected
        self._counts["rows_accepted"] += accepted
        self._counts["rows_rejected"] += rejected
        room = settings.INGEST_MAX_ERRORS - len(self._errors)
        self._errors.extend(list(errors)[: max(room, 0)])
        return self._chunker.samples - before

    def close(self) -> dict[str, Any] | None:
        """Save the final document; None when the job never enqueued a chunk (not written)."""
        if self.closed:
            return self.job if self._saved else None
        self.closed = True
        if not self._saved:
            return None
        self._update("parsed")
        save_job(self._keys, self.job)
        return self.job

    def _emit(self, chunk: Chunk) -> None:
        if not self._saved:
            self._update("parsing")
            save_job(self._keys, self.job)
            self._saved = True
        _enqueue(chunk, self._keys.root, self.job["id"])
        self._enqueued += 1

    def _update(self, state: str, error: str = "") -> None:
        self.job.update(
            state=state,
            error=error,
            **self._counts,
            samples=self._chunker.samples,
            errors=[asdict(e) for e in self._errors],
            chunks_expected=self._enqueued,
            parse_seconds=round(time.monotonic() - self._started, 3),
        )


def ingest_rows(
    rows: Iterable[Row],
    facts: RowFacts,
    *,
    source: str,
    cluster: str | None = None,
    fmt: str = "rows",
    rejected: int = 0,
    errors: Iterable[RowError] = (),
) -> dict[str, Any]:
    """`ingest` for rows parsed elsewhere: one job, saved; returns its document.

    Raises NothingAccepted (nothing written) when `rows` is empty, InvalidSegment
    on a bad cluster name, StoreUnavailable or the broker's error otherwise.
    """
    job = RowsJob(source=source, cluster=cluster, fmt=fmt)
    job.send(rows, facts, rejected=rejected, errors=errors)
    document = job.close()
    if document is None:
        job._update("parsed")
        raise NothingAccepted(job.job)
    return document


class JobSeries:
    """Rows sent as a series of jobs, a new one every `span` seconds (0: one job per send).

    The stream and scrape commands run for days: one job per batch would leave a
    job document per second in etcd (each kept for JOB_RETENTION), one job for
    the whole run would never be done. A job opened at t takes the sends until
    t + span; the first send after that, or `tick`, closes it. Thread-safe: the
    scraper's endpoint threads share one series (sends are serialized).
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
        self._job: RowsJob | None = None
        self._opened = 0.0

    def send(
        self,
        rows: Iterable[Row],
        facts: RowFacts,
        *,
        rejected: int = 0,
        errors: Iterable[RowError] = (),
        accepted: int | None = None,
    ) -> int:
        """RowsJob.send on the current job; a failed send leaves the next send a new job."""
        with self._lock:
            if self._job is not None and self._clock() - self._opened >= self.span:
                self._close_current()
            if self._job is None:
                self._job = RowsJob(source=self.source, cluster=self.cluster, fmt=self.fmt)
                self._opened = self._clock()
            job = self._job
            try:
                samples = job.send(rows, facts, rejected=rejected, errors=errors, accepted=accepted)
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
        if job is not None and job.close() is not None:
            self.jobs_closed += 1
