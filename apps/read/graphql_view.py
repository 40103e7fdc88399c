"""`/graphql`: graphene-django's view with the query guards, the REST read rule and local GraphiQL.

* Guards (apps.read.graphql_guards): the document's size before it is parsed, then
  validation rules (aliases, fragment spreads, depth, cost on the coerced variables)
  before any resolver reads etcd; refusals are 400 with `errors`. The body itself is
  bounded by the HTTP guard (telemetry_site/guard.py) before it is read.
* Access is the REST API's read rule: DRF's authenticators (token, session), then
  `may_read`, then the `reads` throttle scope. A GraphQL POST is a read: it has no
  mutation. CSRF-exempt like the REST views; a session-authenticated POST still needs
  the CSRF token (DRF's SessionAuthentication checks it), which GraphiQL sends.
* GraphiQL (GET with `Accept: text/html`) loads only files from apps/read/static/graphiql/.
* Store errors are answered as REST answers them (store.errors.answer_for): the code in
  `extensions.code`, and etcd unreachable makes the status 503 with Retry-After.
"""

from __future__ import annotations

from typing import Any

import orjson
from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from graphene_django.views import GraphQLView, HttpError
from graphql import ExecutionResult, GraphQLError
from graphql.validation import specified_rules
from rest_framework import exceptions
from rest_framework.views import APIView

from apps.accounts.auth import may_read
from apps.read.graphql_guards import Limits, check_document, guard_rule, shape_rule
from apps.read.graphql_schema import page_limits
from store.errors import Answer, answer_for


class _ReadRule(APIView):
    """Only to run REST's authentication, permission and throttle steps on a request."""

    throttle_scope = "reads"


# What GraphiQL shows a first-time visitor (no query in the URL, none saved in the
# browser) instead of GraphiQL's generic welcome text: a query of this schema that runs.
EXAMPLE_QUERY = """\
# GPU telemetry over GraphQL: run this with Ctrl-Enter or the run button.
# The Explorer (left) and the Docs list every field; docs/GRAPHQL.md has more.
{
  clusters { name hostCount gpuCount }
  gpus(first: 3) {
    totalCount
    edges {
      node {
        uuid
        host
        cluster
        model
        lastSeen
        latest { metricName value timestamp }
      }
    }
  }
}
"""


