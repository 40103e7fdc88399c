"""The admin's login and password change pages, their password checks paced
(apps/accounts/throttles.py)."""

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
    return _paced(admin.site.login, request, extra_context)


def admin_password_change(
    request: HttpRequest, extra_context: dict[str, Any] | None = None
) -> HttpResponse:
    """The admin's password change (staff only, as the admin wraps it). A staff user's POST
    checks the old password (~0.5 s of CPU, as a login) and hashes the new one: it first
    passes the login rates, and the checks run one at a time, as a login's do."""
    user = getattr(request, "user", None)
    staff = user is not None and user.is_active and user.is_staff
    if request.method != "POST" or not staff:  # the admin shows the form or asks for a login
        return _password_change(request, extra_context)
    return _paced(_password_change, request, extra_context)


def _paced(view: Any, request: HttpRequest, extra_context: dict[str, Any] | None) -> Any:
    """`view` once the login rates let a password check through; one check at a time."""
    refused = login_refusal(request)
    if refused is not None:
        return refused
    with _CHECKING:
        return view(request, extra_context)


# what the admin's own URL wraps it in: the staff check, the login redirect, CSRF
_password_change = admin.site.admin_view(admin.site.password_change)
