"""The HTTP guard: what a request may send is decided from its headers, before its body is read.

Django's ASGI handler reads (and spools to disk) a whole request body before any
middleware or view runs, so a check in a view comes after the cost is paid. This
ASGI middleware sits in front of it and, per route and method (`policy_for`):

* refuses a body on routes that take none (413; for a method that never carries one and
  that the route does not have, 405 with Allow, as Django answers it without a body), and
  a declared Content-Length over the route's limit (413), without reading a byte;
* on routes that need a caller when they get a body (the upload and Prometheus remote
  write: TELEMETRY_WRITE_AUTH; GraphQL and Prometheus queries: TELEMETRY_READ_AUTH),
  checks the token or session from the headers and answers 401 before reading;
* counts the body as it arrives (chunked bodies have no Content-Length) and cuts it
  at the limit (413), and cuts a body that arrives slower than the budget (408):
  HTTP_BODY_GRACE plus one second per HTTP_BODY_MIN_RATE bytes received.

A cut is a fake `http.disconnect` given to Django's body reader, which then drops its
spool file and returns without answering; the guard answers instead, with
`Connection: close` so the server stops reading the rest. Reading happens on the
event loop (no thread is held while a slow client sends), and a spool on disk is
written from a thread (`GuardedASGIHandler`), so a large body does not stall others.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestAborted
from django.core.files.uploadedfile import TemporaryUploadedFile, UploadedFile
from django.core.files.uploadhandler import FileUploadHandler, TemporaryFileUploadHandler
from django.core.handlers.asgi import ASGIHandler
from django.urls import Resolver404, resolve, reverse

from apps.accounts.auth import user_for_session, user_for_token
from apps.api.lengths import declared_length
from apps.ingest.service import delete_older_files
from observability.metrics import HTTP_REFUSED

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
NEED_TOKEN = "authentication required: send 'Authorization: Bearer <token>'"


@dataclass(frozen=True)
class Policy:
    """What one route and method accepts as a body, and who must be asking when one comes."""

    limit: int  # bytes; 0: no body at all
    limit_name: str  # the setting that holds `limit`, named in refusals
    access: str = ""  # "write" or "read": the caller is checked before the body is read
    graphql: bool = False  # refusals in GraphQL's {"errors": [...]} shape


NO_BODY = Policy(0, "")

# Routes that take a body (by URL name): the setting holding the limit, who may send one,
# and the refusal's shape. Everything else takes none (tests/security checks that every
# view with a POST, PUT or PATCH handler is listed here or under the admin).
BODY_ROUTES: dict[str, tuple[str, str, bool]] = {
    "csv-upload": ("INGEST_MAX_UPLOAD_BYTES", "write", False),
    "prom-remote-write": ("REMOTE_WRITE_MAX_BYTES", "write", False),
    "graphql": ("DATA_UPLOAD_MAX_MEMORY_SIZE", "read", True),
    "admin-login": ("DATA_UPLOAD_MAX_MEMORY_SIZE", "", False),  # the admin's, paced (accounts)
}
FORM_LIMIT = "DATA_UPLOAD_MAX_MEMORY_SIZE"


def policy_for(method: str, path: str) -> Policy:
    """The body policy of `method path` (BODY_ROUTES, Prometheus queries, admin forms)."""
    if method not in BODY_METHODS:
        return NO_BODY
    try:
        match = resolve(path)
    except Resolver404:
        return NO_BODY
    name = match.url_name or ""
    if name in BODY_ROUTES:
        setting, access, graphql = BODY_ROUTES[name]
        return Policy(getattr(settings, setting), setting, access, graphql)
    if name.startswith("prom-"):  # Grafana posts its queries as forms
        return Policy(getattr(settings, FORM_LIMIT), FORM_LIMIT, "read")
    if "admin" in match.namespaces:
        return Policy(getattr(settings, FORM_LIMIT), FORM_LIMIT)
    return NO_BODY


@dataclass(frozen=True)
class Refusal:
    status: int
    reason: str  # metric label
    message: str
    challenge: bool = False  # add WWW-Authenticate
    allow: str = ""  # a 405's Allow header


class BodyGuard:
    """ASGI middleware enforcing `policy_for` on every HTTP request (see the module doc)."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = policy_for(scope["method"], scope["path"])
        headers = _headers(scope)
        refusal = _size_refusal(policy, headers)
        if refusal is not None and scope["method"] not in BODY_METHODS:
            # GET, DELETE, TRACE...: a method the route lacks is a 405 (as without a body)
            refusal = _method_refusal(scope["method"], scope["path"]) or refusal
        if refusal is None and policy.access and _has_body(headers):
            refusal = await _caller_refusal(policy.access, headers)
        if refusal is not None:
            await _answer(send, refusal, policy)
            return
        body = _MeteredBody(receive, policy)
        started = False

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = True
            await send(message)

        await self.app(scope, body, watched_send)
        if body.refusal is not None and not started:
            await _answer(send, body.refusal, policy)