class TelemetryGraphQLView(GraphQLView):
    graphiql_template = "graphene/graphiql.html"  # apps/read/templates: local assets
    max_depth = 8
    max_introspection_depth = 16
    max_cost = 50_000  # never below 2 x TELEMETRY_MAX_LIMIT (see limits())

    # The files in apps/read/static/graphiql/ (SOURCE.md): versions and sha256 pinned
    # here, so a graphene-django upgrade cannot point the template at other files.
    react_version = "17.0.2"
    react_sri = "sha256-Ipu/TQ50iCCVZBUsZyNJfxrDk0E2yhaEIz0vqI+kFG8="
    react_dom_sri = "sha256-nbMykgB6tsOFJ7OdVmPpdqMFVk4ZsqWocT6issAPUF0="
    graphiql_version = "2.4.7"
    graphiql_sri = "sha256-n/LKaELupC1H/PU6joz+ybeRJHT2xCdekEt6OYMOOZU="
    graphiql_css_sri = "sha256-OsbM+LQHcnFHi0iH7AUKueZvDcEBoy/z4hJ7jx1cpsM="
    subscriptions_transport_ws_version = "5.13.1"
    subscriptions_transport_ws_sri = "sha256-EZhvg6ANJrBsgLvLAa0uuHNLepLJVCFYS+xlb5U/bqw="
    graphiql_plugin_explorer_version = "0.1.15"
    graphiql_plugin_explorer_sri = "sha256-3hUuhBXdXlfCj6RTeEkJFtEh/kUG+TCDASFpFPLrzvE="
    graphiql_plugin_explorer_css_sri = "sha256-fA0LPUlukMNR6L4SPSeFqDTYav8QdWjQ2nr559Zln1U="

    unavailable: Answer | None = None  # the answer of an error that makes the request fail

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        return csrf_exempt(super().as_view(**initkwargs))

    def limits(self) -> Limits:
        return Limits(
            max_depth=self.max_depth,
            max_introspection_depth=self.max_introspection_depth,
            max_cost=max(self.max_cost, 2 * settings.TELEMETRY_MAX_LIMIT),
            pages=page_limits(),
        )

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = self.refuse_read(request)
        if refused is not None:
            return refused
        response = super().dispatch(request, *args, **kwargs)
        if self.unavailable is not None and self.unavailable.retry_after:
            response["Retry-After"] = str(self.unavailable.retry_after)
        return response

    def refuse_read(self, request: HttpRequest) -> HttpResponse | None:
        """None when REST would let this caller read; else REST's status, GraphQL's shape."""
        rule = _ReadRule()
        rule.args, rule.kwargs, rule.headers = (), {}, {}
        rule.request = drf_request = rule.initialize_request(request)
        try:
            if not may_read(drf_request.user):  # authenticates: a bad token raises
                if self.graphiql and self.request_wants_html(request):
                    return redirect_to_login(request.get_full_path())
                raise exceptions.NotAuthenticated(
                    "authentication required: send 'Authorization: Bearer <token>'"
                )
            rule.check_throttles(drf_request)
        except exceptions.APIException as exc:
            return _refusal(exc, rule.get_authenticate_header(drf_request))
        return None

    def render_graphiql(self, request: HttpRequest, **data: Any) -> HttpResponse:
        return super().render_graphiql(request, example_query=EXAMPLE_QUERY, **data)

    def parse_body(self, request: HttpRequest) -> Any:
        if self.get_content_type(request) == "application/json":
            body = _json(request.body, "the POST body")
            if not isinstance(body, dict):
                raise HttpError(
                    HttpResponseBadRequest("The received data is not a valid JSON query.")
                )
            return body
        return super().parse_body(request)

    @staticmethod
    def get_graphql_params(request: HttpRequest, data: Any) -> Any:
        raw = request.GET.get("variables") or data.get("variables")
        if isinstance(raw, str | bytes) and raw:
            _json(raw, "variables")  # graphene's json.loads below recurses without a bound
        return GraphQLView.get_graphql_params(request, data)

    def execute_graphql_request(
        self,
        request: HttpRequest,
        data: Any,
        query: Any,
        variables: Any,
        operation_name: Any,
        show_graphiql: bool = False,
    ) -> Any:
        limits = self.limits()
        too_large = check_document(query, limits)
        if too_large is not None:
            return ExecutionResult(errors=[too_large])
        given = variables if isinstance(variables, dict) else {}
        self.validation_rules = [*specified_rules, shape_rule(limits), guard_rule(limits, given)]
        result = super().execute_graphql_request(
            request, data, query, variables, operation_name, show_graphiql
        )
        errors = (result.errors or []) if result is not None else []
        answers = [answer_for(getattr(e, "original_error", None) or e) for e in errors]
        self.unavailable = next((a for a in answers if a is not None and a.status == 503), None)
        return result

    def get_response(self, request: HttpRequest, data: Any, show_graphiql: bool = False) -> Any:
        result, status = super().get_response(request, data, show_graphiql)
        return result, status if self.unavailable is None else self.unavailable.status

    @staticmethod
    def format_error(error: Exception) -> dict[str, Any]:
        formatted = GraphQLView.format_error(error)
        original = (
            getattr(error, "original_error", None) if isinstance(error, GraphQLError) else None
        )
        answer = answer_for(original) if original is not None else None
        if answer is not None:
            formatted.setdefault("extensions", {})["code"] = answer.code
        return formatted


MAX_JSON_DEPTH = 32


def _json(raw: str | bytes, what: str) -> Any:
    """JSON `raw`, nested at most MAX_JSON_DEPTH deep; HttpError (400) naming `what` otherwise."""
    try:
        value = orjson.loads(raw)  # refuses nesting past 1024 levels; json.loads would recurse
    except orjson.JSONDecodeError as exc:
        raise HttpError(HttpResponseBadRequest(f"{what} is not valid JSON: {exc}")) from None
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_JSON_DEPTH:
            raise HttpError(
                HttpResponseBadRequest(f"{what} nests JSON deeper than {MAX_JSON_DEPTH} levels")
            )
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
        ]
    return value


def _refusal(exc: exceptions.APIException, challenge: str | None) -> JsonResponse:
    """DRF's status for `exc` (401 only with a challenge to send, as DRF does) as GraphQL errors."""
    status = exc.status_code
    if status == 401 and not challenge:
        status = 403
    body = {"errors": [{"message": str(exc.detail), "extensions": {"code": exc.get_codes()}}]}
    response = JsonResponse(body, status=status)
    if status == 401:
        response["WWW-Authenticate"] = challenge
    wait = getattr(exc, "wait", None)
    if wait:
        response["Retry-After"] = str(int(wait))
    return response
