"""HTTP request counts and latency by route (the URL pattern, never the raw path)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from observability.metrics import HTTP_REQUESTS, HTTP_SECONDS, child


def _route(request: Any) -> str:
    match = getattr(request, "resolver_match", None)
    return f"/{match.route}" if match is not None and match.route else "unmatched"


def observe(request: Any, status: int, started: float) -> None:
    """Count one answered request and its latency (also called by the read lane)."""
    route = _route(request)
    child(HTTP_REQUESTS, request.method, route, str(status)).inc()
    child(HTTP_SECONDS, request.method, route).observe(time.perf_counter() - started)


class DualStackMiddleware:
    """Base of a middleware that runs in Django's sync and async stacks alike: Django picks
    the stack from `is_async`; subclasses define `call` (sync) and `_acall` (async)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        return self._acall(request) if self.is_async else self.call(request)

    def call(self, request: Any) -> Any:
        raise NotImplementedError

    async def _acall(self, request: Any) -> Any:
        raise NotImplementedError


class RequestMetricsMiddleware(DualStackMiddleware):
    def call(self, request: Any) -> Any:
        started = time.perf_counter()
        response = self.get_response(request)
        observe(request, response.status_code, started)
        return response

    async def _acall(self, request: Any) -> Any:
        started = time.perf_counter()
        response = await self.get_response(request)  # type: ignore[misc]
        observe(request, response.status_code, started)
        return response


__all__ = ["DualStackMiddleware", "RequestMetricsMiddleware", "observe"]