def _method_refusal(method: str, path: str) -> Refusal | None:
    """405 when `path` routes to a class-based view without a handler for `method`."""
    try:
        view = getattr(resolve(path).func, "view_class", None)
    except Resolver404:
        return None
    if view is None or hasattr(view, method.lower()):
        return None
    allowed = [m.upper() for m in view.http_method_names if hasattr(view, m)]
    if "GET" in allowed and "HEAD" not in allowed:
        allowed.append("HEAD")  # Django's View answers HEAD with its GET
    message = f'Method "{method}" not allowed.'
    return Refusal(405, "method_not_allowed", message, allow=", ".join(allowed))


def _headers(scope: Scope) -> dict[bytes, bytes]:
    """Header name -> value (the last one of a repeated name; the names that matter are single)."""
    return {name.lower(): value for name, value in scope.get("headers", ())}


def _has_body(headers: dict[bytes, bytes]) -> bool:
    return b"transfer-encoding" in headers or headers.get(b"content-length", b"0").strip() != b"0"


def _size_refusal(policy: Policy, headers: dict[bytes, bytes]) -> Refusal | None:
    if not _has_body(headers):
        return None
    if policy.limit == 0:
        return Refusal(413, "body_not_allowed", "this route and method take no request body")
    declared = headers.get(b"content-length")
    if declared is None:
        return None  # chunked: counted as it arrives
    length = declared_length(declared)
    if length is None:
        return Refusal(400, "bad_length", "Content-Length is not a number")
    if length > policy.limit:
        return _too_large(policy)
    return None


def _too_large(policy: Policy) -> Refusal:
    return Refusal(
        413,
        "too_large",
        f"the request body is larger than the limit of {policy.limit} bytes ({policy.limit_name})",
    )


async def _caller_refusal(access: str, headers: dict[bytes, bytes]) -> Refusal | None:
    """None when the caller may `access` (the REST rule, decided from the headers)."""
    required = settings.TELEMETRY_WRITE_AUTH if access == "write" else settings.TELEMETRY_READ_AUTH
    if not required:
        return None
    scheme, _, key = headers.get(b"authorization", b"").decode("latin-1").strip().partition(" ")
    key = key.strip()
    if scheme.lower() in ("bearer", "token") and key and " " not in key:
        if await database_sync_to_async(user_for_token)(key) is None:
            return Refusal(401, "unauthenticated", "Invalid token.", challenge=True)
        return None
    session = _cookie(headers, settings.SESSION_COOKIE_NAME)
    if session and await database_sync_to_async(user_for_session)(session) is not None:
        return None  # CSRF and the rest are checked by the view, on a bounded body
    return Refusal(401, "unauthenticated", NEED_TOKEN, challenge=True)


