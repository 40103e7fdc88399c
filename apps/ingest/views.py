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

from apps.api.lengths import declared_length
from apps.api.openapi import SEGMENT
from apps.api.pagination import StrictLimitOffsetPagination
from apps.ingest import quota, remote_write, service
from apps.ingest.serializers import AcceptedJobSerializer, JobSerializer
from apps.ingest.streaming import now_ms
from store import default_keys
from store.jobs import count_jobs, list_jobs, load_job
from timeparse.timestamps import format_timestamp

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
            several = _several_files(request)
            if several:
                return several
            upload = request.FILES.get("file")
            if upload is None:
                return Response(
                    {"file": ["a multipart upload needs a field named 'file'"]}, status=400
                )
            raw, source = upload, upload.name or "upload"
            cluster = request.data.get("cluster") or request.query_params.get("cluster")
            size = upload.size
        elif request.content_type.split(";")[0].strip() in RAW_TYPES:
            raw, source = request._request, "request body"
            cluster = request.query_params.get("cluster")
            size = _declared_size(request)
        else:
            return Response(
                {
                    "detail": f"unsupported content type {request.content_type!r}: send "
                    "multipart/form-data with a 'file' field, or text/csv"
                },
                status=415,
            )
        return _ingest(request, raw, source, cluster, size)


def _declared_size(request: Request) -> int | None:
    return declared_length(request.META.get("CONTENT_LENGTH"))


def _several_files(request: Request) -> Response | None:
    """400 when the request holds more than one file: each file is one upload (one job).

    Keeping one and dropping the others silently is what this refuses.
    """
    names = [f.name for field in request.FILES for f in request.FILES.getlist(field)]
    if len(names) <= 1:
        return None
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    return Response(
        {
            "file": [
                f"one file per upload: this request holds {len(names)} files ({shown}); "
                "send each in its own request"
            ]
        },
        status=400,
    )


def _too_big(request: Request) -> Response | None:
    length = _declared_size(request) or 0
    if length > settings.INGEST_MAX_UPLOAD_BYTES:
        return Response(
            {
                "detail": "the upload is larger than the limit of "
                f"{settings.INGEST_MAX_UPLOAD_BYTES} bytes"
            },
            status=413,
        )
    return None


def _ingest(
    request: Request, raw: Any, source: str, cluster: str | None, size: int | None
) -> Response:
    # refusals (bad file, too large, broker or etcd down) are answered by apps/read/errors.py;
    # a large upload is answered once received and its header checked (docs/INGEST.md)
    owner = quota.owner_of(request.user)
    if service.is_large(size):
        job = service.accept(raw, source=source, cluster=cluster, size=size or 0, owner=owner)
    else:
        job = service.ingest(raw, source=source, cluster=cluster, owner=owner)
    url = reverse("ingest-job", args=[job["id"]])
    body = {**shown(load_job(default_keys(), job["id"])), "url": request.build_absolute_uri(url)}
    return Response(body, status=202, headers={"Location": url})


TIMES = ("created_at", "updated_at")


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
        return Response(shown(load_job(default_keys(), job_id)))


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
    return count_jobs(keys), [shown(job) for job in list_jobs(keys, limit, offset)]


def shown(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API shows it: its times in RFC 3339, like every time of the API.

    The document keeps epoch milliseconds (retention and staleness compare them).
    """
    times = {k: format_timestamp(v) for k in TIMES if isinstance(v := job.get(k), int)}
    return {**job, **times}


class ProtobufParser(BaseParser):
    """Declares remote write bodies; the view reads them itself (bounded)."""

    media_type = "application/x-protobuf"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        return stream


class RemoteWriteView(APIView):
    """POST /prometheus/api/v1/write: Prometheus remote write 1.0 (docs/PROMETHEUS.md).

    Answers 204 when stored (or ignored by the rule), 400 for a body it cannot
    read, 401 without a token, 429 past the writer's daily quota (INGEST_QUOTA_SAMPLES_PER_DAY),
    503 when the pipeline is down (Prometheus retries).
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
            remote_write.receive(
                body, request.query_params.get("cluster"), now_ms(), quota.owner_of(request.user)
            )
        except remote_write.RemoteWriteError as exc:
            return Response({"detail": str(exc)}, status=400)
        return Response(status=204)
