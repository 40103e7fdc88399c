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
another header, a refusal) and the steps run as before.

Only what cannot differ is skipped:
- a request with credentials (an Authorization header) or a cookie is never noted: the
  caller would have to be looked up;
- only views whose permissions and throttles read nothing but the method, the caller and
  its address are noted (RECALL_PERMISSIONS, RECALL_THROTTLES): the caller made from the
  scope carries exactly those;
- a setting change forgets every noted request (tests change settings; a process does not).

Bounded: at most MAX_RECALLS requests of at most MAX_RECALL_BYTES each (path, query string
and headers), least recently used out first: ~4.5 MiB a gateway process.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.signals import setting_changed
from django.http import HttpRequest
from django.urls import ResolverMatch
from rest_framework.throttling import AnonRateThrottle, ScopedRateThrottle, UserRateThrottle

from apps.accounts.auth import TelemetryAccess
from telemetry_site.compression import choose
from telemetry_site.guard import Scope

MAX_RECALLS = 1024
MAX_RECALL_BYTES = 4096
RECALL_PERMISSIONS = frozenset({TelemetryAccess})
RECALL_THROTTLES = frozenset({ScopedRateThrottle, AnonRateThrottle, UserRateThrottle})

RecallKey = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Recall:
    key: Any  # the kept answer's (apps/read/answers.py Key)
    match: ResolverMatch  # the route: the metrics' label
    view_class: type
    initkwargs: dict[str, Any]
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
    """Everything the lane's steps read of a GET, besides its caller's address."""
    if scope["method"] != "GET":
        return None
    return (
        scope["scheme"],
        scope.get("server"),
        scope.get("root_path", ""),
        scope["path"],
        scope.get("query_string", b""),
        tuple(scope.get("headers", ())),
    )


class Recalls:
    def __init__(self) -> None:
        self.held: OrderedDict[RecallKey, Recall] = OrderedDict()
        _every_set.add(self)

    def get(self, scope: Scope) -> Recall | None:
        key = recall_key(scope)
        recall = None if key is None else self.held.get(key)
        if recall is not None:
            self.held.move_to_end(key)
        return recall

    def note(self, request: HttpRequest, match: ResolverMatch, answer: Any, closes: bool) -> None:
        """Note a request the lane is answering plainly (`answer`, a lane Answer), when the
        next one alike may skip the steps. `closes`: the lane closes plain answers through
        Django (a request_finished receiver it does not know): never skipped."""
        scope = getattr(request, "scope", None)
        view = answer.view
        if (
            closes
            or scope is None
            or answer.kept_key is None
            or answer.partial is not None
            or not answer.session_touched  # a caller with credentials
            or "HTTP_AUTHORIZATION" in request.META
            or not _plain_checks(type(view))
        ):
            return
        key = recall_key(scope)
        if key is None or _size(key) > MAX_RECALL_BYTES:
            return
        self.held[key] = Recall(
            key=answer.kept_key,
            match=match,
            view_class=type(view),
            initkwargs=match.func.view_initkwargs,  # type: ignore[attr-defined]
            secure=request.is_secure(),
            coding=choose(request.META.get("HTTP_ACCEPT_ENCODING", "")),
        )
        self.held.move_to_end(key)
        while len(self.held) > MAX_RECALLS:
            self.held.popitem(last=False)

    def forget(self) -> None:
        self.held = OrderedDict()


def _plain_checks(view_class: type) -> bool:
    permissions = getattr(view_class, "permission_classes", None)
    throttles = getattr(view_class, "throttle_classes", None)
    return (
        permissions is not None
        and throttles is not None
        and all(p in RECALL_PERMISSIONS for p in permissions)
        and all(t in RECALL_THROTTLES for t in throttles)
    )


def _size(key: RecallKey) -> int:
    _, _, root, path, query, headers = key
    return len(root) + len(path) + len(query) + sum(len(n) + len(v) for n, v in headers)


_every_set: weakref.WeakSet[Recalls] = weakref.WeakSet()


def _forget(**kwargs: Any) -> None:
    for recalls in list(_every_set):
        recalls.forget()


setting_changed.connect(_forget)