def _cookie(headers: dict[bytes, bytes], name: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(headers.get(b"cookie", b"").decode("latin-1"))
    except Exception:  # a malformed cookie header: no session, as Django would treat it
        return ""
    morsel = jar.get(name)
    return morsel.value if morsel is not None else ""


class _MeteredBody:
    """`receive` for the wrapped app: counts body bytes and enforces size and pace.

    On a breach it records the refusal and returns `http.disconnect`, which makes
    Django's body reader drop what it spooled and return without answering.
    """

    def __init__(self, receive: Receive, policy: Policy) -> None:
        self.receive, self.policy = receive, policy
        self.received = 0
        self.started = time.monotonic()
        self.done = False
        self.refusal: Refusal | None = None

    async def __call__(self) -> Message:
        if self.done or self.refusal is not None:
            return await self.receive()  # after the body: the app waits for the disconnect
        deadline = (
            self.started + settings.HTTP_BODY_GRACE + self.received / settings.HTTP_BODY_MIN_RATE
        )
        try:
            message = await asyncio.wait_for(self.receive(), max(deadline - time.monotonic(), 0))
        except TimeoutError:
            return self._cut(
                Refusal(
                    408,
                    "too_slow",
                    f"the request body arrived too slowly: {self.received} bytes in "
                    f"{time.monotonic() - self.started:.1f} s; send at least "
                    f"{settings.HTTP_BODY_MIN_RATE} bytes per second (HTTP_BODY_MIN_RATE) "
                    f"after the first {settings.HTTP_BODY_GRACE:g} s (HTTP_BODY_GRACE)",
                )
            )
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.policy.limit:
            return self._cut(_too_large(self.policy))
        if not message.get("more_body", False):
            self.done = True
        return message

    def _cut(self, refusal: Refusal) -> Message:
        self.refusal = refusal
        return {"type": "http.disconnect"}


async def _answer(send: Send, refusal: Refusal, policy: Policy) -> None:
    HTTP_REFUSED.labels(refusal.reason).inc()
    if policy.graphql:
        payload: dict[str, Any] = {"errors": [{"message": refusal.message}]}
    else:
        payload = {"detail": refusal.message}
    body = json.dumps(payload).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),  # the rest of the body is never read
    ]
    if refusal.challenge:
        headers.append((b"www-authenticate", b'Bearer realm="telemetry"'))
    if refusal.allow:
        headers.append((b"allow", refusal.allow.encode()))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# A large raw body's file: named so that one left by a killed gateway can be told apart
BODY_PREFIX = "telemetry-body-"
SWEEP_EVERY = 60.0  # seconds between two sweeps of a gateway process
_swept_at = float("-inf")


def _note_sweep() -> None:
    global _swept_at
    _swept_at = time.monotonic()


def body_lifetime() -> float:
    """The longest a request body can take to arrive, in seconds: the guard cuts any body
    slower than HTTP_BODY_GRACE plus one second per HTTP_BODY_MIN_RATE bytes, and none is
    larger than INGEST_MAX_UPLOAD_BYTES; INGEST_JOB_STALE more for its request to end."""
    return (
        settings.HTTP_BODY_GRACE
        + settings.INGEST_MAX_UPLOAD_BYTES / settings.HTTP_BODY_MIN_RATE
        + settings.INGEST_JOB_STALE
    )


def sweep_bodies() -> int:
    """Delete the bodies a gateway process killed mid-request left in FILE_UPLOAD_TEMP_DIR
    (its own are deleted when their request ends): files of ours untouched for longer than
    any request lives (`body_lifetime`), so no live request's body is ever touched. Returns
    how many were deleted."""
    _note_sweep()
    folder = settings.FILE_UPLOAD_TEMP_DIR or tempfile.gettempdir()
    gone, _ = delete_older_files(folder, body_lifetime(), BODY_PREFIX)
    if gone:
        log.warning("deleted %d request bodies left in %s by a killed gateway", gone, folder)
    return gone


class SweptUploadedFile(TemporaryUploadedFile):
    """A multipart file part on disk (Django's TemporaryUploadedFile), named as the guard's
    bodies are, so that one a killed gateway left is swept with them (`sweep_bodies`)."""

    def __init__(
        self, name: str, content_type: str, size: int, charset: str | None, extra: Any = None
    ) -> None:
        # no extension from the client's file name: nothing reads it, and a long one made
        # the name too long for the file system (a 500)
        file = tempfile.NamedTemporaryFile(  # noqa: SIM115  (closed with the upload)
            prefix=BODY_PREFIX, suffix=".upload", dir=settings.FILE_UPLOAD_TEMP_DIR
        )
        UploadedFile.__init__(self, file, name, content_type, size, charset, extra)


