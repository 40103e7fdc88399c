"""The view serving the OpenAPI description at /api/schema/."""

from __future__ import annotations

from types import SimpleNamespace

from drf_spectacular.views import SpectacularAPIView
from rest_framework.negotiation import DefaultContentNegotiation


class _FormatParameter(DefaultContentNegotiation):
    """`?format=json` or `?format=yaml` picks the schema's renderer (else the Accept header).

    The site turns DRF's `format` parameter off (the telemetry endpoint has its own).
    """

    settings = SimpleNamespace(URL_FORMAT_OVERRIDE="format")


class SchemaView(SpectacularAPIView):
    """/api/schema/: YAML by default; JSON with `?format=json` or `Accept: application/json`."""

    content_negotiation_class = _FormatParameter
