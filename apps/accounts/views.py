"""The admin's login page with its password checks paced (apps/accounts/throttles.py)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse

from apps.accounts.throttles import login_refusal


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """`admin.site.login`; a POST (a password to check) first passes the login rates."""
    if request.method == "POST":
        refused = login_refusal(request)
        if refused is not None:
            return refused
    return admin.site.login(request, extra_context)