class SweptFileUploadHandler(TemporaryFileUploadHandler):
    """Django's handler for file parts past FILE_UPLOAD_MAX_MEMORY_SIZE, with swept names
    (settings.FILE_UPLOAD_HANDLERS)."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        FileUploadHandler.new_file(self, *args, **kwargs)
        self.file = SweptUploadedFile(
            self.file_name, self.content_type, 0, self.charset, self.content_type_extra
        )


class GuardedASGIHandler(ASGIHandler):
    """Django's handler, spooling bodies into FILE_UPLOAD_TEMP_DIR and off the event loop.

    Django's own reader spools into the system temporary directory and writes to
    disk on the event loop, where a large upload stalls every other request. Up to
    FILE_UPLOAD_MAX_MEMORY_SIZE a body stays in memory; past it, writes are gathered into
    SPOOL_WRITE bytes, so a body costs one thread hop per MiB, not one per socket read.
    A raw upload declared larger than INGEST_ASYNC_BYTES (one answered once received) is
    spooled into a named file, deleted when the request ends, which its job takes over by
    a link instead of a copy (apps/ingest/service.py); those a killed gateway left are
    swept at start and then at most every SWEEP_EVERY (`sweep_bodies`).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = _linkable.set(_large_upload(scope))
        try:
            await super().__call__(scope, receive, send)
        finally:
            _linkable.reset(token)

    async def read_body(self, receive: Receive) -> Any:
        limit = settings.FILE_UPLOAD_MAX_MEMORY_SIZE
        spool: Any
        on_disk = _linkable.get()
        if on_disk:
            if time.monotonic() - _swept_at > SWEEP_EVERY:
                _note_sweep()  # before the thread starts: uploads arriving together sweep once
                await asyncio.to_thread(sweep_bodies)
            spool = tempfile.NamedTemporaryFile(  # noqa: SIM115  (returned open: Django closes it)
                mode="w+b", dir=settings.FILE_UPLOAD_TEMP_DIR, prefix=BODY_PREFIX
            )
        else:
            spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115  (as above)
                max_size=limit, mode="w+b", dir=settings.FILE_UPLOAD_TEMP_DIR
            )
        # on disk: the pieces the next write takes, as received. A bytearray grown and
        # cleared per MiB had the kernel fault its pages in again every MiB: a 128 MB
        # upload took 0.4-1.5 s against 0.23-0.6 s (docs/PERFORMANCE.md)
        pending: list[bytes] = []
        pending_bytes = 0
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestAborted()
                chunk = message.get("body", b"")
                last = not message.get("more_body", False)
                if not on_disk and spool.tell() + len(chunk) > limit:
                    await asyncio.to_thread(spool.rollover)
                    on_disk = True
                if not on_disk:
                    spool.write(chunk)
                else:
                    pending.append(chunk)
                    pending_bytes += len(chunk)
                    if pending_bytes >= SPOOL_WRITE or (last and pending):
                        await asyncio.to_thread(spool.writelines, pending)
                        pending, pending_bytes = [], 0
                if last:
                    break
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return spool


# Bytes gathered before one write of a request body to its spool on disk.
SPOOL_WRITE = 1024 * 1024
_linkable: contextvars.ContextVar[bool] = contextvars.ContextVar("linkable", default=False)


@functools.cache
def _upload_path() -> str:
    return reverse("csv-upload")


def _large_upload(scope: Scope) -> bool:
    """Whether the request is an upload declared larger than INGEST_ASYNC_BYTES (and than
    what stays in memory): the only body whose spool a job takes over."""
    declared = declared_length(_headers(scope).get(b"content-length"))
    if declared is None or declared <= max(
        settings.INGEST_ASYNC_BYTES, settings.FILE_UPLOAD_MAX_MEMORY_SIZE
    ):
        return False
    return scope.get("path") == _upload_path()
