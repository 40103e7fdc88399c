"""`python manage.py stream`: replay a CSV file in a loop, batch by batch, as a live source.

The original pipeline's streamer: every `--interval` it sends the next
`--batch-size` rows of the file into the ingest pipeline, stamped with the time
it sends them (`--timestamps source` keeps the file's), starting over at the
end of the file. `--shard i/n` lets n streamers share one file (docs/SOURCES.md).
SIGTERM or Ctrl-C: the batch in hand is finished, the job saved, exit 0.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu.exceptions import OperationalError as KombuOperationalError

from apps.ingest.jobs import JobSeries
from apps.ingest.streaming import (
    Batch,
    NoRowsInShard,
    Progress,
    Replay,
    Shard,
    add_source_arguments,
    now_ms,
    repeats,
    stamp,
    stop_on_signals,
)
from apps.ingest.streaming import (
    duration_option as duration,
)
from store.errors import StoreError
from store.keys import check_segment

# How long a batch that cannot be sent (broker or etcd down) waits before the next try.
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0


class Command(BaseCommand):
    help = "Replay a DCGM CSV file in a loop, batch by batch, into the pipeline (the streamer)."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()
        self._batches = 0
        self._pass = 1
        self._warned = False

    def request_stop(self) -> None:
        """What SIGTERM and Ctrl-C do: finish the batch in hand, then return."""
        self._stop.set()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--file", default=None, help="CSV file to replay (default CSV_FILE)")
        parser.add_argument(
            "--batch-size", type=int, default=None, help="rows per batch (default BATCH_SIZE)"
        )
        parser.add_argument(
            "--interval",
            default=None,
            help="time between batches: 500ms, 1s, 5m (default STREAM_INTERVAL)",
        )
        parser.add_argument(
            "--loop",
            action="store_true",
            default=True,
            help="start over at the end of the file (the default)",
        )
        parser.add_argument(
            "--no-loop", dest="loop", action="store_false", help="one pass, then exit"
        )
        parser.add_argument(
            "--timestamps",
            choices=("now", "source"),
            default="now",
            help="now: each batch stamped with the time it is sent (default); "
            "source: keep the file's times",
        )
        parser.add_argument(
            "--shard", default="0/1", help="i/n: send only this process's share (by GPU uuid)"
        )
        parser.add_argument(
            "--max-batches", type=int, default=None, help="stop after this many batches"
        )
        add_source_arguments(parser, doing="streaming", unit="batch")

    def handle(self, *args: Any, **opts: Any) -> None:
        path = Path(opts["file"] or settings.CSV_FILE)
        batch_size = opts["batch_size"] or settings.BATCH_SIZE
        interval = (
            duration(opts["interval"]) if opts["interval"] is not None else settings.STREAM_INTERVAL
        )
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1")
        if opts["max_batches"] is not None and opts["max_batches"] < 1:
            raise CommandError("--max-batches must be at least 1")
        try:
            shard = Shard.parse(opts["shard"])
            cluster = check_segment(opts["cluster"] or settings.TELEMETRY_CLUSTER, "cluster")
            replay = Replay(
                path, batch_size=batch_size, shard=shard, loop=opts["loop"], cluster=cluster
            )
        except (OSError, ValueError) as exc:  # HeaderError, InvalidSegment are ValueErrors
            raise CommandError(f"{path}: {exc}" if isinstance(exc, OSError) else str(exc)) from exc
        series = JobSeries(
            source=f"stream {path} shard {shard}",
            cluster=cluster,
            fmt=replay.format,
            span=duration(opts["job_span"]),
        )
        self._batches = 0
        self._warned = False
        self._pass = 1
        progress = Progress(
            self.stdout,
            self.stderr,
            label=f"stream {path.name} shard {shard}",
            live=self.stdout.isatty() and not opts["no_progress"],
            every=duration(opts["status_every"]),
            detail=lambda: f"pass {self._pass}, batch {self._batches}",
        )
        self.stdout.write(
            f"stream: {path} ({replay.format}), {batch_size} rows every {interval:g}s, "
            f"shard {shard}, timestamps {opts['timestamps']}, "
            f"{'looping' if opts['loop'] else 'one pass'}, cluster {series.cluster}"
        )
        with stop_on_signals(self.request_stop):
            try:
                why = self._run(replay, series, progress, interval, opts)
            finally:
                progress.finish()
                try:
                    series.close()
                except (StoreError, KombuOperationalError) as exc:
                    self.stderr.write(f"stream: the last job could not be saved: {exc}")
        self._summary(progress, series, why)

    def _run(
        self,
        replay: Replay,
        series: JobSeries,
        progress: Progress,
        interval: float,
        opts: dict[str, Any],
    ) -> str:
        """Send batch after batch until the end, the batch limit or a stop; returns why."""
        batches = iter(replay)
        due = time.monotonic()
        batch = self._next(batches)
        while batch is not None:
            if self._stop.is_set():
                return "stopped"
            if not self._send(batch, series, progress, opts["timestamps"] == "now"):
                return "stopped (the batch in hand could not be sent)"
            if batch.count:
                self._batches += 1
                if opts["max_batches"] is not None and self._batches >= opts["max_batches"]:
                    return f"{self._batches} batches sent"
            upcoming = self._next(batches)
            if upcoming is None:
                return "end of the file"
            if batch.count:
                due = max(due + interval, time.monotonic())  # late: no burst to catch up
                self._wait(due, series, progress)
            batch = upcoming
        return "end of the file"

    def _next(self, batches: Any) -> Batch | None:
        try:
            batch = next(batches, None)
        except (NoRowsInShard, OSError) as exc:
            raise CommandError(str(exc)) from None
        if batch is not None:
            self._pass = batch.pass_no
        return batch

    def _wait(self, due: float, series: JobSeries, progress: Progress) -> None:
        """Until `due`; a stop ends the wait at once. Keeps the status and jobs moving."""
        while not self._stop.is_set():
            remaining = due - time.monotonic()
            if remaining <= 0:
                return
            self._stop.wait(min(remaining, 0.25))
            progress.show()
            series.tick()

    def _send(self, batch: Batch, series: JobSeries, progress: Progress, stamp_now: bool) -> bool:
        """Send one batch, trying again (capped backoff) while the pipeline is down.

        False when a stop came before the batch could be sent.
        """
        delay = RETRY_FIRST_S
        while True:
            rows = batch.parts
            if stamp_now:
                repeated = repeats(rows)
                if repeated and not self._warned:
                    self._warned = True
                    progress.note(
                        f"stream: a batch holds {repeated} more sample(s) of a GPU metric it "
                        "already has; one time for the whole batch keeps only the last of "
                        "each: use a smaller --batch-size or --timestamps source"
                    )
                rows = stamp(rows, now_ms())
            try:
                series.send(
                    rows,
                    batch.facts,
                    rejected=batch.rejected,
                    errors=batch.errors,
                    accepted=batch.count,
                )
            except (KombuOperationalError, StoreError) as exc:
                progress.count(errors=1)
                progress.note(
                    f"stream: pass {batch.pass_no} batch {batch.number} not sent: {exc}; "
                    f"trying again in {delay:g}s"
                )
                if self._stop.wait(delay):
                    return False
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            progress.count(rows=batch.count)
            if batch.rejected:
                progress.note(
                    f"stream: pass {batch.pass_no}: {batch.rejected} row(s) rejected"
                    + "".join(f"\n  line {e.line}: {e.message}" for e in batch.errors)
                )
            progress.show()
            return True

    def _summary(self, progress: Progress, series: JobSeries, why: str) -> None:
        elapsed = max(progress.elapsed, 1e-9)
        self.stdout.write(
            f"stream: {why}: {self._batches} batches, {progress.rows} rows sent in "
            f"{elapsed:.1f}s ({progress.rows / elapsed:,.0f} rows/s), {progress.errors} errors, "
            f"{series.jobs_closed} job(s)"
            + (f", last job {series.last_job_id}" if series.last_job_id else "")
            + _refused(series)
        )


def _refused(series: JobSeries) -> str:
    """Rows the time policy refused (store/horizon.py), counted in their jobs too."""
    n = series.refused_as_too_old
    return f", {n} row(s) refused: older than every storage tier keeps" if n else ""
