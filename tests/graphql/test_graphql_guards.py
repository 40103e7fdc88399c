"""Depth, cost and page-size guards: refused before any resolver reads etcd, naming the limit."""

from __future__ import annotations

import pytest
from graphql import get_introspection_query, parse, validate
from graphql.validation import specified_rules

from apps.read.graphql_guards import Limits, guard_rule
from apps.read.graphql_schema import schema
from apps.read.graphql_view import TelemetryGraphQLView
from tests.graphql.gql_support import errors, post

EVERY_SAMPLE_OF_EVERY_GPU = """{
  gpus(first: 1000) { edges { node {
    telemetry(first: 10000) { edges { node { timestamp metricName value } } }
  } } }
}"""
ONE_FULL_PAGE = """{ gpu(uuid: "GPU-x") {
  telemetry(first: 10000) { edges { cursor node { value } } pageInfo { endCursor } }
} }"""
DEEPEST_DATA = """{ gpus(first: 10) { edges { node {
  telemetry(first: 100) { edges { node { value } } }
} } } }"""


def guard_messages(query: str, variables: dict | None = None, **limits) -> list[str]:
    """Validation errors of `query` with the view's limits (changed by `limits`)."""
    base = TelemetryGraphQLView().limits()
    rule = guard_rule(Limits(**{**base.__dict__, **limits}), variables)
    return [
        e.message for e in validate(schema.graphql_schema, parse(query), [*specified_rules, rule])
    ]


def test_it_refuses_every_sample_of_every_gpu_before_reading(api, kv_reads):
    response = post(api, EVERY_SAMPLE_OF_EVERY_GPU)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert "could return about 10001000 objects; the cost limit is 50000" in error["message"]
    assert "each `first` multiplies" in error["message"]
    assert error["extensions"] == {"code": "QUERY_TOO_COSTLY", "cost": 10001000, "limit": 50000}
    assert kv_reads == []


def test_one_full_telemetry_page_and_every_gpu_with_latest_are_allowed():
    assert guard_messages(ONE_FULL_PAGE) == []
    defaults = "{ gpus { edges { node { telemetry { edges { node { value } } } } } } }"
    assert guard_messages(defaults)[0].startswith("the query could return about 100100")
    assert guard_messages("{ gpus(first: 1000) { edges { node { latest { value } } } } }") == []
    assert guard_messages(DEEPEST_DATA) == []


def test_aliases_and_fragments_add_up():
    five = " ".join(f'p{i}: gpu(uuid: "g{i}") {{ ...page }}' for i in range(5))
    fragment = "fragment page on GPU { telemetry(first: 10000) { edges { node { value } } } }"
    assert guard_messages(f"{{ {five} }} {fragment}")[0].startswith(
        "the query could return about 50005 objects"
    )
    assert guard_messages(f"{{ {five.split(' p4')[0]} }} {fragment}") == []


def test_variables_count_as_their_values(api):
    query = """query Big($n: Int) { gpus(first: $n) { edges { node {
      telemetry(first: $n) { edges { node { value } } }
    } } } }"""
    assert guard_messages(query, {"n": 1000})[0].startswith("Big could return about 1001000")
    assert guard_messages(query, {"n": 10}) == []
    defaulted = (
        'query($n: Int = 20000) { gpu(uuid: "x") { telemetry(first: $n) { edges { cursor } } } }'
    )
    _, errs = errors(api, defaulted)
    assert errs[0]["message"].startswith("first: 20000 is more than TELEMETRY_MAX_LIMIT (10000)")


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            '{ gpu(uuid: "x") { telemetry(first: 10001) { edges { cursor } } } }',
            "first: 10001 is more than TELEMETRY_MAX_LIMIT (10000)",
        ),
        (
            '{ gpu(uuid: "x") { telemetry(first: 0) { edges { cursor } } } }',
            "first: 0 is less than 1",
        ),
        ("{ gpus(first: 1001) { totalCount } }", "first: 1001 is more than GPU_PAGE_MAX (1000)"),
    ],
)
def test_a_page_size_out_of_range_is_refused_naming_the_limit(api, kv_reads, query, message):
    response = post(api, query)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["message"].startswith(message), error
    assert error["extensions"] == {"code": "BAD_ARGUMENT", "argument": "first"}
    assert kv_reads == []


def test_the_telemetry_limit_follows_the_setting(settings):
    settings.TELEMETRY_MAX_LIMIT = 500
    query = '{ gpu(uuid: "x") { telemetry(first: 501) { edges { cursor } } } }'
    assert guard_messages(query)[0].startswith("first: 501 is more than TELEMETRY_MAX_LIMIT (500)")


def test_depth_is_limited(api):
    assert guard_messages(DEEPEST_DATA, max_depth=6) == [
        "the query nests fields 7 deep at 'value'; at most 6"
    ]
    deep = '{ __type(name: "GPU") { ' + "ofType { " * 20 + "name" + " }" * 20 + " } }"
    response = post(api, deep)
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["message"] == "the query nests fields 22 deep at 'name'; at most 16"
    assert error["extensions"] == {"code": "QUERY_TOO_DEEP", "limit": 16}


def test_graphiql_introspection_passes(api):
    for query in (get_introspection_query(), get_introspection_query(True, True, True, True)):
        response = post(api, query)
        assert response.status_code == 200, response.content
        assert "GPU" in {t["name"] for t in response.json()["data"]["__schema"]["types"]}


def test_broken_documents_get_the_standard_errors_not_a_crash(api):
    cyclic = 'fragment A on GPU { ...A uuid } { gpu(uuid: "x") { ...A } }'
    assert "Cannot spread fragment 'A' within itself." in errors(api, cyclic)[1][0]["message"]
    unknown = '{ gpu(uuid: "x") { ...Nope nosuch } }'
    messages = [e["message"] for e in errors(api, unknown)[1]]
    assert "Unknown fragment 'Nope'." in messages
    assert any("Cannot query field 'nosuch'" in m for m in messages)
