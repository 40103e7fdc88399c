"""Requests the read lane answered before, recognised before any of its steps run.

A dashboard or a program asks the same read again and again, with the same headers. The
lane's steps for a request (Django's request object, the route, the site checks of
SecurityMiddleware and CommonMiddleware, the answer's key, DRF's view and request, the
response object and the header template) cost ~0.5 ms of the event loop's CPU here, three
times the kept answer's own lookup. Each of them follows from the request's method, scheme,
server, path, query string and headers, and from settings, except three: whether the kept
answer is still the store's, the caller's permission and the throttle. So once the lane
has answered an anonymous GET plainly (`_send_plain`'s template), the request is noted here
under all of those inputs, and the next request with the same inputs skips the steps: its
kept answer is looked up, the view's permissions and throttles run (on a caller made from
the scope), and the body goes out with the same template. Anything else (no kept answer,
another header, a refusal) and the steps run as before, given the kept answer if there is
one (a throttled request goes to Django, which words the 429). A kept answer the recall can
no longer send plainly (grown past what is compressed on the event loop, say) forgets the
noted request. The headers proxies and tracers make new for every request (PER_REQUEST_HEADERS:
request ids, trace contexts) are left out of the key: no step reads them.

Only what cannot differ is skipped:
- a request with credentials (an Authorization header) or a cookie is never noted: the
  caller would have to be looked up;
- only views whose permissions and throttles read nothing but the method, the caller and
  its address are noted (RECALL_PERMISSIONS, at most one of RECALL_THROTTLES, and APIView's
  own methods that run them): the caller made from the scope carries exactly those;
- a setting change forgets every noted request (tests change settings; a process does not).

Bounded: at most MAX_RECALLS requests of at most MAX_RECALL_BYTES each, counting the path
and query string twice (both keys hold them), each header's objects (HEADER_BYTES) besides
its bytes (so at most ~50 headers), and the route's match (MATCH_BYTES); least recently used
out first. Measured with tracemalloc at the worst cases (longest path, query string, most
headers): about 9 MiB a gateway process.
A server that gives the scope's headers or server as lists (daphne's server) gets no recall.
"""

from __future__ import annotations

import contextlib
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.contrib.auth.models import AnonymousUser
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.urls import ResolverMatch
from rest_framework import throttling
from rest_framework.views import APIView

from apps.accounts import throttles
from apps.accounts.auth import TelemetryAccess
from apps.read.answers import Key
from telemetry_site.compression import choose
from telemetry_site.guard import Scope

if TYPE_CHECKING:
    from telemetry_site.lane import Answer

MAX_RECALLS = 1024
MAX_RECALL_BYTES = 8192
HEADER_BYTES = 128  # a header's tuple and bytes objects, besides its name's and value's bytes
MATCH_BYTES = 1280  # the route's ResolverMatch, when the lane does not keep it for the path
RECALL_PERMISSIONS = frozenset({TelemetryAccess})
# the site's throttles (apps/accounts/throttles.py) and DRF's own: both read only a Caller
RECALL_THROTTLES = frozenset(
    {throttles.ScopedRateThrottle, throttles.AnonRateThrottle, throttles.UserRateThrottle}
    | {throttling.ScopedRateThrottle, throttling.AnonRateThrottle, throttling.UserRateThrottle}
)
# the methods that run a view's permissions and throttles: APIView's own, or not noted
_CHECKS = ("initial", "get_permissions", "check_permissions", "get_throttles", "check_throttles")
PER_REQUEST_HEADERS = frozenset(
    {
        b"x-request-id", b"x-correlation-id", b"traceparent", b"tracestate", b"baggage",
        b"x-amzn-trace-id", b"x-cloud-trace-context", b"uber-trace-id", b"b3",
        b"x-b3-traceid", b"x-b3-spanid", b"x-b3-parentspanid", b"x-b3-sampled",
    }
)  # fmt: skip

RecallKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Recall:
    key: Key  # the kept answer's
    match: ResolverMatch  # the route: the metrics' label
    view_class: type
    secure: bool  # request.is_secure(), from the scheme and headers noted
    coding: str | None  # what the request's Accept-Encoding chose (compression.choose)


