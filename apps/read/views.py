"""REST views of the read side: parse the request, call apps.read.queries, shape the answer."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseNotModified,
    StreamingHttpResponse,
)
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiTypes,
    PolymorphicProxySerializer,
    extend_schema,
)
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.openapi import FILTER, SEGMENT
from apps.api.pagination import StrictLimitOffsetPagination
from apps.read import columns as col
from apps.read import queries
from apps.read.render import FastJSONRenderer
from apps.read.serializers import (
    ClusterSerializer,
    GpuListParams,
    GpuSerializer,
    HostSerializer,
    LatestSerializer,
    TelemetryColumnsSerializer,
    TelemetryParams,
    TelemetrySerializer,
    telemetry_query,
)
from store.fleet import Fleet
from timeparse.timestamps import format_timestamp


class _ReadView(APIView):
    throttle_scope = "reads"
    renderer_classes = [FastJSONRenderer, BrowsableAPIRenderer]


class _PagedListView(_ReadView):
    """A fleet list answering DRF's page shape {count, next, previous, results}.

    The answer carries an ETag: send it back in If-None-Match to get 304 Not
    Modified while nothing it shows has changed.
    """

    # The ETag is the fleet's version (store/fleet.py): a 304 costs the etcd read
    # and nothing else, no view built and nothing encoded.

    pagination_class = StrictLimitOffsetPagination

    def paged(self, request: Request, items: list[dict]) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(page)

    def answer(
        self, request: Request, fleet: Fleet, build: Callable[[], list[dict]]
    ) -> Response | HttpResponseNotModified:
        etag = f'W/"{fleet.version}"'
        if etag_matches(request.headers.get("If-None-Match", ""), fleet.version):
            response: Response | HttpResponseNotModified = HttpResponseNotModified()
        else:
            response = self.paged(request, build())
        response["ETag"] = etag
        response["Cache-Control"] = "no-cache"  # may be kept, but ask again every time
        return response


def etag_matches(header: str, version: str) -> bool:
    """If-None-Match holds this version (weak comparison, as RFC 9110 asks for it) or `*`."""
    tags = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return version in tags or "*" in tags


UUID = OpenApiParameter(
    "uuid", SEGMENT, OpenApiParameter.PATH, description="the GPU's uuid (GPU-…)"
)
CLUSTER = OpenApiParameter("cluster", FILTER, description="only this cluster")
HOST = OpenApiParameter("host", FILTER, description="only this host")
MODEL = OpenApiParameter(
    "model",
    {"type": "string", "maxLength": 200, "pattern": "^[^\\x00]*$"},
    description="only this GPU model",
)


class GpuListView(_PagedListView):
    @extend_schema(
        summary="GPUs",
        description="Every GPU with telemetry, sorted by cluster, host and uuid, with its "
        "newest value of each metric.",
        parameters=[GpuListParams, CLUSTER, HOST, MODEL],
        responses=GpuSerializer(many=True),
    )
    def get(self, request: Request) -> Response | HttpResponseNotModified:
        params = GpuListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        return self.gpus(request, params.validated_data)

    def gpus(self, request: Request, filters: dict[str, Any]) -> Response | HttpResponseNotModified:
        """The GPU list of GpuListParams' validated `filters` (also the read lane's)."""
        fleet = queries.fleet(filters.get("cluster"), filters.get("host"))
        return self.answer(request, fleet, lambda: queries.list_gpus(**filters, of=fleet))


class GpuDetailView(_ReadView):
    @extend_schema(
        summary="One GPU",
        description="The GPU's facts (model, host, driver, labels) and newest values.",
        parameters=[UUID],
        responses=GpuSerializer,
    )
    def get(self, request: Request, uuid: str) -> Response:
        return Response(queries.get_gpu(uuid))


class GpuLatestView(_ReadView):
    @extend_schema(
        summary="A GPU's newest values",
        description="The newest value of each metric, with its time, and the last-seen time.",
        parameters=[UUID],
        responses=LatestSerializer,
    )
    def get(self, request: Request, uuid: str) -> Response:
        gpu = queries.get_gpu(uuid)
        return Response({k: gpu[k] for k in ("uuid", "last_seen", "latest")})


class GpuTelemetryView(_ReadView):
    @extend_schema(
        summary="A GPU's samples in a window",
        description="Samples ordered by time (bounds inclusive), in pages that `next` "
        "links; with `step`, one aggregate per metric and bucket; with `format=columns`, "
        "one array per column; with `format=csv` or `wide`, the whole window as CSV. "
        "docs/API.md has the details.",
        parameters=[UUID, TelemetryParams],
        responses={
            (200, "application/json"): PolymorphicProxySerializer(
                component_name="TelemetryAnswer",
                serializers=[TelemetrySerializer, TelemetryColumnsSerializer],
                resource_type_field_name=None,
            ),
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request, uuid: str) -> Response | HttpResponse:
        params = TelemetryParams(data=telemetry_data(dict(request.query_params.lists())))
        params.is_valid(raise_exception=True)
        return telemetry_answer(request._request, uuid, params.validated_data)


def telemetry_answer(
    request: HttpRequest, uuid: str, data: dict[str, Any]
) -> HttpResponse | StreamingHttpResponse:
    """The telemetry answer of TelemetryParams' validated `data` (also the read lane's).

    Raises store errors (NotFound...), which the caller answers.
    """
    query = telemetry_query(uuid, data)
    if data["format"] in ("csv", "wide"):
        return _csv_response(uuid, query, data["format"])
    columns = data["format"] == "columns"
    try:
        page = queries.read_page(query, columns=columns)
    except queries.TooManyPoints as exc:
        return _too_many_points(exc)
    head = {
        "gpu": page.gpu,
        "start_time": _fmt(data.get("start_time")),
        "end_time": _fmt(data.get("end_time")),
        "next": _next_url(request, page.next_cursor),
        "workloads": page.workloads,
    }
    body = (
        col.columns_json(page.samples, head)
        if columns
        else col.rows_json(page.samples, orjson.dumps(head)[:-1] + b',"results":', b"}")
    )
    return HttpResponse(body, content_type="application/json")


def _too_many_points(exc: queries.TooManyPoints) -> HttpResponse:
    # what FastJSONRenderer makes of Response({"step": [...]}, 400), without DRF
    return HttpResponse(
        orjson.dumps({"step": [str(exc)]}), status=400, content_type="application/json"
    )


def _csv_response(
    uuid: str, query: queries.TelemetryQuery, layout: str
) -> HttpResponse | StreamingHttpResponse:
    """The whole window as CSV, streamed a block window at a time: long or wide."""
    try:
        pieces = queries.telemetry_csv(query, wide=layout == "wide")
        first = next(pieces)  # raises NotFound / TooManyPoints before the response starts
    except queries.TooManyPoints as exc:
        return _too_many_points(exc)
    response = StreamingHttpResponse(itertools.chain([first], pieces), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{_safe_name(uuid)}-{layout}.csv"'
    return response


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:100]


def _fmt(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(ms)


def telemetry_data(query: Mapping[str, list[str]]) -> dict[str, Any]:
    """The query string (each name's values, as QueryDict.lists() gives them) as
    TelemetryParams reads it: the last of each name, and every `metric` (repeated or
    comma-separated) in one list."""
    data: dict[str, Any] = {k: v[-1] for k, v in query.items() if k != "metric" and v}
    metrics = [m.strip() for raw in query.get("metric", ()) for m in raw.split(",")]
    if any(metrics):
        data["metric"] = [m for m in metrics if m]
    return data


def _next_url(request: HttpRequest, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    params = request.GET.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class HostListView(_PagedListView):
    @extend_schema(
        summary="Hosts",
        description="Hosts with their GPU count, sorted by cluster and name.",
        parameters=[CLUSTER],
        responses=HostSerializer(many=True),
    )
    def get(self, request: Request) -> Response | HttpResponseNotModified:
        cluster = request.query_params.get("cluster") or None
        fleet = queries.fleet(cluster, latest=False)
        return self.answer(request, fleet, lambda: queries.list_hosts(cluster, of=fleet))


class HostGpuListView(_PagedListView):
    @extend_schema(
        summary="A host's GPUs",
        description="The GPUs of one host (in every cluster that has it, unless `cluster`); "
        "404 when it has none.",
        parameters=[
            OpenApiParameter("hostname", SEGMENT, OpenApiParameter.PATH, description="host name"),
            CLUSTER,
        ],
        responses=GpuSerializer(many=True),
    )
    def get(self, request: Request, hostname: str) -> Response | HttpResponseNotModified:
        cluster = request.query_params.get("cluster") or None
        fleet = queries.fleet(cluster, hostname)
        return self.answer(request, fleet, lambda: queries.host_gpus(hostname, cluster, of=fleet))


class ClusterListView(_PagedListView):
    @extend_schema(
        summary="Clusters",
        description="Clusters with their host and GPU counts.",
        responses=ClusterSerializer(many=True),
    )
    def get(self, request: Request) -> Response | HttpResponseNotModified:
        fleet = queries.fleet(latest=False)
        return self.answer(request, fleet, lambda: queries.list_clusters(of=fleet))
