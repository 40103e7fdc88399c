"""Prometheus HTTP API views: read the parameters, call apps.read.prometheus.api, send JSON.

GET and form-encoded POST alike (Grafana posts its queries); the query string
and the body are merged as Prometheus merges them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from apps.read.prometheus import api
from store.errors import StoreUnavailable


def _params(request: HttpRequest) -> api.Params:
    def get(name: str) -> list[str]:
        values = request.GET.getlist(name)
        if request.method == "POST":
            values = values + request.POST.getlist(name)
        return values

    return get


def _respond(status: int, body: dict) -> HttpResponse:
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _endpoint(fn: Callable[..., Any]) -> Callable[..., HttpResponse]:
    @csrf_exempt
    @require_http_methods(["GET", "POST"])
    def view(request: HttpRequest, **kwargs: str) -> HttpResponse:
        params = _params(request)
        try:
            status, body = api.handle(lambda p: fn(p, **kwargs), params)
        except StoreUnavailable as exc:
            status, body = 503, {"status": "error", "errorType": "unavailable", "error": str(exc)}
        return _respond(status, body)

    view.__name__ = fn.__name__
    return view


query = _endpoint(api.query)
query_range = _endpoint(api.query_range)
series = _endpoint(api.series)
labels = _endpoint(api.labels)
label_values = _endpoint(api.label_values)
metadata = _endpoint(api.metadata)
buildinfo = _endpoint(api.buildinfo)