class Caller:
    """What DRF's rate throttles, TelemetryAccess and `observe` read of a request: the
    method, the (anonymous) user, REMOTE_ADDR and X-Forwarded-For, and the route."""

    __slots__ = ("META", "headers", "method", "resolver_match", "user")

    def __init__(self, scope: Scope, match: ResolverMatch) -> None:
        self.method = "GET"
        self.user = AnonymousUser()
        client = scope.get("client")
        self.META = {"REMOTE_ADDR": client[0]} if client else {}
        # joined as Django joins a repeated header into META
        forwarded = [v.decode("latin1") for n, v in scope["headers"] if n == b"x-forwarded-for"]
        self.headers = {"x-forwarded-for": ",".join(forwarded)} if forwarded else {}
        self.resolver_match = match


def recall_key(scope: Scope) -> RecallKey | None:
    """Everything the lane's steps read of a GET, besides its caller's address; None for
    another method. Unhashable when the scope's parts are lists (the ASGI spec allows them):
    such a request is never noted."""
    if scope["method"] != "GET":
        return None
    headers = tuple(h for h in scope.get("headers", ()) if h[0] not in PER_REQUEST_HEADERS)
    return (
        scope["scheme"],
        scope.get("server"),
        scope.get("root_path", ""),
        scope["path"],
        scope.get("query_string", b""),
        headers,
    )


class Recalls:
    def __init__(self) -> None:
        self.held: OrderedDict[RecallKey, Recall] = OrderedDict()
        _every_set.add(self)

    def get(self, scope: Scope) -> Recall | None:
        key = recall_key(scope)
        try:
            recall = None if key is None else self.held.get(key)
        except TypeError:  # lists in the scope: never noted
            return None
        if recall is not None:
            self.held.move_to_end(key)
        return recall

    def drop(self, scope: Scope) -> None:
        """Forget a noted request whose kept answer is no longer sent plainly."""
        with contextlib.suppress(TypeError):  # lists in the scope: never noted
            self.held.pop(recall_key(scope), None)

    def note(
        self, request: HttpRequest, match: ResolverMatch, answer: Answer, closes: bool
    ) -> None:
        """Note a request the lane is answering plainly, when the next one alike may skip
        the steps. `closes`: the lane closes plain answers through Django (a
        request_finished receiver it does not know): never skipped."""
        scope = getattr(request, "scope", None)
        if (
            closes
            or scope is None
            or answer.kept_key is None
            or (answer.partial is not None and answer.partial.missing)  # as _plain_answer
            or not answer.session_touched  # authenticated by a token: DRF looked for no session
            or "HTTP_AUTHORIZATION" in request.META
            or not _plain_checks(type(answer.view))
            # as_view(**initkwargs) may set a view's checks on the instance: not noted
            or match.func.view_initkwargs  # type: ignore[attr-defined]
        ):
            return
        key = recall_key(scope)
        if key is None or _size(key) > MAX_RECALL_BYTES:
            return
        try:
            hash(key)
        except TypeError:  # lists in the scope
            return
        self.held[key] = Recall(
            key=answer.kept_key,
            match=match,
            view_class=type(answer.view),
            secure=request.is_secure(),
            coding=choose(request.META.get("HTTP_ACCEPT_ENCODING", "")),
        )
        self.held.move_to_end(key)
        while len(self.held) > MAX_RECALLS:
            self.held.popitem(last=False)

    def forget(self) -> None:
        self.held = OrderedDict()


def _plain_checks(view_class: type) -> bool:
    """Whether the view's checks read no more than a Caller carries. At most one throttle:
    a refusal by a second would leave the first counted twice (here, then by Django)."""
    permissions = getattr(view_class, "permission_classes", None)
    throttles = getattr(view_class, "throttle_classes", None)
    return (
        permissions is not None
        and throttles is not None
        and len(throttles) <= 1
        and all(p in RECALL_PERMISSIONS for p in permissions)
        and all(t in RECALL_THROTTLES for t in throttles)
        and all(getattr(view_class, name, None) is getattr(APIView, name) for name in _CHECKS)
    )


def _size(key: RecallKey) -> int:
    _, _, root, path, query, headers = key
    held = sum(HEADER_BYTES + len(name) + len(value) for name, value in headers)
    return len(root) + 2 * (len(path) + len(query)) + held + MATCH_BYTES


_every_set: weakref.WeakSet[Recalls] = weakref.WeakSet()


def _forget(**kwargs: Any) -> None:
    for recalls in list(_every_set):
        recalls.forget()


setting_changed.connect(_forget)
