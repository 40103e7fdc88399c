"""Polling dcgm-exporter endpoints into the ingest pipeline.

One thread per endpoint: fetch `/metrics` (stdlib urllib, no proxy), parse the
exposition text (apps/ingest/exposition.py), send the rows through a shared
JobSeries (chunks -> workers -> etcd). Endpoints never wait on each other: a
slow or dead one only delays itself.

Schedule, per endpoint, start to start: `interval` after a good scrape; after
the k-th failure in a row (connection refused, timeout, HTTP error, a body
that holds no DCGM GPU sample) `interval * 2**(k-1)`, capped at
`max(max_backoff, interval)`. The first good scrape resets it. A round whose
rows could not be sent (broker or etcd down) is reported and dropped: the
next round brings fresh values, so the endpoint keeps its normal interval.
"""

from __future__ import annotations

import http.client
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.conf import settings

from apps.ingest.exposition import Exposition, parse_exposition
from apps.ingest.jobs import JobSeries
from apps.ingest.streaming import Progress, now_ms

DEFAULT_PORT = 9400
DEFAULT_PATH = "/metrics"
MAX_BODY_BYTES = 64 * 1024 * 1024
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
# Scrape targets are cluster nodes: never through the environment's HTTP proxy.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ScrapeError(Exception):
    """The endpoint failed this round (it backs off)."""


def normalize_url(text: str) -> str:
    """`node:9400`, `node` or a full URL to a full URL: http, port 9400 and /metrics
    when not given (the port only when the scheme is not given either)."""
    text = text.strip()
    if "://" not in text:
        text = "http://" + text
        parts = urlsplit(text)
        if parts.port is None and parts.hostname:
            text = text.replace(parts.netloc, f"{parts.netloc}:{DEFAULT_PORT}", 1)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL of a metrics endpoint")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError(f"{text!r} has a bad port") from None
    if parts.path in ("", "/"):
        text = parts._replace(path=DEFAULT_PATH).geturl()
    return text


def fetch(url: str, timeout: float, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The body of a GET; ScrapeError on any failure (refused, timeout, HTTP >= 400)."""
    request = urllib.request.Request(
        url, headers={"Accept": ACCEPT, "User-Agent": "gpu-telemetry-scrape/1"}
    )
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise ScrapeError(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, TimeoutError):
            raise ScrapeError(f"no answer within {timeout:g}s") from None
        raise ScrapeError(f"cannot connect: {reason}") from None
    except TimeoutError:
        raise ScrapeError(f"no answer within {timeout:g}s") from None
    except (http.client.HTTPException, OSError) as exc:
        raise ScrapeError(f"{type(exc).__name__}: {exc}") from None
    if len(body) > max_bytes:
        raise ScrapeError(f"the body is larger than {max_bytes} bytes")
    return body


@dataclass
class Backoff:
    """Delay before the next scrape of one endpoint (see the module docstring)."""

    interval: float
    cap: float
    failures: int = 0

    def success(self) -> float:
        self.failures = 0
        return self.interval

    def failure(self) -> float:
        self.failures += 1
        step = self.interval * 2 ** min(self.failures - 1, 30)
        return min(step, max(self.cap, self.interval))


@dataclass
class EndpointState:
    url: str
    up: bool | None = None  # None until the first round ends
    rounds: int = 0
    rows: int = 0
    failures: int = 0
    last_error: str = ""


class Scraper:
    """Polls each URL in its own thread until `stop()` (or `max_rounds` rounds each).

    Rows go to `series`; counts, rates and error reports to `progress`. A round
    in progress when `stop()` is called is finished (its fetch is bounded by
    `timeout`), then the thread ends; `join` waits for them.
    """

    def __init__(
        self,
        urls: list[str],
        *,
        series: JobSeries,
        progress: Progress,
        interval: float,
        timeout: float,
        max_backoff: float,
        max_rounds: int | None = None,
        fetcher: Callable[[str, float], bytes] = fetch,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.states = {url: EndpointState(url) for url in urls}
        self.series = series
        self.progress = progress
        self.interval = interval
        self.timeout = timeout
        self.max_backoff = max_backoff
        self.max_rounds = max_rounds
        self._fetch = fetcher
        self._clock = clock
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        for state in self.states.values():
            thread = threading.Thread(
                target=self._poll, args=(state,), name=f"scrape {state.url}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def join(self, timeout: float | None = None) -> None:
        end = None if timeout is None else self._clock() + timeout
        for thread in self._threads:
            thread.join(None if end is None else max(0.0, end - self._clock()))

    def detail(self) -> str:
        states = list(self.states.values())
        up = sum(1 for s in states if s.up)
        return f"{up}/{len(states)} endpoints up"

    def _poll(self, state: EndpointState) -> None:
        backoff = Backoff(self.interval, self.max_backoff)
        while not self._stop.is_set():
            started = self._clock()
            try:
                state.rows += self.scrape_once(state)
                state.up, state.last_error = True, ""
                delay = backoff.success()
            except ScrapeError as exc:
                delay = backoff.failure()
                state.up, state.failures, state.last_error = False, state.failures + 1, str(exc)
                self.progress.count(errors=1)
                self.progress.note(
                    f"scrape {state.url}: {exc} (failure {backoff.failures} in a row, "
                    f"next try in {delay:.3g}s)"
                )
            except Exception as exc:  # the pipeline (broker, etcd) or a bug: keep polling
                delay = backoff.success()
                self.progress.count(errors=1)
                self.progress.note(
                    f"scrape {state.url}: round not sent: {type(exc).__name__}: {exc}"
                )
            state.rounds += 1
            if self.max_rounds is not None and state.rounds >= self.max_rounds:
                return
            self._stop.wait(max(0.0, started + delay - self._clock()))

    def scrape_once(self, state: EndpointState) -> int:
        """Fetch, parse and send one round; returns the samples sent."""
        body = self._fetch(state.url, self.timeout)
        parts = urlsplit(state.url)
        parsed = parse_exposition(
            body.decode("utf-8", errors="replace"),
            cluster=self.series.cluster,
            scraped_at=now_ms(),
            default_host=parts.hostname or "",
            instance=parts.netloc,
            source=state.url,
            max_errors=settings.INGEST_MAX_ERRORS,
        )
        if not parsed.rows:
            raise ScrapeError(_why_empty(parsed, state.url))
        samples = self.series.send(
            parsed.rows,
            parsed.facts_of,
            rejected=parsed.rejected,
            errors=parsed.errors,
            accepted=parsed.samples,  # a row of the job is a sample line
            workload=parsed.workload_of,
        )
        self.progress.count(rows=parsed.samples)
        if parsed.rejected:
            self.progress.count(errors=1)
            self.progress.note(
                f"scrape {state.url}: {parsed.rejected} line(s) rejected{_first(parsed, state.url)}"
            )
        return samples


def _first(parsed: Exposition, url: str) -> str:
    if not parsed.errors:
        return ""
    first = parsed.errors[0]
    return f" (line {first.line}: {first.message.removeprefix(url + ': ')})"


def _why_empty(parsed: Exposition, url: str) -> str:
    if parsed.bad_lines:
        return f"not Prometheus text: {parsed.bad_lines} bad line(s){_first(parsed, url)}"
    if parsed.nonfinite:
        return f"every DCGM sample ({parsed.nonfinite}) is NaN or infinite"
    if parsed.ignored:
        return f"no DCGM GPU sample among {parsed.ignored} sample(s): is this dcgm-exporter?"
    return "the body holds no sample"
