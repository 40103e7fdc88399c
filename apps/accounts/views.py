"""The admin's login page with its password checks paced (apps/accounts/throttles.py)."""

from __future__ import annotations

import threading
from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from apps.accounts.throttles import login_refusal

# One password check at a time in a process: the ones its rates let through then take at
# most one core, never both of a 2-core machine while the reads wait (bench/abuse.py).
_CHECKING = threading.Lock()


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """`admin.site.login`; a POST (a password to check) first passes the login rates."""
    if request.method != "POST":
        return admin.site.login(request, extra_context)
    refused = login_refusal(request)
    if refused is not None:
        return refused
    with _CHECKING:
        return admin.site.login(request, extra_context)
