"""Ingest a CSV stream: parse, group per GPU, enqueue chunk tasks, record the job.

Views and commands call `ingest`; it holds the whole upload path. The job's lifecycle
(when its document is written, chunks enqueued) is apps/ingest/jobs.py's `Job`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from celery import current_app
from django.conf import settings
from kombu.exceptions import OperationalError

from apps.ingest.chunking import Chunk
from apps.ingest.columnar import ColumnarParser, ColumnBatch
from apps.ingest.jobs import BrokerUnavailable, Job
from apps.ingest.parsing import (
    Parser,
    Row,
    RowError,
    RowFacts,
    TooLarge,
    open_binary,
    readinto_of,
    text_of,
)
from apps.ingest.quota import Charge, QuotaExceeded, charge, check_room, refund
from apps.ingest.workloads import csv_workload
from observability.logs import job_context
from observability.metrics import ROWS
from store import default_keys
from store.errors import Answer
from store.horizon import Horizon
from store.jobs import load_job, save_job
from store.keys import Keys, check_segment
from store.tiers import tiers

log = logging.getLogger(__name__)
PARSE_TASK = "apps.ingest.parse_upload"


class NoRows(ValueError):
    """The file had a valid header but no data row."""

    answer = Answer(400, "BAD_FILE")


class NothingAccepted(ValueError):
    """Every row was rejected; carries the parse summary (`details`: what answers add)."""

    answer = Answer(400, "BAD_FILE")

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__("no row of the file was accepted")
        self.summary = summary
        self.details = {
            k: summary[k] for k in ("rows_read", "rows_accepted", "rows_rejected", "errors")
        }


UploadTooLarge = TooLarge  # the name views and commands catch (413)


class SpoolFull(Exception):
    """Large uploads already waiting for their parse hold INGEST_SPOOL_MAX_BYTES: retry."""

    answer = Answer(503, "UNAVAILABLE", retry_after=30)


class _LimitedReader:
    """Counts bytes as they are read and refuses to read past `limit`."""

    def __init__(self, raw: BinaryIO, limit: int, progress: Callable[[int], None] | None) -> None:
        self._raw = raw
        self._limit = limit
        self._progress = progress
        self._readinto = readinto_of(raw)
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._counted(len(data))
        return data

    def readinto(self, buf: Any) -> int:
        """read() into `buf`, without a copy when the source has its own readinto."""
        if self._readinto is None:
            data = self._raw.read(len(buf))
            buf[: len(data)] = data
            n = len(data)
        else:
            n = self._readinto(buf) or 0
        self._counted(n)
        return n

    def _counted(self, n: int) -> None:
        self.count += n
        if self.count > self._limit:
            raise UploadTooLarge(f"the upload is larger than the limit of {self._limit} bytes")
        if self._progress is not None and n:
            self._progress(n)


def ingest(
    raw: BinaryIO,
    *,
    source: str,
    cluster: str | None = None,
    progress: Callable[[int], None] | None = None,
    resume: tuple[str, str, int] | None = None,
    owner: str | None = None,
) -> dict[str, Any]:
    """Parse `raw` and enqueue its chunks; returns the saved job document (with
    `resume`: the job `accept` saved for a large upload, see Job). Each chunk is
    charged to `owner`'s daily quota before it is enqueued (apps/ingest/quota.py).

    Raises HeaderError, NoRows, NothingAccepted, InvalidSegment (bad cluster
    name): nothing was written or enqueued. Raises UploadTooLarge,
    StoreUnavailable or BrokerUnavailable at any point. The whole file is one
    send of a `Job`, so its document is written as jobs.py says: before the first
    chunk is enqueued (with etcd down the upload fails before anything is
    enqueued) and when parsing ends, or as failed with the counts so far.
    """
    cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
    reader = _LimitedReader(raw, settings.INGEST_MAX_UPLOAD_BYTES, progress)
    parser = _parser(reader)
    keys = Keys(resume[1]) if resume else default_keys()
    horizon = Horizon(keys, tiers(), cluster)
    charged = _Charged(owner, _tally(horizon))
    job = Job(
        source=source,
        cluster=cluster,
        fmt=parser.format,
        on_chunk=charged,
        resume=resume,
        on_unsent=charged.unsent,
    )
    charged.job_id = job.id
    with job_context(job.id):
        log.info("ingest of %s into cluster %s started (%s format)", source, cluster, parser.format)
        try:
            job.send(
                _rows(parser, horizon, job),
                lambda row: parser.facts(row, cluster),
                tally=parser,  # type: ignore[arg-type]
                workload=csv_workload(parser.layout),
            )
        except Exception as exc:
            log.warning("ingest of %s stopped: %s", source, exc)
            if isinstance(exc, QuotaExceeded):  # the job is saved failed: name it
                exc.details = {"job": job.id, "samples_enqueued": job.job.get("samples", 0)}
            raise
        ROWS.labels("accepted").inc(parser.accepted)
        ROWS.labels("rejected").inc(parser.rejected)
        job.job["retention"] = horizon.summary()
        summary = job.summary()
        log.info(
            "ingest of %s parsed: %d rows, %d accepted, %d rejected, %d chunks queued",
            source,
            parser.rows_read,
            parser.accepted,
            parser.rejected,
            summary["chunks_expected"],
        )
        if parser.rows_read == 0:
            raise NoRows("the file has a header but no data rows")
        if parser.accepted == 0:
            raise NothingAccepted(summary)
        if summary["samples"] == 0 and not job.saved:
            raise NoRows(
                f"the file holds no sample: its {parser.accepted} accepted rows hold only "
                "DCGM blank values (no reading)"
            )
        document = job.close()
    # a sample was enqueued (or the job was saved before the parse), so close() saved it
    assert document is not None
    return document


class _Charged:
    """Charges each chunk to `owner`'s quota, once per job and chunk (QuotaExceeded: the
    chunk is not enqueued), then tallies it; gives the charge back when the broker refuses
    the chunk."""

    def __init__(self, owner: str | None, tally: Callable[[Chunk], None]) -> None:
        self.owner, self.tally = owner, tally
        self.job_id = ""
        self.last: Charge | None = None

    def __call__(self, chunk: Chunk) -> None:
        self.last = charge(self.owner, chunk.samples, self.job_id, chunk.seq)
        self.tally(chunk)

    def unsent(self, chunk: Chunk) -> None:
        refund(self.last)


def _tally(horizon: Horizon) -> Callable[[Chunk], None]:
    """Counts each chunk's samples per GPU and raw window, for the job's retention summary."""

    def observe(chunk: Chunk) -> None:
        for gpu in chunk.gpus:
            horizon.observe(str(gpu.facts["uuid"]), np.frombuffer(gpu.ts, dtype=np.int64))

    return observe


def _rows(
    parser: Parser | ColumnarParser, horizon: Horizon, job: Job
) -> Iterator[Row | ColumnBatch]:
    """The parser's rows and batches (it raises TooLarge itself past its line and CPU
    limits); rows older than every storage tier keeps are refused here
    (store/horizon.py), and the job's document is kept fresh while the parse runs."""
    settled = horizon.settled
    for row in parser:
        if not isinstance(row, Row):
            job.alive()
            kept = _within_horizon(row, horizon, parser)  # type: ignore[arg-type]
            if len(kept):
                yield kept
            continue
        if not parser.rows_read & 0xFFF:
            job.alive()
        bounds = settled.get(row.uuid)
        if bounds is None or not bounds[0] <= row.ts <= bounds[1]:  # else: kept, noted
            too_old = horizon.check(row.uuid, row.ts, parser)
            if too_old is not None:
                parser.refuse(too_old)
                continue
        yield row


