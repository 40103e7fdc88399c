"""WebSocket authentication by API token: `Authorization: Bearer <key>` or `?token=<key>`.

Browsers cannot set headers on a WebSocket, hence the query parameter; the
session cookie (AuthMiddlewareStack) works too for a logged-in dashboard user.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware

from apps.accounts.auth import user_for_token

_user_for = database_sync_to_async(user_for_token)


def _token_of(scope: dict[str, Any]) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            kind, _, key = value.decode("latin1").partition(" ")
            if kind.lower() in ("bearer", "token") and key:
                return key.strip()
    query = parse_qs(scope.get("query_string", b"").decode("latin1"))
    return query.get("token", [None])[0]


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from a token when one is given (after the session's user)."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        key = _token_of(scope)
        if key:
            user = await _user_for(key)
            if user is not None:
                scope = dict(scope, user=user)
        return await super().__call__(scope, receive, send)
