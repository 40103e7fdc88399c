"""Prometheus HTTP API views: read the parameters, call apps.read.prometheus.api, send JSON.

GET and form-encoded POST alike (Grafana posts its queries); the query string
and the body are merged as Prometheus merges them. Both methods follow the read
rule (TELEMETRY_READ_AUTH), a POST here being a query, not a write. The views
stay out of the OpenAPI schema: their contract is Prometheus' API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from django.http import HttpResponse
from rest_framework import permissions
from rest_framework.parsers import FormParser
from rest_framework.request import Request
from rest_framework.views import APIView

from apps.accounts.auth import may_read
from apps.read.prometheus import api
from store.errors import StoreUnavailable


class ReadAccess(permissions.BasePermission):
    message = "authentication required: send 'Authorization: Bearer <token>'"

    def has_permission(self, request: Request, view: Any) -> bool:
        return may_read(request.user)


def _params(request: Request) -> api.Params:
    def get(name: str) -> list[str]:
        values = request.query_params.getlist(name)
        if request.method == "POST":
            values = values + request.data.getlist(name)
        return values

    return get


class _PrometheusView(APIView):
    throttle_scope = "reads"
    schema = None
    permission_classes = [ReadAccess]
    parser_classes = [FormParser]
    endpoint: Callable[..., Any]

    def get(self, request: Request, **kwargs: str) -> HttpResponse:
        # Parsed here, outside api.handle's net: Django's refusals (too many fields)
        # reach apps.api.errors, which answers them 400 bad_data.
        request.query_params.getlist("query")
        if request.method == "POST":
            request.data.getlist("query")
        return respond(type(self).endpoint, _params(request), **kwargs)

    post = get


def respond(endpoint: Callable[..., Any], params: api.Params, **kwargs: str) -> HttpResponse:
    """The endpoint's answer to `params`, as JSON (also the read lane's)."""
    try:
        status, body = api.handle(lambda p: endpoint(p, **kwargs), params)
    except StoreUnavailable as exc:
        status, body = api.error("unavailable", str(exc))
        status = 503
    return HttpResponse(orjson.dumps(body), status=status, content_type="application/json")


def _view(fn: Callable[..., Any]) -> Any:
    return type(f"{fn.__name__}_view", (_PrometheusView,), {"endpoint": staticmethod(fn)}).as_view()


query = _view(api.query)
query_range = _view(api.query_range)
series = _view(api.series)
labels = _view(api.labels)
label_values = _view(api.label_values)
metadata = _view(api.metadata)
buildinfo = _view(api.buildinfo)
