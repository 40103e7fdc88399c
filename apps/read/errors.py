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
    answer = store_error_answer(exc)
    if answer is None:
        return drf_handler(exc, context)
    status, headers, body = answer
    return Response(body, status=status, headers=headers or None)


def store_error_answer(exc: Exception) -> tuple[int, dict[str, str], dict[str, Any]] | None:
    """(status, headers, body) of a store error, None for any other (also the read lane's)."""
    answer = answer_for(exc)
    if answer is None:
        return None
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else {}
    return answer.status, headers, {"detail": str(exc), **getattr(exc, "details", {})}
