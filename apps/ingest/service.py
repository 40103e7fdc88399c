"""Ingest a CSV stream: parse, group per GPU, enqueue chunk tasks, record the job.

Views and commands call `ingest`; it holds the whole upload path.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, BinaryIO

from django.conf import settings

from apps.ingest import payload
from apps.ingest.chunking import Chunk, Chunker
from apps.ingest.parsing import Parser, open_text
from store import default_keys
from store.errors import StoreError
from store.jobs import load_job, new_job_id, save_job
from store.keys import Keys, check_segment

PERSIST_TASK = "workers.persist_chunk"


class NoRows(ValueError):
    """The file had a valid header but no data row."""


class NothingAccepted(ValueError):
    """Every row was rejected; carries the parse summary."""

    def __init__(self, summary: dict[str, Any]) -> None:
        super().__init__("no row of the file was accepted")
        self.summary = summary


class UploadTooLarge(ValueError):
    pass


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
    parser = Parser(open_text(reader), max_errors=settings.INGEST_MAX_ERRORS)  # type: ignore[arg-type]
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
    try:
        for row in parser:
            chunker.add(row)
        chunker.finish()
    except Exception as exc:
        if saved:
            _save_failed(keys, job, parser, chunker, started, exc)
        raise
    _finish(job, parser, chunker, started, state="parsed")
    if parser.rows_read == 0:
        raise NoRows("the file has a header but no data rows")
    if parser.accepted == 0:
        raise NothingAccepted(job)
    save_job(keys, job)
    return job


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
    job = load_job(default_keys(), job_id)
    if job["state"] == "failed":
        public = "failed"
    elif job["state"] == "parsing":
        public = "running"  # the file is still being read: more chunks may come
    elif job["chunks_done"] >= job["chunks_expected"]:
        public = "done"
    else:
        public = "running"
    return {**job, "state": public}
