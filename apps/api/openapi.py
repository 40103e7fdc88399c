"""The OpenAPI description: who may call what, and every error an operation can answer.

drf-spectacular documents what a view returns on success; the errors come from
shared places (the permission class, the throttles, the exception handler,
etcd being down), so they are added here, the same way for every operation,
rather than repeated on each view.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import permissions

# What store.keys.check_segment accepts in a key segment (uuid, host, cluster, job id):
# 1 to 200 characters, no control character, no '/', not '.' or '..'. A value outside
# it is answered 400 (a path that does not route, 404).
SEGMENT_PATTERN = r"^(?!\.\.?$)[^\x00-\x1f\x7f/]{1,200}$"
SEGMENT = {"type": "string", "pattern": SEGMENT_PATTERN, "maxLength": 200}
# A query filter: the same, or empty (DRF and the views read `?cluster=` as no filter).
FILTER = {"type": "string", "pattern": r"^((?!\.\.?$)[^\x00-\x1f\x7f/]{1,200})?$"}

ERROR = "Error"
ERROR_SCHEMA = {
    "type": "object",
    "description": (
        "`detail` says what went wrong; a request with bad parameters gets instead one "
        "entry per parameter, each a list of messages."
    ),
    "properties": {"detail": {"type": "string", "description": "what went wrong"}},
    "additionalProperties": True,
}
RETRY_AFTER = {
    "Retry-After": {
        "schema": {"type": "integer"},
        "description": "seconds to wait before trying again",
    }
}
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {"schema": {"type": "string"}, "description": "the scheme to use: Bearer"}
}

LOCATION = {
    "Location": {"schema": {"type": "string"}, "description": "the URL to follow the progress"}
}


class TelemetryAutoSchema(AutoSchema):
    """Open operations marked open; 400/401/404/429/503 described where they can happen."""

    def get_auth(self) -> list[dict[str, Any]]:
        auths = super().get_auth()
        if self._open() and {} not in auths:
            auths.append({})  # no credentials needed (a token, when sent, must be valid)
        return auths

    def _open(self) -> bool:
        if self.method in permissions.SAFE_METHODS:
            return not settings.TELEMETRY_READ_AUTH
        return not settings.TELEMETRY_WRITE_AUTH

    def _get_request_body(self, direction: str = "request") -> dict[str, Any] | None:
        body = super()._get_request_body(direction)
        if body is not None and self.method == "POST":
            body["required"] = True  # an upload without a body is refused (415)
        return body

    def _get_response_bodies(self, direction: str = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        for code, (description, headers) in self._errors().items():
            responses.setdefault(code, self._error(description, headers))
        for code, answer in responses.items():
            if code < "300" and not answer.get("description"):
                answer["description"] = _success(answer)
            if code >= "400" and "content" not in answer:  # described on the view, no body
                answer.update(self._error(answer["description"], {}))
        if "202" in responses:  # accepted for later: where to follow it
            responses["202"]["headers"] = LOCATION
        return responses

    def _errors(self) -> dict[str, tuple[str, dict[str, Any]]]:
        errors: dict[str, tuple[str, dict[str, Any]]] = {}
        if self._has_input():
            errors["400"] = ("A parameter or the body is not valid: the answer names it.", {})
        errors["401"] = (
            "The token sent is not valid"
            + (
                "." if self._open() else ", or none was sent: send `Authorization: Bearer <token>`."
            ),
            WWW_AUTHENTICATE,
        )
        if "{" in self.path:
            errors["404"] = ("No such object (the answer names it).", {})
        if getattr(self.view, "throttle_scope", None):
            errors["429"] = ("Too many requests from this client: wait and retry.", RETRY_AFTER)
        errors["503"] = ("etcd or the task broker does not answer: retry later.", RETRY_AFTER)
        return errors

    def _has_input(self) -> bool:
        return bool(self._get_parameters()) or self.method in ("POST", "PUT", "PATCH")

    def _error(self, description: str, headers: dict[str, Any]) -> dict[str, Any]:
        component = ResolvedComponent(
            name=ERROR, type=ResolvedComponent.SCHEMA, object=ERROR, schema=ERROR_SCHEMA
        )
        self.registry.register_on_missing(component)
        answer: dict[str, Any] = {
            "description": description,
            "content": {"application/json": {"schema": component.ref}},
        }
        if headers:
            answer["headers"] = headers
        return answer


def _success(answer: dict[str, Any]) -> str:
    refs = [str(c.get("schema", {}).get("$ref", "")) for c in answer.get("content", {}).values()]
    if any(ref.startswith("#/components/schemas/Paginated") for ref in refs):
        return "A page of results; `next` is the URL of the following page (null on the last)."
    return "Found."