def _within_horizon(batch: ColumnBatch, horizon: Horizon, parser: ColumnarParser) -> ColumnBatch:
    """`horizon.check` on a batch, every GPU at once (`Horizon.check_batch`; a wide row's
    samples share its line: one check per row, with the time of its first sample)."""
    line = batch.line
    first = np.flatnonzero(np.r_[True, line[1:] != line[:-1]])  # a row's first sample
    if len(first) and not (np.diff(line[first]) > 0).all():
        return _within_horizon_per_gpu(batch, horizon, parser)  # rows not in line order
    refused, refusals = horizon.check_batch(
        batch.uuids, batch.gpu[first], batch.ts[first], line[first]
    )
    if not refusals:
        return batch
    for at, reason in sorted(refusals):
        parser.refuse_line(at, reason)
    return batch.without(np.repeat(refused, np.diff(np.r_[first, len(line)])))


def _within_horizon_per_gpu(
    batch: ColumnBatch, horizon: Horizon, parser: ColumnarParser
) -> ColumnBatch:
    """`horizon.check` on a batch, a GPU's rows at a time (any order of lines)."""
    order = np.argsort(batch.gpu, kind="stable")
    codes = batch.gpu[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    dropped = np.zeros(len(batch), dtype=bool)
    refusals: list[tuple[int, str]] = []
    for start, stop in zip([0, *cuts.tolist()], [*cuts.tolist(), len(codes)], strict=True):
        picked = order[start:stop]
        lines, first = np.unique(batch.line[picked], return_index=True)
        refused, reasons = horizon.check_rows(
            batch.uuids[int(codes[start])], batch.ts[picked][first], lines
        )
        if reasons:
            dropped[picked] = np.isin(batch.line[picked], lines[refused])
            refusals.extend(reasons)
    for line, reason in sorted(refusals):
        parser.refuse_line(line, reason)
    return batch.without(dropped) if refusals else batch


def is_large(size: int | None) -> bool:
    """Whether an upload of `size` bytes (None: unknown) is parsed in a worker."""
    return size is not None and size > settings.INGEST_ASYNC_BYTES


def accept(
    raw: BinaryIO,
    *,
    source: str,
    cluster: str | None = None,
    size: int = 0,
    owner: str | None = None,
) -> dict[str, Any]:
    """A large upload: spool its body, check its header, save its job (state parsing)
    and enqueue its parse (PARSE_TASK, in a worker); returns the job document at once.

    Raises what `ingest` raises before a row is read (HeaderError, InvalidSegment,
    UploadTooLarge, StoreUnavailable, BrokerUnavailable), or SpoolFull: then nothing is kept. The
    spool file lives in INGEST_SPOOL_DIR (shared with the workers) until the parse ends.
    """
    cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
    check_room(owner)  # a writer with no sample left today holds no spool nor parse
    spool = Path(settings.INGEST_SPOOL_DIR)
    spool.mkdir(parents=True, exist_ok=True)
    _check_room(spool, size)
    fd, name = tempfile.mkstemp(dir=spool, suffix=".csv")
    try:
        with os.fdopen(fd, "wb") as out:
            if not _linked(raw, name):
                shutil.copyfileobj(_LimitedReader(raw, settings.INGEST_MAX_UPLOAD_BYTES, None), out)
        with open(name, "rb") as fh:
            fmt = _parser(_LimitedReader(fh, settings.INGEST_MAX_UPLOAD_BYTES, None)).format
        job = Job(source=source, cluster=cluster, fmt=fmt)
        resume = job.save_queued()
        try:
            current_app.send_task(
                PARSE_TASK,
                args=[name, source, cluster, *resume, owner],
                queue=settings.INGEST_PARSE_QUEUE or None,  # None: the default queue
            )
        except OperationalError as exc:
            raise BrokerUnavailable(f"the task broker is unavailable: {exc}") from exc
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    log.info("upload %s of %s accepted, parsed in a worker", job.id, source)
    return job.job


def _check_room(spool: Path, size: int) -> None:
    """SpoolFull when the uploads waiting in `spool` and this one (`size` bytes) would hold
    more than INGEST_SPOOL_MAX_BYTES: parses come one at a time per worker process, and
    accepted uploads must not fill the disk they wait on.

    A file older than INGEST_JOB_STALE is deleted, not counted: its job already shows as
    failed (a parse that started keeps reading it through its open file), and a file whose
    parse never came (a process killed, a queue nobody reads) must not hold the room for
    good."""
    gone, waiting = delete_older_files(spool, settings.INGEST_JOB_STALE)
    if gone:
        log.warning(
            "deleted %d uploads of %s: waited for their parse past INGEST_JOB_STALE", gone, spool
        )
    if waiting + size > settings.INGEST_SPOOL_MAX_BYTES:
        raise SpoolFull(
            f"large uploads waiting to be parsed hold {waiting} bytes; with this one "
            f"({size} bytes) that is over INGEST_SPOOL_MAX_BYTES "
            f"({settings.INGEST_SPOOL_MAX_BYTES}): send it again later"
        )


def delete_older_files(folder: str | Path, age: float, prefix: str = "") -> tuple[int, int]:
    """Delete the regular files of `folder` (named `prefix`...) not modified for `age`
    seconds; (how many were deleted, bytes of those kept). A missing folder holds none; a
    file gone meanwhile (its parse or request ended) is skipped."""
    oldest = time.time() - age
    gone = kept = 0
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if not entry.name.startswith(prefix):
                continue
            with contextlib.suppress(OSError):
                if not entry.is_file(follow_symlinks=False):
                    continue
                st = entry.stat(follow_symlinks=False)
                if st.st_mtime < oldest:
                    os.unlink(entry.path)
                    gone += 1
                else:
                    kept += st.st_size
    return gone, kept


def _linked(raw: BinaryIO, name: str) -> bool:
    """Whether the upload's own file on disk now also is `name`, a hard link in its place:
    no copy of a large body. False when there is no such file or it lies on another
    filesystem; UploadTooLarge past the limit."""
    spooled = _spooled_file(raw)
    if spooled is None:
        return False
    link = f"{name}.link"  # a new name beside `name`: replacing `name` by it is atomic
    try:
        if os.stat(spooled).st_size > settings.INGEST_MAX_UPLOAD_BYTES:
            raise UploadTooLarge(
                f"the upload is larger than the limit of {settings.INGEST_MAX_UPLOAD_BYTES} bytes"
            )
        os.link(spooled, link)
    except OSError:  # another filesystem (EXDEV), links refused, gone: copy instead
        return False
    try:
        os.replace(link, name)
    finally:
        Path(link).unlink(missing_ok=True)
    return True


def _spooled_file(raw: Any) -> str | None:
    """The path of the upload's file on disk when nothing of it was read yet: the raw body
    the gateway spooled into a named file (a raw upload over INGEST_ASYNC_BYTES,
    telemetry_site/guard.py), or the file part Django's multipart parser wrote to disk.
    None for anything else (a body in memory, a stream already read)."""
    path_of = getattr(raw, "temporary_file_path", None)  # Django's TemporaryUploadedFile
    if path_of is not None:
        return path_of() if raw.tell() == 0 else None
    stream = getattr(raw, "_stream", None)  # where Django's ASGIRequest keeps its body file
    name = getattr(stream, "name", None)
    if not isinstance(name, str) or getattr(raw, "_read_started", True):
        return None
    return name if stream.tell() == 0 else None


def parse_spooled(
    path: str,
    source: str,
    cluster: str,
    resume: tuple[str, str, int],
    owner: str | None = None,
) -> None:
    """The worker's half of `accept`: parse the spooled body into its job, then delete it.

    A refusal found while parsing (no row accepted, a limit passed) ends the job as
    failed with that message and the counts reached; a store or broker outage raises
    (the job is saved failed as `ingest` does). A worker that dies mid-parse leaves
    the task to be delivered again (acks_late): it parses from the start, its chunks
    numbered the same and stored idempotently."""
    try:
        with open(path, "rb") as fh:
            ingest(fh, source=source, cluster=cluster, resume=resume, owner=owner)
    except (ValueError, OSError) as exc:  # HeaderError, NoRows, NothingAccepted, TooLarge
        summary = getattr(exc, "summary", {})
        fail_job(Keys(resume[1]), resume[0], str(exc), summary)
    finally:
        # a worker killed mid-parse never gets here: the redelivered task finds the file
        Path(path).unlink(missing_ok=True)


def fail_job(keys: Keys, job_id: str, error: str, counts: dict[str, Any]) -> None:
    """End a saved job as failed with `error` and the counts it reached."""
    job = load_job(keys, job_id)
    for derived in ("chunks_done", "chunks_failed", "chunk_errors"):
        job.pop(derived, None)
    job.update({k: v for k, v in counts.items() if k not in ("id", "state", "error")})
    job.update(state="failed", error=error)
    save_job(keys, job)


def _parser(reader: _LimitedReader) -> ColumnarParser | Parser:
    """The upload's parser: columnar (Arrow, every core; irregular files go to the row
    parser), or the row parser alone with INGEST_PARSER=rows. Same rows, same messages."""
    binary = open_binary(
        reader,  # type: ignore[arg-type]
        settings.INGEST_MAX_DECOMPRESSED_BYTES,
        settings.INGEST_MAX_GZIP_RATIO,
    )
    limits = {
        "max_errors": settings.INGEST_MAX_ERRORS,
        "max_line": settings.INGEST_MAX_LINE_CHARS,
        "max_metrics_per_gpu": settings.INGEST_MAX_METRICS_PER_GPU,
        "max_lines": settings.INGEST_MAX_ROWS,
        "max_cpu_seconds": settings.INGEST_MAX_PARSE_SECONDS,
        "max_future": settings.INGEST_MAX_FUTURE,
    }
    if settings.INGEST_PARSER == "rows":
        return Parser(text_of(binary), **limits)
    return ColumnarParser(binary, **limits)


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
    on a bad cluster name, StoreUnavailable or BrokerUnavailable otherwise.
    """
    job = Job(source=source, cluster=cluster, fmt=fmt)
    job.send(rows, facts, rejected=rejected, errors=errors)
    document = job.close()
    if document is None:
        raise NothingAccepted(job.summary())
    return document
