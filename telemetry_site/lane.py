"""The read lane: the hot reads answered before Django's handler, with Django's answers.

A small read spends most of its time before and after the store: Django's ASGI
handler starts a thread per request and runs 13 middlewares, DRF builds a
serializer (deep-copying its fields), negotiates, authenticates, and only then
reads (docs/PERFORMANCE.md, issue 16). This ASGI middleware, inside the body
guard (so a body it reads is bounded and paced as Django's would be), answers
`/health`, the GPU list (ETag/304 included), a GPU's telemetry (rows, columns,
CSV, step) by GET, an ingest job (what an upload's client polls), and Prometheus
`query`/`query_range` by GET or form POST,
with the same functions Django's views call, one thread hop for the store, and
the same response steps Django's middleware would take (security and frame
headers, Vary, partial shards, compression, request metrics).

It answers only what it fully understands; everything else goes to Django
unchanged (a form body it read is handed on), so errors stay worded in one
place: another method, a body on a GET, a cookie (sessions, CSRF), an Accept
other than JSON's (an empty one included), more than MAX_PARSED of query string or
form, a form without one Content-Type and a Content-Length, a parameter the lane's parser
(apps.read.serializers.plainly_valid) does not find plainly valid, a token DRF
refuses, a caller without read access, a throttled caller, an HTTPS redirect, a
host Django refuses. The throttle is DRF's (the same class, histories and rate as Django's),
consulted last before the store, so a request counts once, and a refused one is
not counted and is refused again by Django, with its 429. Errors found while
reading (unknown GPU, store down, too many buckets, a bad PromQL query) are
answered here by the functions the views use; an unexpected exception goes to
Django, which answers it as always (that request then counts twice against the
throttle). READ_LANE=off sends every request to Django;
`telemetry_read_lane_answers_total` counts the lane's answers.

A GET the lane answered plainly before, asked again alike by an anonymous caller, skips
these steps (telemetry_site/recall.py): its kept answer goes out after the view's
permission and throttle, with the header template the steps gave it.
"""

from __future__ import annotations

import asyncio
import contextvars
import io
import logging
import os
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.handlers.asgi import ASGIHandler, ASGIRequest
from django.core.signals import request_finished, setting_changed
from django.http import HttpRequest, HttpResponse, HttpResponseBase, QueryDict
from django.middleware.clickjacking import XFrameOptionsMiddleware
from django.middleware.common import CommonMiddleware
from django.middleware.security import SecurityMiddleware
from django.urls import ResolverMatch, get_resolver, get_urlconf
from django.utils.cache import patch_vary_headers
from django.utils.log import log_response
from rest_framework.authentication import SessionAuthentication
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.auth import BearerOrTokenAuthentication
from apps.read import answers, views
from apps.read.errors import store_error_answer
from apps.read.middleware import mark_partial
from apps.read.prometheus import views as prom_views
from apps.read.render import FastJSONRenderer
from apps.read.serializers import GpuListParams, TelemetryParams, plainly_valid
from observability.metrics import (
    READ_LANE_ANSWERS,
    READ_LANE_INLINE,
    READ_LANE_RECALLED,
    child,
)
from observability.middleware import observe
from store import inline, shards
from store.errors import StoreError
from telemetry_site.compression import OFF_LOOP_SIZE, acompress, coding_for, encoded, planned
from telemetry_site.guard import App, Message, Receive, Scope, Send
from telemetry_site.recall import Caller, Recall, Recalls
from telemetry_site.streaming import pulled_in_batches

log = logging.getLogger(__name__)

# Accept headers under which DRF's negotiation picks the JSON renderer as it is (no
# indent, no browsable page): what programs, Grafana and our dashboard send, or none (an
# empty one is not none: DRF finds no renderer for it, 406).
JSON_ACCEPTS = frozenset({"*/*", "application/json", "application/json, text/plain, */*"})
FILTERS = ("cluster", "host", "model")  # GpuListParams; the paginator reads the others
GPU_LIST_KEYS = frozenset({*FILTERS, "limit", "offset"})
# DRF's authenticators the lane reproduces: a token from the headers, else a session,
# which needs a cookie (a request with one goes to Django).
AUTHENTICATORS = [BearerOrTokenAuthentication, SessionAuthentication]
# Grafana's form posts (DRF's FormParser with the UTF-8 it assumes)
FORM_TYPES = frozenset(
    {b"application/x-www-form-urlencoded", b"application/x-www-form-urlencoded;charset=utf-8"}
)


