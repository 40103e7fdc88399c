"""The HTTP guard's route table: every view that takes a body is listed, nothing else takes one."""

from __future__ import annotations

import re

from django.urls import URLPattern, URLResolver, get_resolver

from telemetry_site.guard import NO_BODY, policy_for

BODY_HANDLERS = ("post", "put", "patch")


def routes() -> list[tuple[str, object, list[str]]]:
    """(sample path, view class or None, namespaces) of every URL pattern."""
    out: list[tuple[str, object, list[str]]] = []

    def walk(patterns, prefix: str, namespaces: list[str]) -> None:
        for p in patterns:
            if isinstance(p, URLResolver):
                spaces = [*namespaces, p.namespace] if p.namespace else namespaces
                walk(p.url_patterns, prefix + str(p.pattern), spaces)
            elif isinstance(p, URLPattern):
                route = re.sub(r"<(?:\w+:)?(\w+)>", r"x\1", prefix + str(p.pattern))
                if route.startswith("^") or "(?P" in route:
                    continue  # regex routes (admin internals): the admin namespace covers them
                view = getattr(p.callback, "view_class", None) or getattr(p.callback, "cls", None)
                out.append(("/" + route, view, namespaces))

    walk(get_resolver().url_patterns, "", [])
    return out


def test_every_view_that_takes_a_body_has_a_limit():
    checked = 0
    for path, view, namespaces in routes():
        if view is None or "admin" in namespaces:
            continue
        if any(hasattr(view, name) for name in BODY_HANDLERS):
            policy = policy_for("POST", path)
            assert policy.limit > 0, f"{path} ({view.__name__}) takes a body the guard refuses"
            assert policy.limit_name, path
            checked += 1
    assert checked >= 3  # the upload, remote write, GraphQL, Prometheus queries


def test_reads_take_no_body_and_admin_forms_a_small_one(settings):
    assert policy_for("GET", "/api/v1/csv/upload") == NO_BODY
    assert policy_for("POST", "/api/v1/gpus") == NO_BODY
    assert policy_for("POST", "/health") == NO_BODY
    assert policy_for("POST", "/no/such/route") == NO_BODY
    upload = policy_for("POST", "/api/v1/csv/upload")
    assert (upload.limit, upload.access) == (settings.INGEST_MAX_UPLOAD_BYTES, "write")
    admin = policy_for("POST", "/admin/login/")
    assert admin.limit == settings.DATA_UPLOAD_MAX_MEMORY_SIZE and admin.access == ""
    assert policy_for("POST", "/prometheus/api/v1/query").access == "read"
