"""Template context about access, for pages that offer writes."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from apps.accounts.auth import may_write


def access(request: HttpRequest) -> dict[str, Any]:
    return {"upload_needs_login": not may_write(getattr(request, "user", None))}
