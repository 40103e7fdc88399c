"""Answers kept while the store's view says nothing they read has changed.

A dashboard asks the same reads again and again: a GPU's window, the fleet's list. The
read lane keeps each such answer (its status 200, headers and body) under the request
that made it, with the view's stamp (store/view.py), and answers it again, from memory
and on the event loop, while the view holds that nothing the answer read changed since:
the GPU's keys for its telemetry, the fleet's records and latest values for a list, and
the store's other read keys for both. Anything else (the view unconfirmed, a write
delivered, a setting changed) and the read is made again, as the first was.

Bounded by READ_ANSWER_CACHE_BYTES per process (bodies and keys; one answer at most an
eighth of it), least recently used first out. A request's key names everything its
answer follows from besides the store: the route, the store root, the scheme and host
(links in the answer name them), the path and the query string as sent.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotModified

from apps.read.views import etag_matches
from observability.metrics import READ_KEPT_ANSWERS, child
from store import default_keys, view

log = logging.getLogger(__name__)
Key = tuple[str, str, bool, str, str, str]
_OVERHEAD = 1024  # bytes an entry costs besides its body, key and headers (objects, links)


@dataclass(frozen=True, slots=True)
class Kept:
    root: str
    stamp: view.Stamp
    uuid: str | None  # the GPU whose keys the answer read (None: the fleet's)
    headers: tuple[tuple[str, str], ...]
    body: bytes
    etag: str | None  # the list's version, for If-None-Match


class Answers:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: OrderedDict[Key, tuple[Kept, int]] = OrderedDict()
        self.bytes = 0
        self.generation = 0  # moved by clear(): a build started before it keeps nothing

    def get(self, key: Key) -> Kept | None:
        with self._lock:
            held = self._held.get(key)
        if held is None:
            child(READ_KEPT_ANSWERS, "miss").inc()
            return None
        kept = held[0]
        seen = view.get()
        verdict = (
            view.Verdict.UNKNOWN
            if seen is None
            else seen.check(kept.root, kept.stamp, kept.uuid, fleet=kept.uuid is None)
        )
        if verdict is view.Verdict.CHANGED:
            self._drop(key, held)
            child(READ_KEPT_ANSWERS, "stale").inc()
            return None
        if verdict is view.Verdict.UNKNOWN:  # kept: the view may vouch for it again soon
            child(READ_KEPT_ANSWERS, "unvouched").inc()
            return None
        with self._lock:
            if key in self._held:
                self._held.move_to_end(key)
        child(READ_KEPT_ANSWERS, "hit").inc()
        return kept

    def put(self, key: Key, kept: Kept, limit: int, generation: int) -> None:
        size = len(kept.body) + _OVERHEAD
        size += sum(len(part.encode()) for part in key if isinstance(part, str))
        size += sum(len(name) + len(value) for name, value in kept.headers)
        if size > limit // 8:
            return
        with self._lock:
            if generation != self.generation:
                return
            old = self._held.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._held[key] = (kept, size)
            self.bytes += size
            while self.bytes > limit:
                _, (_, dropped) = self._held.popitem(last=False)
                self.bytes -= dropped

    def _drop(self, key: Key, held: tuple[Kept, int]) -> None:
        with self._lock:
            if self._held.get(key) is held:
                del self._held[key]
                self.bytes -= held[1]

    def clear(self) -> None:
        with self._lock:
            self._held.clear()
            self.bytes = 0
            self.generation += 1


answers = Answers()


def _forget(**kwargs: object) -> None:  # an answer follows from settings too
    answers.clear()


setting_changed.connect(_forget)


def key_of(route: str, request: HttpRequest) -> Key | None:
    """The key of a lane request's answer; None when nothing is kept (no view)."""
    if not settings.READ_ANSWER_CACHE_BYTES:
        return None
    try:
        if view.get() is None:
            return None
    except Exception:  # on the event loop: a failure here only means nothing is kept
        log.exception("store view: not available")
        return None
    return (
        route,
        default_keys().root,
        request.is_secure(),
        request.get_host(),
        request.path,
        request.META.get("QUERY_STRING", ""),
    )


def looked_up(key: Key | None) -> Kept | None:
    """The kept answer under `key`, None when there is none (or no key). Counted."""
    try:
        return None if key is None else answers.get(key)
    except Exception:  # on the event loop: read the store instead
        log.exception("store view: kept answers not available")
        return None


def held(key: Key | None, request: HttpRequest) -> HttpResponseBase | None:
    """The kept answer to this request, as a new response; None when there is none."""
    return as_response(looked_up(key), request)


def as_response(kept: Kept | None, request: HttpRequest) -> HttpResponseBase | None:
    """A kept answer as a new response to `request` (a 304 when its If-None-Match names
    the kept version)."""
    if kept is None:
        return None
    if kept.etag is not None and etag_matches(
        request.META.get("HTTP_IF_NONE_MATCH", ""), kept.etag
    ):
        response: HttpResponseBase = HttpResponseNotModified()
        for name, value in kept.headers:
            if name.lower() != "content-type":
                response[name] = value
        return response
    response = HttpResponse(kept.body)
    for name, value in kept.headers:
        response[name] = value
    return response


def built(
    key: Key | None,
    uuid: str | None,
    build: Callable[[], HttpResponseBase],
) -> HttpResponseBase:
    """`build()`'s answer, kept under `key` when it is a plain 200 and the view stamped its
    start (no watch running: nothing is kept)."""
    if key is None:
        return build()
    seen = view.get()
    generation = answers.generation
    stamp = None if seen is None else seen.stamp(key[1])
    response = build()
    if (
        stamp is not None
        and response.status_code == 200
        and isinstance(response, HttpResponse)
        and not response.cookies
    ):
        headers = tuple((str(n), str(v)) for n, v in response.items())
        etag = response.get("ETag") if uuid is None else None
        version = None if etag is None else etag.removeprefix("W/").strip('"')
        kept = Kept(key[1], stamp, uuid, headers, response.content, version)
        answers.put(key, kept, settings.READ_ANSWER_CACHE_BYTES, generation)
    return response
