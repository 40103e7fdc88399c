"""Store and ingest errors mapped to HTTP answers, in one place for every API view."""

from __future__ import annotations

from typing import Any

from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from store.errors import Conflict, InvalidSegment, NotFound, StoreUnavailable

_STATUS = {
    StoreUnavailable: status.HTTP_503_SERVICE_UNAVAILABLE,
    NotFound: status.HTTP_404_NOT_FOUND,
    InvalidSegment: status.HTTP_400_BAD_REQUEST,
    Conflict: status.HTTP_409_CONFLICT,
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    for kind, code in _STATUS.items():
        if isinstance(exc, kind):
            headers = {"Retry-After": "5"} if code == 503 else None
            return Response({"detail": str(exc)}, status=code, headers=headers)
    return drf_handler(exc, context)
