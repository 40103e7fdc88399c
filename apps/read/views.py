"""REST views of the read side: parse the request, call apps.read.queries, shape the answer."""

from __future__ import annotations

import itertools
from typing import Any

from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.openapi import FILTER, SEGMENT
from apps.api.pagination import StrictLimitOffsetPagination
from apps.read import queries
from apps.read.serializers import (
    ClusterSerializer,
    GpuListParams,
    GpuSerializer,
    HostSerializer,
    LatestSerializer,
    TelemetryParams,
    TelemetrySerializer,
)
from timeparse.timestamps import format_timestamp


class _ReadView(APIView):
    throttle_scope = "reads"


class _PagedListView(_ReadView):
    # Answers DRF's page shape {count, next, previous, results}.

    pagination_class = StrictLimitOffsetPagination

    def paged(self, request: Request, items: list[dict]) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(page)


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
    def get(self, request: Request) -> Response:
        params = GpuListParams(data=request.query_params)
        params.is_valid(raise_exception=True)
        return self.paged(request, queries.list_gpus(**params.validated_data))


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
        "links; with `step`, one aggregate per metric and bucket; with `format=csv` or "
        "`wide`, the whole window as CSV. docs/API.md has the details.",
        parameters=[UUID, TelemetryParams],
        responses={
            (200, "application/json"): TelemetrySerializer,
            (200, "text/csv"): OpenApiTypes.STR,
        },
    )
    def get(self, request: Request, uuid: str) -> Response | StreamingHttpResponse:
        params = TelemetryParams(data=_with_metric_list(request))
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if data["format"] != "json":
            return _csv_response(uuid, params.query(uuid), data["format"])
        try:
            page = queries.telemetry_page(params.query(uuid))
        except queries.TooManyPoints as exc:
            return Response({"step": [str(exc)]}, status=400)
        return Response(
            {
                "gpu": page["gpu"],
                "start_time": _fmt(data.get("start_time")),
                "end_time": _fmt(data.get("end_time")),
                "next": _next_url(request, page["next_cursor"]),
                "results": page["results"],
            }
        )


def _csv_response(
    uuid: str, query: queries.TelemetryQuery, layout: str
) -> Response | StreamingHttpResponse:
    """The whole window as CSV, streamed: long (a row per sample) or wide (a row per time)."""
    try:
        lines = queries.telemetry_csv(query, wide=layout == "wide")
        first = next(lines)  # raises NotFound / TooManyPoints before the response starts
    except queries.TooManyPoints as exc:
        return Response({"step": [str(exc)]}, status=400)
    response = StreamingHttpResponse(itertools.chain([first], lines), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="{_safe_name(uuid)}-{layout}.csv"'
    return response


def _safe_name(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:100]


def _fmt(ms: int | None) -> str | None:
    return None if ms is None else format_timestamp(ms)


def _with_metric_list(request: Request) -> dict[str, Any]:
    data: dict[str, Any] = {k: v for k, v in request.query_params.items() if k != "metric"}
    metrics = [m.strip() for raw in request.query_params.getlist("metric") for m in raw.split(",")]
    if any(metrics):
        data["metric"] = [m for m in metrics if m]
    return data


def _next_url(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    params = request.query_params.copy()
    params["cursor"] = cursor
    return request.build_absolute_uri(f"{request.path}?{params.urlencode()}")


class HostListView(_PagedListView):
    @extend_schema(
        summary="Hosts",
        description="Hosts with their GPU count, sorted by cluster and name.",
        parameters=[CLUSTER],
        responses=HostSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paged(request, queries.list_hosts(request.query_params.get("cluster") or None))


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
    def get(self, request: Request, hostname: str) -> Response:
        cluster = request.query_params.get("cluster") or None
        return self.paged(request, queries.host_gpus(hostname, cluster))


class ClusterListView(_PagedListView):
    @extend_schema(
        summary="Clusters",
        description="Clusters with their host and GPU counts.",
        responses=ClusterSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.paged(request, queries.list_clusters())
