"""Template context about access, for pages that offer writes."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from apps.accounts.auth import may_write


def access(request: HttpRequest) -> dict[str, Any]:
    return {
        "upload_needs_login": not may_write(getattr(request, "user", None)),
        # a shell has no session: its upload needs a token whenever writes need one
        "upload_needs_token": settings.TELEMETRY_WRITE_AUTH,
    }
