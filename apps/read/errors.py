"""REST answers for errors (DRF's EXCEPTION_HANDLER, for every API view, ingest's too).

The status, code and Retry-After come from the error itself (store.errors.answer_for);
DRF's own exceptions keep DRF's handling.
"""

from __future__ import annotations

from typing import Any

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from store.errors import answer_for


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    answer = answer_for(exc)
    if answer is None:
        return drf_handler(exc, context)
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
    body = {"detail": str(exc), **getattr(exc, "details", {})}
    return Response(body, status=answer.status, headers=headers)
