"""Marks answers that miss etcd shards (docs/API.md, "Partial answers")."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from store import shards

PARTIAL_HEADER = "X-Telemetry-Partial"


class PartialShardsMiddleware:
    """Collects the shards a request's fleet reads left out; names them in a header.

    A fleet read (GPU list, hosts, clusters, GraphQL) answers with the shards that
    answered; this header is how a client knows the answer is partial.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with shards.collecting() as partial:
            response = self.get_response(request)
        return mark_partial(response, partial)


def mark_partial(response: HttpResponse, partial: shards.Partial) -> HttpResponse:
    """Name the shards `partial` collected in the answer's header (none: no header)."""
    if partial.missing:
        response[PARTIAL_HEADER] = ", ".join(sorted(partial.missing))
    return response
