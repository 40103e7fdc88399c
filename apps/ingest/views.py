"""Upload and job views: read the request, call apps.ingest.service, shape the answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, OpenApiTypes, extend_schema
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.ingest import remote_write, service
from apps.ingest.streaming import now_ms
from store import default_keys
from store.jobs import load_job

RAW_TYPES = (
    "text/csv",
    "application/csv",
    "text/plain",
    "application/gzip",
    "application/x-gzip",
    "application/octet-stream",
)


class RawCsvParser(BaseParser):
    """Declares raw CSV bodies for content negotiation and the schema; the view streams them."""

    media_type = "text/csv"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream


class UploadView(APIView):
    throttle_scope = "uploads"
    parser_classes = [MultiPartParser, RawCsvParser]

    @extend_schema(
        request={"multipart/form-data": OpenApiTypes.OBJECT, "text/csv": OpenApiTypes.STR},
        parameters=[
            OpenApiParameter("cluster", str, description="cluster name; default TELEMETRY_CLUSTER")
        ],
        responses={202: OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        too_big = _too_big(request)
        if too_big:
            return too_big
        if request.content_type.startswith("multipart/form-data"):
            upload = request.FILES.get("file")
            if upload is None:
                return Response(
                    {"file": ["a multipart upload needs a field named 'file'"]}, status=400
                )
            raw, source = upload, upload.name or "upload"
            cluster = request.data.get("cluster") or request.query_params.get("cluster")
        elif request.content_type.split(";")[0].strip() in RAW_TYPES:
            raw, source = request._request, "request body"
            cluster = request.query_params.get("cluster")
        else:
            return Response(
                {
                    "detail": f"unsupported content type {request.content_type!r}: send "
                    "multipart/form-data with a 'file' field, or text/csv"
                },
                status=415,
            )
        return _ingest(request, raw, source, cluster)


def _too_big(request: Request) -> Response | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > settings.INGEST_MAX_UPLOAD_BYTES:
        return Response(
            {
                "detail": "the upload is larger than the limit of "
                f"{settings.INGEST_MAX_UPLOAD_BYTES} bytes"
            },
            status=413,
        )
    return None


def _ingest(request: Request, raw: Any, source: str, cluster: str | None) -> Response:
    # refusals (bad file, too large, broker or etcd down) are answered by apps/read/errors.py
    job = service.ingest(raw, source=source, cluster=cluster)
    url = reverse("ingest-job", args=[job["id"]])
    body = {**load_job(default_keys(), job["id"]), "url": request.build_absolute_uri(url)}
    return Response(body, status=202, headers={"Location": url})


class JobView(APIView):
    throttle_scope = "reads"

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, job_id: str) -> Response:
        return Response(load_job(default_keys(), job_id))


class ProtobufParser(BaseParser):
    """Declares remote write bodies; the view reads them itself (bounded)."""

    media_type = "application/x-protobuf"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream


class RemoteWriteView(APIView):
    """POST /prometheus/api/v1/write: Prometheus remote write 1.0 (docs/PROMETHEUS.md).

    Answers 204 when stored (or ignored by the rule), 400 for a body it cannot
    read, 401 without a token, 503 when the pipeline is down (Prometheus retries).
    Not throttled: the guard bounds each body and Prometheus paces its own sends.
    """

    schema = None
    throttle_classes: list = []
    parser_classes = [ProtobufParser]

    def post(self, request: Request) -> Response:
        limit = settings.REMOTE_WRITE_MAX_BYTES
        body = request._request.read(limit + 1)
        if len(body) > limit:
            return Response(
                {"detail": f"the body is larger than the limit of {limit} bytes"}, status=413
            )
        try:
            remote_write.receive(body, request.query_params.get("cluster"), now_ms())
        except remote_write.RemoteWriteError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(status=204)
