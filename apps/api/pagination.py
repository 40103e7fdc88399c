"""DRF's limit/offset pages, with `limit` and `offset` checked instead of ignored when bad."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

MAX_LIMIT = 1000
MAX_OFFSET = 1_000_000_000
_INTEGER = re.compile(r"-?[0-9]{1,30}")


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`limit` (1 to MAX_LIMIT, default API_PAGE_SIZE) and `offset` (0 or more).

    DRF's own class answers the default page for `limit=abc` or `offset=-1`; a
    client that made a mistake then gets a page it did not ask for. Here a value
    that is not a whole number in range is a 400 naming the parameter.
    """

    @property
    def max_limit(self) -> int:  # type: ignore[override]
        return max(MAX_LIMIT, settings.REST_FRAMEWORK["PAGE_SIZE"])

    def get_limit(self, request: Request) -> int:
        raw = request.query_params.get(self.limit_query_param)
        if raw is None:
            return self.default_limit
        return _whole(raw, self.limit_query_param, 1, self.max_limit)

    def get_offset(self, request: Request) -> int:
        raw = request.query_params.get(self.offset_query_param)
        return 0 if raw is None else _whole(raw, self.offset_query_param, 0, MAX_OFFSET)

    def paginate_counted(
        self, request: Request, fetch: Callable[[int, int], tuple[int, list[Any]]]
    ) -> Response:
        """A page read by `fetch(limit, offset) -> (count, items)` rather than sliced here."""
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        self.count, page = fetch(self.limit, self.offset)
        return self.get_paginated_response(page)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["schema"].update(minimum=1, maximum=self.max_limit, default=self.default_limit)
        limit["description"] = (
            f"Items per page: 1 to {self.max_limit} (default {self.default_limit}); "
            "400 when outside."
        )
        offset["schema"].update(minimum=0, maximum=MAX_OFFSET, default=0)
        offset["description"] = (
            f"Items to skip before the page starts: 0 to {MAX_OFFSET}; 400 when outside."
        )
        return [limit, offset]


def _whole(raw: str, name: str, low: int, high: int) -> int:
    if not _INTEGER.fullmatch(raw):
        raise ValidationError({name: [f"{raw[:40]!r} is not a whole number"]})
    value = int(raw)
    if not low <= value <= high:
        raise ValidationError({name: [f"must be from {low} to {high}, not {value}"]})
    return value
