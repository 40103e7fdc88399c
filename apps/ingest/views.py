"""Upload and job views: read the request, call apps.ingest.service, shape the answer."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    OpenApiTypes,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.parsers import BaseParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.api.openapi import SEGMENT
from apps.api.pagination import StrictLimitOffsetPagination
from apps.ingest import service
from apps.ingest.serializers import AcceptedJobSerializer, JobSerializer
from store import default_keys
from store.jobs import count_jobs, list_jobs, load_job

RAW_TYPES = (
    "text/csv",
    "application/csv",
    "text/plain",
    "application/gzip",
    "application/x-gzip",
    "application/octet-stream",
)

UPLOAD_FORM = inline_serializer(
    "UploadForm",
    {
        "file": serializers.FileField(help_text="the CSV file (.csv or .csv.gz)"),
        "cluster": serializers.CharField(required=False, help_text="overrides ?cluster="),
    },
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
        summary="Upload a CSV file",
        description=(
            "A DCGM export (long format) or a wide CSV, optionally gzipped, as the multipart "
            "field `file` or as the raw body. The file is parsed as it arrives and cut into "
            "chunks that workers store; the answer comes once the file is read, with the job "
            "(its counts and first rejected rows) and its URL in `Location`. docs/INGEST.md "
            "gives the formats and validation rules."
        ),
        request={
            "multipart/form-data": UPLOAD_FORM,
            "text/csv": OpenApiTypes.STR,
            "application/gzip": OpenApiTypes.BINARY,
        },
        parameters=[
            OpenApiParameter(
                "cluster",
                SEGMENT,
                description="cluster of the file's GPUs (the multipart field `cluster` "
                "works too); default TELEMETRY_CLUSTER",
            )
        ],
        responses={
            202: OpenApiResponse(
                AcceptedJobSerializer,
                description="Read and queued: follow `url` (or `Location`) for the progress.",
            ),
            400: OpenApiResponse(
                description="No usable row: the header fits neither format (the missing "
                "columns are named), the file is empty, or every row was rejected (the "
                "counts and first errors are included)."
            ),
            413: OpenApiResponse(
                description="Larger than INGEST_MAX_UPLOAD_BYTES (or than the decompressed "
                "or row limits); rows read before the limit are kept."
            ),
            415: OpenApiResponse(
                description="Neither multipart/form-data with a `file` field nor a CSV body."
            ),
            503: OpenApiResponse(description="The task broker or etcd does not answer."),
        },
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

    @extend_schema(
        summary="One ingest job",
        description="Counts, first rejected rows and how many chunks are stored so far.",
        parameters=[
            OpenApiParameter("job_id", SEGMENT, OpenApiParameter.PATH, description="job id")
        ],
        responses=JobSerializer,
    )
    def get(self, request: Request, job_id: str) -> Response:
        return Response(load_job(default_keys(), job_id))


class JobListView(APIView):
    """Ingest jobs, newest first, as DRF pages."""

    throttle_scope = "reads"
    pagination_class = StrictLimitOffsetPagination

    @extend_schema(
        summary="Ingest jobs",
        description="Every kept ingest job (JOB_RETENTION), newest first, in pages.",
        responses=JobSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        return self.pagination_class().paginate_counted(request, _jobs_page)


def _jobs_page(limit: int, offset: int) -> tuple[int, list[dict[str, Any]]]:
    keys = default_keys()
    return count_jobs(keys), list_jobs(keys, limit, offset)
