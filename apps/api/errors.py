"""JSON errors for every path under /api/, whatever produced the error.

DRF views already answer `{"detail": ...}`; what is left is Django's own answers:
the 404 of a path no route matches (HTML, or the debug page under DJANGO_DEBUG),
the 400 of a request past Django's limits (too many multipart fields or files,
DATA_UPLOAD_MAX_MEMORY_SIZE), which it raises while DRF parses the body, and a
500. Browsers' pages outside /api/ keep Django's HTML.

Under /prometheus/api/ the same answers take Prometheus' error shape,
`{"status": "error", "errorType": "bad_data", "error": ...}`, which Grafana and
Prometheus clients read (a 5,000-`match[]` POST, too many query parameters).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.core.exceptions import (
    RequestDataTooBig,
    SuspiciousOperation,
    TooManyFieldsSent,
    TooManyFilesSent,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import Resolver404, resolve
from django.views.decorators.csrf import csrf_exempt

API_PREFIX = "/api/"
PROMETHEUS_PREFIX = "/prometheus/api/"
# Headers an error keeps when its body is replaced: they tell the client what to do.
KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate", "Location")


def is_api(request: HttpRequest) -> bool:
    return request.path.startswith((API_PREFIX, PROMETHEUS_PREFIX))


def _error(request: HttpRequest, status: int, message: str) -> JsonResponse:
    """An error body in the shape the path's clients read."""
    if request.path.startswith(PROMETHEUS_PREFIX):
        kind = "execution" if status >= 500 else "bad_data"
        body = {"status": "error", "errorType": kind, "error": message}
        return JsonResponse(body, status=status)
    return JsonResponse({"detail": message}, status=status)


@csrf_exempt
def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
    """The last /api/ route: a path no endpoint has, for any method."""
    detail = f"no API endpoint at {request.path}"
    other = request.path[:-1] if request.path.endswith("/") else request.path + "/"
    if _is_endpoint(other):
        detail += f" (did you mean {other}?)"
    return JsonResponse({"detail": detail + "; see /api/schema/"}, status=404)


def _is_endpoint(path: str) -> bool:
    try:
        return resolve(path).func is not not_found
    except Resolver404:
        return False


def _limit_answer(request: HttpRequest, exc: Exception) -> JsonResponse | None:
    """Django's refusals of a request body, as JSON (413 for size, 400 for counts)."""
    if not isinstance(exc, SuspiciousOperation):
        return None
    if isinstance(exc, (RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)):
        # As Django does: the body must not be parsed again (by logging, for one).
        request._mark_post_parse_error()  # type: ignore[attr-defined]
    logging.getLogger(f"django.security.{exc.__class__.__name__}").warning(str(exc))
    status = 413 if isinstance(exc, RequestDataTooBig) else 400
    return _error(request, status, str(exc))


def _as_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error answer that is not JSON yet, with its status and guiding headers kept."""
    kind = response.get("Content-Type", "")
    if response.status_code < 400 or kind.startswith(("application/json", "application/problem")):
        return response
    reason = response.reason_phrase or "error"
    answer = _error(request, response.status_code, f"{response.status_code} {reason}")
    for name in KEPT_HEADERS:
        if name in response:
            answer[name] = response[name]
    return answer


class ApiJsonErrors:
    """Middleware: under /api/, exceptions Django would answer in HTML, and HTML errors."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        return _as_json(request, response) if is_api(request) else response

    async def _acall(self, request: HttpRequest) -> Any:
        response = await self.get_response(request)
        return _as_json(request, response) if is_api(request) else response

    def process_exception(self, request: HttpRequest, exc: Exception) -> HttpResponse | None:
        return _limit_answer(request, exc) if is_api(request) else None
