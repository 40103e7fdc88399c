"""`python manage.py ingest FILE... [--cluster NAME] [--wait]`: the upload path from a shell."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from kombu.exceptions import OperationalError as KombuOperationalError
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from apps.ingest import service
from apps.ingest.formats import HeaderError
from store import default_keys
from store.errors import InvalidSegment, StoreError
from store.jobs import load_job


class Command(BaseCommand):
    help = "Ingest DCGM CSV files (long or wide format, optionally gzipped); '-' reads stdin."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("files", nargs="+", help="CSV files, .csv.gz too; '-' for stdin")
        parser.add_argument(
            "--cluster", default=None, help="cluster name (default TELEMETRY_CLUSTER)"
        )
        parser.add_argument(
            "--wait", action="store_true", help="wait until workers stored every chunk"
        )
        parser.add_argument(
            "--timeout", type=float, default=600.0, help="seconds --wait waits at most"
        )
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bars (none off a terminal)"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        # Log lines go through tqdm.write while a bar is shown: above the bar, never
        # through it (which would leave a half-drawn bar behind on every line).
        with logging_redirect_tqdm():
            self._all(opts)

    def _all(self, opts: dict[str, Any]) -> None:
        refused: list[str] = []
        for name in opts["files"]:
            try:
                self._one(name, opts)
            except (
                HeaderError,
                service.NoRows,
                service.NothingAccepted,
                service.UploadTooLarge,
                InvalidSegment,
                OSError,
            ) as exc:
                refused.append(f"{name}: refused: {exc}")
                self.stderr.write(refused[-1])
            except StoreError as exc:
                raise CommandError(f"{name}: {exc}") from exc
            except KombuOperationalError as exc:
                raise CommandError(f"{name}: {exc}") from exc
        if refused:
            raise CommandError(
                f"{len(refused)} of {len(opts['files'])} file(s) refused:\n" + "\n".join(refused)
            )

    def _one(self, name: str, opts: dict[str, Any]) -> None:
        quiet = opts["no_progress"]
        if name == "-":
            size, raw = None, sys.stdin.buffer
        else:
            path = Path(name)
            size, raw = path.stat().st_size, open(path, "rb")  # noqa: SIM115 - closed below
        started = time.monotonic()
        with tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=Path(name).name,
            disable=True if quiet else None,
        ) as bar:
            try:
                job = service.ingest(raw, source=name, cluster=opts["cluster"], progress=bar.update)
            finally:
                if raw is not sys.stdin.buffer:
                    raw.close()
        elapsed = max(time.monotonic() - started, 1e-9)
        self.stdout.write(
            f"{name}: job {job['id']}: {job['rows_read']} rows read, "
            f"{job['rows_accepted']} accepted, "
            f"{job['rows_rejected']} rejected, {job['rows_read'] / elapsed:,.0f} rows/s, "
            f"{job['chunks_expected']} chunk(s) queued"
        )
        for err in job["errors"]:
            self.stdout.write(f"  line {err['line']}: {err['message']}")
        if opts["wait"]:
            self._wait(job, opts["timeout"], quiet)

    def _wait(self, job: dict[str, Any], timeout: float, quiet: bool) -> None:
        deadline = time.monotonic() + timeout
        with tqdm(
            total=job["chunks_expected"],
            unit="chunk",
            desc="stored",
            disable=True if quiet else None,
        ) as bar:
            while True:
                status = load_job(default_keys(), job["id"])
                bar.update(status["chunks_done"] - bar.n)
                if status["state"] in ("done", "failed"):
                    break
                if time.monotonic() > deadline:
                    raise CommandError(
                        f"job {job['id']} not done after {timeout:.0f}s: is a worker running?"
                    )
                time.sleep(0.2)
        self.stdout.write(f"job {job['id']}: {status['state']}")
        if status["state"] == "failed":
            raise CommandError(f"job {job['id']} failed: {status.get('error') or 'see the job'}")
