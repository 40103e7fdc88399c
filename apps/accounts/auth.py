"""Who may read and write: API tokens (DRF tokens, managed in the admin) and sessions.

Writes (uploads) always need an authenticated caller unless TELEMETRY_WRITE_AUTH
is off; reads are open unless TELEMETRY_READ_AUTH is on. The WebSocket and
GraphQL apply the same `may_read` rule.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import permissions
from rest_framework.authentication import TokenAuthentication
from rest_framework.request import Request


class BearerOrTokenAuthentication(TokenAuthentication):
    """`Authorization: Token <key>` (DRF's form) or `Authorization: Bearer <key>`."""

    def authenticate(self, request: Request) -> Any:
        parts = request.headers.get("authorization", "").split()
        if len(parts) != 2 or parts[0].lower() not in ("bearer", "token"):
            return None  # no token given: other authenticators (session) may apply
        return self.authenticate_credentials(parts[1])

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="telemetry"'


def may_read(user: Any) -> bool:
    return not settings.TELEMETRY_READ_AUTH or bool(user and user.is_authenticated)


def may_write(user: Any) -> bool:
    return not settings.TELEMETRY_WRITE_AUTH or bool(user and user.is_authenticated)


class TelemetryAccess(permissions.BasePermission):
    """Reads by `may_read`, writes by `may_write` (401 with a Bearer challenge otherwise)."""

    message = "authentication required: send 'Authorization: Bearer <token>'"

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in permissions.SAFE_METHODS:
            return may_read(request.user)
        return may_write(request.user)


def read_page(view: Any) -> Any:
    """Dashboard pages follow the read rule: with TELEMETRY_READ_AUTH, log in first."""
    from functools import wraps

    from django.contrib.auth.views import redirect_to_login

    @wraps(view)
    def wrapper(request: Any, *args: Any, **kwargs: Any) -> Any:
        if not may_read(request.user):
            return redirect_to_login(request.get_full_path())
        return view(request, *args, **kwargs)

    return wrapper


def user_for_token(key: str) -> Any:
    """The active user owning API token `key`, or None (sync: call from a thread)."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.select_related("user").filter(key=key).first()
    return token.user if token is not None and token.user.is_active else None


def user_for_session(session_key: str) -> Any:
    """The authenticated user of session `session_key`, or None (sync: call from a thread).

    The same check as Django's AuthenticationMiddleware (session hash included),
    without a request: only the session is needed.
    """
    from importlib import import_module
    from types import SimpleNamespace

    from django.contrib.auth import get_user

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
    return user if user.is_authenticated and user.is_active else None
