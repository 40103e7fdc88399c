"""Ingest a CSV stream: parse, group per GPU, enqueue chunk tasks, record the job.

Views and commands call `ingest`; it holds the whole upload path. The job's lifecycle
(when its document is written, chunks enqueued) is apps/ingest/jobs.py's `Job`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any, BinaryIO

from django.conf import settings

from apps.ingest.jobs import Job
from apps.ingest.parsing import Parser, Row, RowError, RowFacts, TooLarge, open_text
from apps.ingest.workloads import csv_workload
from observability.logs import job_context
from observability.metrics import ROWS
from store.errors import Answer
from store.keys import check_segment

log = logging.getLogger(__name__)


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
    StoreUnavailable or BrokerUnavailable at any point. The whole file is one
    send of a `Job`, so its document is written as jobs.py says: before the first
    chunk is enqueued (with etcd down the upload fails before anything is
    enqueued) and when parsing ends, or as failed with the counts so far.
    """
    cluster = check_segment(cluster or settings.TELEMETRY_CLUSTER, "cluster")
    reader = _LimitedReader(raw, settings.INGEST_MAX_UPLOAD_BYTES, progress)
    parser = Parser(
        open_text(
            reader,  # type: ignore[arg-type]
            settings.INGEST_MAX_DECOMPRESSED_BYTES,
            settings.INGEST_MAX_GZIP_RATIO,
        ),
        max_errors=settings.INGEST_MAX_ERRORS,
        max_line=settings.INGEST_MAX_LINE_CHARS,
        max_metrics_per_gpu=settings.INGEST_MAX_METRICS_PER_GPU,
        max_lines=settings.INGEST_MAX_ROWS,
        max_cpu_seconds=settings.INGEST_MAX_PARSE_SECONDS,
        max_future=settings.INGEST_MAX_FUTURE,
    )
    job = Job(source=source, cluster=cluster, fmt=parser.format)
    with job_context(job.id):
        log.info("ingest of %s into cluster %s started (%s format)", source, cluster, parser.format)
        try:
            job.send(
                _rows(parser),
                lambda row: parser.facts(row, cluster),
                tally=parser,
                workload=csv_workload(parser.layout),
            )
        except Exception as exc:
            log.warning("ingest of %s stopped: %s", source, exc)
            raise
        ROWS.labels("accepted").inc(parser.accepted)
        ROWS.labels("rejected").inc(parser.rejected)
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
        document = job.close()
    # an accepted row always holds a sample (a row without a metric value is rejected), so a
    # chunk was enqueued and close() saved the document
    assert document is not None
    return document


def _rows(parser: Parser) -> Iterator[Row]:
    """The parser's rows; it raises TooLarge itself past its line and CPU limits."""
    yield from parser


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
