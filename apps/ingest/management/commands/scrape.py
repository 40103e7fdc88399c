"""`python manage.py scrape URL... --interval 10s`: poll dcgm-exporter endpoints live.

Each URL (`node:9400`, `node` or `http://node:9400/metrics`) is polled in its
own thread; its Prometheus text goes through the same pipeline as an upload
(chunks -> workers -> etcd). An endpoint that fails is retried with capped
exponential backoff and reported, without holding up the others. SIGTERM or
Ctrl-C: the rounds in hand are finished, the job saved, exit 0 (1 when no
endpoint ever gave telemetry). See docs/SOURCES.md.
"""

from __future__ import annotations

import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu.exceptions import OperationalError as KombuOperationalError

from apps.ingest.jobs import JobSeries
from apps.ingest.scraping import Scraper, normalize_url
from apps.ingest.streaming import Progress, add_source_arguments, stop_on_signals
from apps.ingest.streaming import duration_option as duration
from store.errors import StoreError
from store.keys import check_segment


class Command(BaseCommand):
    help = "Poll NVIDIA dcgm-exporter endpoints (Prometheus text) into the pipeline."

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._stop = threading.Event()
        self.scraper: Scraper | None = None

    def request_stop(self) -> None:
        """What SIGTERM and Ctrl-C do: finish the rounds in hand, then return."""
        self._stop.set()

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "urls", nargs="+", help="endpoints: node:9400, node, or http://node:9400/metrics"
        )
        parser.add_argument(
            "--interval", default="10s", help="time between scrapes of one endpoint"
        )
        parser.add_argument("--timeout", default="5s", help="time one scrape may take")
        parser.add_argument(
            "--max-backoff", default="5m", help="longest wait before retrying a failing endpoint"
        )
        parser.add_argument(
            "--max-rounds", type=int, default=None, help="stop after this many rounds per endpoint"
        )
        add_source_arguments(parser, doing="scraping", unit="scrape")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            urls = list(dict.fromkeys(normalize_url(u) for u in opts["urls"]))
            cluster = check_segment(opts["cluster"] or settings.TELEMETRY_CLUSTER, "cluster")
        except ValueError as exc:  # InvalidSegment is a ValueError too
            raise CommandError(str(exc)) from None
        interval, timeout = duration(opts["interval"]), duration(opts["timeout"])
        if interval <= 0 or timeout <= 0:
            raise CommandError("--interval and --timeout must be more than 0")
        series = JobSeries(
            source="scrape " + ", ".join(urls),
            cluster=cluster,
            fmt="prometheus",
            span=duration(opts["job_span"]),
        )
        progress = Progress(
            self.stdout,
            self.stderr,
            label="scrape",
            live=self.stdout.isatty() and not opts["no_progress"],
            every=duration(opts["status_every"]),
            detail=lambda: scraper.detail(),
        )
        scraper = self.scraper = Scraper(
            urls,
            series=series,
            progress=progress,
            interval=interval,
            timeout=timeout,
            max_backoff=duration(opts["max_backoff"]),
            max_rounds=opts["max_rounds"],
        )
        self.stdout.write(
            f"scrape: {len(urls)} endpoint(s) every {interval:g}s "
            f"(timeout {timeout:g}s), cluster {cluster}"
        )
        with stop_on_signals(self.request_stop):
            scraper.start()
            try:
                while scraper.running() and not self._stop.is_set():
                    self._stop.wait(0.25)
                    progress.show()
                    series.tick()
            finally:
                scraper.stop()
                scraper.join(timeout + 5)
                progress.finish()
                try:
                    series.close()
                except (StoreError, KombuOperationalError) as exc:
                    self.stderr.write(f"scrape: the last job could not be saved: {exc}")
        self._summary(scraper, progress, series)

    def _summary(self, scraper: Scraper, progress: Progress, series: JobSeries) -> None:
        elapsed = max(progress.elapsed, 1e-9)
        self.stdout.write(
            f"scrape: stopped: {progress.rows} rows sent in {elapsed:.1f}s "
            f"({progress.rows / elapsed:,.0f} rows/s), {progress.errors} errors, "
            f"{series.jobs_closed} job(s)"
            + (f", last job {series.last_job_id}" if series.last_job_id else "")
            + _refused(series)
        )
        for state in scraper.states.values():
            status = {True: "up", False: "down", None: "never scraped"}[state.up]
            line = (
                f"  {state.url}: {status}, {state.rounds} round(s), {state.rows} rows, "
                f"{state.failures} failure(s)"
            )
            self.stdout.write(
                line + (f", last error: {state.last_error}" if state.up is False else "")
            )
        if progress.rows == 0 and progress.errors:
            raise CommandError("no endpoint gave any telemetry")


def _refused(series: JobSeries) -> str:
    """Rows the time policy refused (store/horizon.py), counted in their jobs too."""
    n = series.refused_as_too_old
    return f", {n} row(s) refused: older than every storage tier keeps" if n else ""