# The most bytes of query string or form the lane parses, on the event loop: Django's
# parser takes ~0.1 s per MB of percent-escapes (and a metric list as long costs as much
# again to check), which would stall every request; a longer one goes to Django's thread.
MAX_PARSED = 16 * 1024
# Routes the lane keeps per path (Django's resolve() was ~12 % of the lane's CPU for an
# instant query); a GPU's path names its UUID, so these are bounded in number and length,
# not kept for every path a client makes up.
KEPT_ROUTES = 4096
KEPT_PATH_CHARS = 256


class FallThrough(Exception):
    """Django answers this request (raised before anything is sent or counted; a form body
    the lane read is handed on with it)."""


@dataclass
class Answer:
    response: HttpResponseBase
    view: Any = None  # the DRF view, whose default headers (Allow, Vary: Accept) it gets
    session_touched: bool = False  # DRF looked for a session: Django says Vary: Cookie
    partial: shards.Partial | None = None
    kept_key: answers.Key | None = None  # the key its kept answer is (or would be) under


def _unused(request: HttpRequest) -> HttpResponse:  # the middlewares' get_response
    raise AssertionError("the read lane calls middleware hooks, never the chain")


class ReadLane:
    """ASGI middleware: the lane in front of `app` (Django's handler), inside the guard."""

    def __init__(self, app: App, handler: ASGIHandler) -> None:
        self.app = app
        self.handler = handler  # Django's: the lane sends its answers the same way
        self.security = SecurityMiddleware(_unused)
        self.common = CommonMiddleware(_unused)
        self.frames = XFrameOptionsMiddleware(_unused)
        self._resolver: Any = None
        self._matches: dict[str, ResolverMatch] = {}  # path -> one of the lane's routes
        self.templates = _Templates()
        self.recalls = Recalls()
        self.finish_plain = finished_receivers() != FINISHED_RECEIVERS  # checked once, here
        self.routes: dict[str, Callable[[ASGIRequest, ResolverMatch, _Body], Any]] = {
            "health": self._health,
            "gpu-list": self._gpu_list,
            "gpu-telemetry": self._telemetry,
            "prom-query": self._prometheus,
            "prom-query-range": self._prometheus,
            "ingest-job": self._job,
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _plain(scope):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        body = _Body(receive)
        recall = self.recalls.get(scope)
        if recall is not None and await self._recall(recall, scope, body, send, started):
            return
        try:
            request, match = self._understood(scope)
            route = self.routes[match.url_name]  # type: ignore[index]
            answer = await route(request, match, body)
        except FallThrough:
            await self.app(scope, body.replay, send)  # what the lane read, then the rest
            return
        await self._send(request, match, answer, send, started)

    # --- what the lane takes --------------------------------------------------------------
    def _understood(self, scope: Scope) -> tuple[ASGIRequest, ResolverMatch]:
        """The request and its route, when the route is the lane's and Django's site-wide
        request checks (HTTPS redirect, allowed hosts, user agents) let it through."""
        try:
            request = ASGIRequest(scope, io.BytesIO())  # a form is parsed by the lane
            match = self._route(request.path_info)
        except Exception:  # undecodable, no route: Django's answer
            raise FallThrough from None
        if match.url_name not in self.routes:
            raise FallThrough
        try:
            if self.security.process_request(request) or self.common.process_request(request):
                raise FallThrough
        except FallThrough:
            raise
        except Exception:  # DisallowedHost, PermissionDenied
            raise FallThrough from None
        request.resolver_match = match
        return request, match

    def _route(self, path: str) -> ResolverMatch:
        """Django's `resolve(path)`, kept per path for the lane's routes (a match is only
        read: its view, arguments and route)."""
        resolver = get_resolver(get_urlconf())
        if resolver is not self._resolver:  # another URLconf (tests override it): start over
            self._resolver, self._matches = resolver, {}
        match = self._matches.get(path)
        if match is None:
            match = resolver.resolve(path)
            if match.url_name in self.routes and len(path) <= KEPT_PATH_CHARS:
                if len(self._matches) >= KEPT_ROUTES:  # the oldest goes
                    del self._matches[next(iter(self._matches))]
                self._matches[path] = match
        return match

    async def _health(self, request: ASGIRequest, match: ResolverMatch, body: _Body) -> Answer:
        _get_only(request)
        return Answer(match.func(request, *match.args, **match.kwargs))

    async def _gpu_list(self, request: ASGIRequest, match: ResolverMatch, body: _Body) -> Answer:
        _get_only(request)
        key = answers.key_of("gpu-list", request)
        kept = answers.held(key, request)  # asked again: parameters checked the first time
        if kept is None:
            query = _query(request)
            if not query.keys() <= GPU_LIST_KEYS:
                raise FallThrough
            filters = plainly_valid(GpuListParams, {k: query[k] for k in query if k in FILTERS})
            if filters is None:
                raise FallThrough
        view, drf, touched = await self._admitted(request, match)
        if kept is None:
            paginator = view.pagination_class()
            try:  # the page parameters, checked before the throttle counts the request
                paginator.get_limit(drf)
                paginator.get_offset(drf)
            except Exception:
                raise FallThrough from None
        await self._throttle(view, drf)
        if kept is not None:
            return Answer(kept, view, touched)
        return await _off_loop(
            lambda: answers.built(key, None, lambda: _render(view, view.gpus(drf, filters))),
            view,
            touched,
        )

    async def _telemetry(self, request: ASGIRequest, match: ResolverMatch, body: _Body) -> Answer:
        _get_only(request)
        key = answers.key_of("gpu-telemetry", request)
        # asked again: parameters checked the first time (the recall may have asked already)
        found = body.kept if body.asked else answers.looked_up(key)
        kept = answers.as_response(found, request)
        if kept is None:
            query = query_params(request.META["QUERY_STRING"])
            data = plainly_valid(TelemetryParams, views.telemetry_data(query))
            if data is None:
                raise FallThrough
        view, drf, touched = await self._admitted(request, match)
        await self._throttle(view, drf)
        if kept is not None:
            return Answer(kept, view, touched, kept_key=key)
        uuid = match.kwargs["uuid"]
        answer = await _off_loop(
            lambda: answers.built(key, uuid, lambda: views.telemetry_answer(request, uuid, data)),
            view,
            touched,
        )
        answer.kept_key = key
        return answer

    async def _job(self, request: ASGIRequest, match: ResolverMatch, body: _Body) -> Answer:
        """An ingest job, as an upload's client polls it (no query string: DRF ignores one,
        but Django parses and bounds it)."""
        _get_only(request)
        if request.META.get("QUERY_STRING"):
            raise FallThrough
        view, drf, touched = await self._admitted(request, match)
        await self._throttle(view, drf)
        job_id = match.kwargs["job_id"]
        return await _off_loop(lambda: _render(view, view.get(drf, job_id)), view, touched)

    async def _prometheus(self, request: ASGIRequest, match: ResolverMatch, body: _Body) -> Answer:
        query = query_params(request.META["QUERY_STRING"])
        get = lambda name: query.get(name, [])  # noqa: E731
        if request.method == "POST":  # Grafana's form posts: query string and form merged
            form = await _form(body)
            get = lambda name: query.get(name, []) + form.getlist(name)  # noqa: E731
        view, drf, touched = await self._admitted(request, match)
        await self._throttle(view, drf)
        endpoint = type(view).endpoint
        return await _off_loop(
            lambda: prom_views.respond(endpoint, get, **match.kwargs),
            view,
            touched,
            first_inline=True,
        )

    # --- DRF's checks, with DRF's own classes -----------------------------------------
    async def _admitted(self, request: ASGIRequest, match: ResolverMatch) -> tuple[Any, Any, bool]:
        """The view, its DRF request with the caller, and whether DRF would have looked for a
        session; FallThrough unless DRF would let the caller read with JSON."""
        view_class = match.func.view_class  # type: ignore[attr-defined]
        accept = request.META.get("HTTP_ACCEPT")  # request.headers, without building them
        if accept is not None and accept.strip() not in JSON_ACCEPTS:
            raise FallThrough
        if list(view_class.authentication_classes) != AUTHENTICATORS:
            raise FallThrough  # a view authenticating otherwise: only Django knows
        view = view_class(**match.func.view_initkwargs)  # type: ignore[attr-defined]
        view.setup(request, *match.args, **match.kwargs)  # as View.as_view's view() does
        drf = Request(request)
        drf.user, touched = AnonymousUser(), True
        if "HTTP_AUTHORIZATION" in request.META:
            try:
                caller = await database_sync_to_async(BearerOrTokenAuthentication().authenticate)(
                    drf
                )
            except Exception:  # an unknown or inactive token: DRF's 401
                raise FallThrough from None
            if caller is not None:
                drf.user, touched = caller[0], False
        if not all(p.has_permission(drf, view) for p in view.get_permissions()):
            raise FallThrough
        return view, drf, touched

    async def _throttle(self, view: Any, drf: Request) -> None:
        """DRF's throttles, counted here and only here (a refusal counts nothing). On the
        event loop: their histories are in process memory (apps/accounts/throttles.py)."""
        if not all(t.allow_request(drf, view) for t in view.get_throttles()):
            raise FallThrough

    async def _recall(
        self, recall: Recall, scope: Scope, body: _Body, send: Send, started: float
    ) -> bool:
        """A request the lane answered before (telemetry_site/recall.py): its kept answer
        sent with the header template the steps gave it, after the view's permissions and
        throttles. False: the steps answer it (nothing sent, nothing counted but the kept
        answer's lookup)."""
        kept = answers.looked_up(recall.key)
        body.asked, body.kept = True, kept  # the steps are given it: not asked for twice
        sendable = None if kept is None else self._template_for(recall, kept)
        if kept is None or sendable is None:
            if kept is not None:  # no longer sent plainly (compressed off the loop, say)
                self.recalls.drop(scope)
            child(READ_LANE_RECALLED, "stepped").inc()
            return False
        template, coding = sendable
        try:
            caller = Caller(scope, recall.match)
            view = recall.view_class()
            allowed = all(p.has_permission(caller, view) for p in view.get_permissions())
            counted = allowed and all(t.allow_request(caller, view) for t in view.get_throttles())
        except Exception:  # a bug of ours: Django answers it (and logs it) as always
            log.exception("read lane: a recalled request's checks failed")
            self.recalls.drop(scope)
            child(READ_LANE_RECALLED, "stepped").inc()
            await self.app(scope, body.replay, send)
            return True
        if not counted:
            child(READ_LANE_RECALLED, "stepped").inc()
            if not allowed:
                return False  # the steps refuse it, as Django would
            await self.app(scope, body.replay, send)  # DRF's 429 (a refusal counts nothing)
            return True
        child(READ_LANE_RECALLED, "sent").inc()
        await _deliver(caller, recall.match, kept.body, template, coding, send, started)
        return True

    def _template_for(
        self, recall: Recall, kept: answers.Kept
    ) -> tuple[_Template, str | None] | None:
        """The header template and coding `_send` would give this kept answer (a plain one:
        its Content-Type its only header), None when it would not send it plain."""
        if kept.etag is not None or len(kept.headers) != 1:
            return None  # If-None-Match decides its status; another header: not plain
        if kept.headers[0][0].lower() != "content-type":
            return None
        content_type = kept.headers[0][1]
        size = len(kept.body)
        coding = coding_for(recall.coding, content_type, size)
        key = _template_key(recall.view_class, True, recall.secure, coding, content_type, size)
        template = None if key is None else self.templates.get(key)
        return None if template is None else (template, coding)

    # --- the answer, through the steps Django's middleware takes ---------------------------
    async def _send(
        self, request: ASGIRequest, match: ResolverMatch, answer: Answer, send: Send, started: float
    ) -> None:
        response = answer.response
        plain = _plain_answer(request, answer)
        if plain is not None:
            self.recalls.note(request, match, answer, self.finish_plain)
        if plain is not None and (template := self.templates.get(plain)) is not None:
            await self._send_plain(request, match, response, template, plain[3], send, started)
            return
        generation = self.templates.generation
        if answer.view is not None:  # as APIView.finalize_response adds them
            headers = dict(_default_headers(answer.view))
            if "Vary" in headers:
                patch_vary_headers(response, (headers.pop("Vary"),))
            for name, value in headers.items():
                response[name] = value
        # inner to outer, as settings.MIDDLEWARE runs them on the way out
        response = self.frames.process_response(request, response)
        response = self.common.process_response(request, response)
        if answer.session_touched:
            patch_vary_headers(response, ("Cookie",))  # SessionMiddleware: session accessed
        response = self.security.process_response(request, response)
        if answer.partial is not None:
            mark_partial(response, answer.partial)  # type: ignore[arg-type]
        response = await acompress(request, response)
        observe(request, response.status_code, started)
        child(READ_LANE_ANSWERS, f"/{match.route}").inc()
        if response.status_code >= 400:
            log_response(
                "%s: %s", response.reason_phrase, request.path, response=response, request=request
            )
        if response.streaming and not response.is_async:  # AsyncStreaming's step
            response.streaming_content = pulled_in_batches(response.streaming_content)
        if plain is not None:
            self.templates.keep(plain, response, generation)
        try:
            await self.handler.send_response(response, send)
        finally:
            response.close()

    async def _send_plain(
        self,
        request: ASGIRequest,
        match: ResolverMatch,
        response: HttpResponseBase,
        template: list[tuple[bytes, bytes | None]],
        coding: str | None,
        send: Send,
        started: float,
    ) -> None:
        """A plain answer sent with the headers the steps above gave the last one like it
        (`_Templates`): its body encoded as they said, its length filled in."""
        try:
            await _deliver(request, match, response.content, template, coding, send, started)
        finally:
            # A plain answer holds no resource, and the signal close() sends,
            # request_finished, has nothing to do on the event loop (~5 % of a PromQL
            # answer's CPU): skipped while its receivers are FINISHED_RECEIVERS.
            if self.finish_plain:  # a receiver of unknown kind: in Django's thread, as it does
                await sync_to_async(response.close, thread_sensitive=True)()


# request_finished's receivers, all Django's, each with nothing to do for a plain answer
# on the event loop: no database connection is opened on this thread (Django refuses it,
# async-unsafe; token checks run in database_sync_to_async, which closes its own), the
# cache is in-process memory (no CACHES set: closing it does nothing), and the lane sets
# no URLconf. With any other receiver connected when a lane is made, plain answers are
# closed (and the signal sent) as Django closes them; a test holds this list to the signal's.
FINISHED_RECEIVERS = frozenset(
    {
        "django.db.close_old_connections",
        "django.core.cache.close_caches",
        "django.core.handlers.base.reset_urlconf",
    }
)


def finished_receivers() -> frozenset[str]:
    """The names of request_finished's receivers (for a response Django's ASGI handler made)."""
    sync, asynchronous = request_finished._live_receivers(ASGIHandler)
    return frozenset(f"{r.__module__}.{r.__qualname__}" for r in [*sync, *asynchronous])


class _Templates:
    """The headers Django's response steps (DRF's defaults, the middlewares, compression)
    gave a plain answer, by what decides them: the view, whether DRF looked for a session,
    HTTPS, the coding, the content type. The lane's answers of exact `HttpResponse` type,
    200, carrying only their Content-Type (a PromQL answer) then skip those steps (~0.1-0.25
    ms of a 1 ms answer's CPU here); Content-Length is filled in per answer. Only headers
    those steps give every such answer are kept (KEPT): an answer with another (a partial
    shard's, say) is never a template. One set per lane (its middlewares read their
    settings when it is made), forgotten when a setting changes (X_FRAME_OPTIONS is read
    per answer), and bounded (a handful of keys are in use)."""

    LIMIT = 64
    KEPT = frozenset(
        {
            "content-type", "content-length", "content-encoding", "vary", "allow",
            "x-frame-options", "x-content-type-options", "referrer-policy",
            "cross-origin-opener-policy", "strict-transport-security",
        }
    )  # fmt: skip

    def __init__(self) -> None:
        self.held: dict[tuple, list[tuple[bytes, bytes | None]]] = {}
        self.generation = 0  # moved by a setting change: a template made across it is stale
        _every_set.add(self)

    def get(self, key: tuple) -> list[tuple[bytes, bytes | None]] | None:
        return self.held.get(key)

    def forget(self) -> None:
        self.generation += 1
        self.held = {}

    def keep(self, key: tuple, response: HttpResponseBase, generation: int) -> None:
        if generation != self.generation or response.cookies or response.streaming:
            return
        if any(name.lower() not in self.KEPT for name in response.headers):
            return
        if len(self.held) >= self.LIMIT:
            self.held = {}
        self.held[key] = [
            (
                str(name).encode("ascii"),
                None if name.lower() == "content-length" else str(value).encode("latin1"),
            )
            for name, value in response.items()
        ]


_every_set: weakref.WeakSet[_Templates] = weakref.WeakSet()


def _forget_templates(**kwargs: Any) -> None:
    for templates in list(_every_set):
        templates.forget()


setting_changed.connect(_forget_templates)


def _plain_answer(request: ASGIRequest, answer: Answer) -> tuple | None:
    """The template key of a plain answer (see _Templates), None for any other."""
    response = answer.response
    if (
        type(response) is not HttpResponse
        or response.status_code != 200
        or answer.view is None
        or (answer.partial is not None and answer.partial.missing)
        or getattr(response, "xframe_options_exempt", False)
        or response.cookies
        or len(response.headers) != 1
    ):
        return None
    content_type = response.get("Content-Type")
    if content_type is None:
        return None
    coding = planned(request, response)
    size = 0 if coding is None else len(response.content)  # only a coded body's size matters
    secure = request.is_secure()
    return _template_key(
        type(answer.view), answer.session_touched, secure, coding, content_type, size
    )


def _template_key(
    kind: type, touched: bool, secure: bool, coding: str | None, content_type: str, size: int
) -> tuple | None:
    """A plain answer's template key (`_Templates`, the recall's too); None when its body
    is compressed on a thread (acompress), so never sent plainly."""
    if coding is not None and size >= OFF_LOOP_SIZE:
        return None
    return (kind, touched, secure, coding, content_type)


_headers_of: dict[type, dict[str, str]] = {}


def _default_headers(view: Any) -> dict[str, str]:
    """DRF's `default_response_headers` (Allow, Vary), made once per view class: they
    follow from the class alone (its methods and renderers)."""
    kind = type(view)
    if kind not in _headers_of:
        _headers_of[kind] = view.default_response_headers
    return _headers_of[kind]


def _plain(scope: Scope) -> bool:
    """A GET without a body, or a form POST, no cookie (no session can apply), and no more
    than MAX_PARSED to parse."""
    headers = scope.get("headers", ())
    if any(name == b"cookie" for name, _ in headers):
        return False
    if len(scope.get("query_string", b"")) > MAX_PARSED:
        return False
    if scope["method"] == "POST":
        # DRF reads a form only by its Content-Length (chunked: an empty form), and Django
        # joins repeated Content-Types into one DRF has no parser for (415)
        kinds = [v for n, v in headers if n == b"content-type"]
        lengths = [v for n, v in headers if n == b"content-length"]
        if len(kinds) != 1 or len(lengths) != 1 or not lengths[0].strip().isdigit():
            return False
        if int(lengths[0]) > MAX_PARSED:
            return False
        return kinds[0].lower().replace(b" ", b"") in FORM_TYPES
    if scope["method"] != "GET":
        return False
    for name, value in headers:
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return False
    return True


def _get_only(request: ASGIRequest) -> None:
    if request.method != "GET":
        raise FallThrough


_Template = list[tuple[bytes, bytes | None]]


async def _deliver(
    request: Any,
    match: ResolverMatch,
    content: bytes,
    template: _Template,
    coding: str | None,
    send: Send,
    started: float,
) -> None:
    """A plain answer's body sent with `template`'s headers, its length filled in, and
    counted (`observe` reads the request's method and route)."""
    body = content if coding is None else encoded(coding, content)
    length = str(len(body)).encode("latin1")
    headers = [(name, length if value is None else value) for name, value in template]
    observe(request, 200, started)  # as _send: before it is sent
    child(READ_LANE_ANSWERS, f"/{match.route}").inc()
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    # one message: the ASGI server writes it as the socket takes it (Django's
    # send_response cuts 64 KB copies, 110 of them for a day of rows as JSON)
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Body:
    """The request's `receive`, recording what the lane reads so Django can be given it."""

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.read: list[Message] = []
        # the recall asked for the kept answer (None: none vouched): the steps do not again
        self.asked = False
        self.kept: answers.Kept | None = None

    async def all(self) -> bytes | None:
        """The whole body (already bounded and paced by the guard), None if cut short."""
        while True:
            message = await self.receive()
            self.read.append(message)
            if message["type"] != "http.request":
                return None  # the guard cut it (413, 408) or the client left: Django's turn
            if not message.get("more_body", False):
                return b"".join(m.get("body", b"") for m in self.read)

    async def replay(self) -> Message:
        return self.read.pop(0) if self.read else await self.receive()


async def _form(body: _Body) -> QueryDict:
    """The form of a POST, parsed as DRF's FormParser parses it (Django's QueryDict)."""
    raw = await body.all()
    if raw is None:
        raise FallThrough
    try:
        return QueryDict(raw, encoding="utf-8")
    except Exception:  # too many fields, undecodable: Django words it
        raise FallThrough from None


def query_params(query_string: str) -> dict[str, list[str]]:
    """A query string as Django's QueryDict parses it (the same parse_qsl call, charset and
    field limit), as a dict of lists: building a QueryDict was ~4 % of a PromQL answer's
    CPU. Too many fields: Django's 400."""
    try:
        pairs = parse_qsl(
            query_string,
            keep_blank_values=True,
            encoding=settings.DEFAULT_CHARSET,
            max_num_fields=settings.DATA_UPLOAD_MAX_NUMBER_FIELDS,
        )
    except ValueError:
        raise FallThrough from None
    out: dict[str, list[str]] = {}
    for name, value in pairs:
        out.setdefault(name, []).append(value)
    return out


def _query(request: ASGIRequest) -> Any:
    try:
        return request.GET  # Django's parser and limits (too many fields: Django's 400)
    except Exception:
        raise FallThrough from None


def _render(view: Any, response: HttpResponseBase) -> HttpResponseBase:
    """A DRF Response rendered as DRF's negotiation renders it for a JSON Accept."""
    if isinstance(response, Response):
        renderer = view.renderer_classes[0]()
        assert isinstance(renderer, JSONRenderer)  # DRF's, or FastJSONRenderer
        response.accepted_renderer = renderer
        response.accepted_media_type = renderer.media_type
        response.renderer_context = view.get_renderer_context()
        response.render()
    return response


_pool: tuple[int, ThreadPoolExecutor] | None = None


def store_pool() -> ThreadPoolExecutor:
    """The lane's own threads for store reads (READ_LANE_THREADS), made once per process: a
    read stalled on an unreachable shard waits there, and the event loop's default pool
    (the guard's upload spooling, compression) stays free."""
    global _pool
    if _pool is None or _pool[0] != os.getpid():
        threads = settings.READ_LANE_THREADS
        _pool = (os.getpid(), ThreadPoolExecutor(threads, thread_name_prefix="read-lane"))
    return _pool[1]


async def _off_loop(
    work: Callable[[], HttpResponseBase], view: Any, touched: bool, first_inline: bool = False
) -> Answer:
    """`work` in a worker thread (it blocks on etcd), its shards collected; a store error
    answered as the views' exception handler answers it. With `first_inline`, tried first
    on the event loop, where it stops at its first wait (store/inline.py): answered from
    memory, a query saves the two thread hops (~1 ms of a 3 ms answer here)."""

    def run() -> tuple[HttpResponseBase, shards.Partial]:
        with shards.collecting() as partial:
            try:
                return work(), partial
            except StoreError as exc:
                answer = store_error_answer(exc)
                if answer is None:
                    raise
                status, headers, body = answer
                response = HttpResponse(
                    FastJSONRenderer().render(body), status=status, content_type="application/json"
                )
                for name, value in headers.items():
                    response[name] = value
                return response, partial

    if first_inline:
        try:
            with inline.inline():
                response, partial = run()
        except inline.WouldWait:
            child(READ_LANE_INLINE, "retried").inc()  # again, from the start, on a thread
        except Exception:  # a bug of ours: Django answers (and logs) it as it would
            raise FallThrough from None
        else:
            child(READ_LANE_INLINE, "answered").inc()
            return Answer(response, view, touched, partial)
    try:
        loop = asyncio.get_running_loop()
        response, partial = await loop.run_in_executor(
            store_pool(), contextvars.copy_context().run, run
        )
    except Exception:  # a bug of ours: Django answers (and logs) it as it would
        raise FallThrough from None
    return Answer(response, view, touched, partial)
