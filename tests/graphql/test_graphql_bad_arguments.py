"""Bad arguments name themselves, and REST refuses the same input (one set of checks)."""

from __future__ import annotations

import pytest

from store.errors import StoreUnavailable
from tests.api.api_support import generated, upload
from tests.graphql.gql_support import errors, post
from tests.helpers import wait_job_done

TELEMETRY = """query($uuid: String!, $start: String, $end: String, $step: String, $agg: String,
                     $order: String, $after: String, $metrics: [String!]) {
  gpu(uuid: $uuid) {
    uuid
    telemetry(start: $start, end: $end, step: $step, agg: $agg, order: $order, after: $after,
              metrics: $metrics, first: 10) { edges { cursor } }
  }
}"""


@pytest.fixture
def uuid(pipeline, api) -> str:
    response = upload(api, generated(hosts=1, gpus_per_host=1, samples=40, seed=3))
    wait_job_done(api, response.json()["id"])
    return api.get("/api/v1/gpus").json()["results"][0]["uuid"]


@pytest.mark.parametrize(
    ("variables", "rest_params", "argument", "message"),
    [
        (
            {"start": "yesterday"},
            {"start_time": "yesterday"},
            "start",
            "start: timestamp 'yesterday' is neither RFC 3339 nor epoch seconds",
        ),
        (
            {"end": "2025-13-01T00:00:00Z"},
            {"end_time": "2025-13-01T00:00:00Z"},
            "end",
            "end: timestamp '2025-13-01T00:00:00Z' is neither RFC 3339 nor epoch seconds",
        ),
        (
            {"start": "2025-07-18T21:00:00Z", "end": "2025-07-18T20:00:00Z"},
            {"start_time": "2025-07-18T21:00:00Z", "end_time": "2025-07-18T20:00:00Z"},
            "start",
            "start: start_time is after end_time (2025-07-18T20:00:00Z)",
        ),
        ({"step": "5x"}, {"step": "5x"}, "step", "step: '5x' is not a duration"),
        ({"step": "500ms"}, {"step": "500ms"}, "step", "step: step must be at least 1s"),
        (
            {"step": "1m", "agg": "median"},
            {"step": "1m", "agg": "median"},
            "agg",
            'agg: "median" is not a valid choice. (one of avg, min, max, last, sum, count)',
        ),
        (
            {"order": "up"},
            {"order": "up"},
            "order",
            'order: "up" is not a valid choice. (one of asc, desc)',
        ),
        (
            {"after": "not-a-cursor"},
            {"cursor": "not-a-cursor"},
            "after",
            "after: cursor is not one this API returned",
        ),
        (
            {"metrics": ["x" * 201]},
            {"metric": "x" * 201},
            "metrics",
            "metrics: Ensure this field has no more than 200 characters.",
        ),
    ],
)
def test_a_bad_telemetry_argument_is_named(uuid, api, variables, rest_params, argument, message):
    data, errs = errors(api, TELEMETRY, {"uuid": uuid, **variables})
    assert data == {"gpu": None}  # telemetry is non-null: the GPU is left out, not half-shown
    (error,) = errs
    assert error["message"].startswith(message), error
    assert error["extensions"] == {"code": "BAD_ARGUMENT", "argument": argument}
    assert error["path"] == ["gpu", "telemetry"]
    rest = api.get(f"/api/v1/gpus/{uuid}/telemetry", rest_params)
    assert rest.status_code == 400, rest.content


def test_too_many_buckets_names_step_and_the_limit(uuid, api, settings):
    settings.TELEMETRY_MAX_BUCKETS = 5
    (error,) = errors(api, TELEMETRY, {"uuid": uuid, "step": "1s"})[1]
    assert error["message"].startswith("step: step 1s over this window gives 391 buckets")
    assert "at most 5" in error["message"]
    assert error["extensions"]["argument"] == "step"


def test_an_unknown_uuid_answers_null_naming_it(uuid, api):
    query = 'query($u: String!) { gpu(uuid: "GPU-nope") { uuid } known: gpu(uuid: $u) { uuid } }'
    response = post(api, query, {"u": uuid})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"gpu": None, "known": {"uuid": uuid}}
    (error,) = body["errors"]
    assert error["message"] == "uuid: no GPU with uuid 'GPU-nope'"
    assert error["extensions"] == {"code": "NOT_FOUND", "argument": "uuid"}
    assert error["path"] == ["gpu"]


@pytest.mark.parametrize(
    ("arguments", "message", "argument"),
    [
        ('after: "garbage"', "after: cursor is not one this API returned", "after"),
        ('cluster: ""', "cluster: This field may not be blank.", "cluster"),
        (
            f'host: "{"h" * 201}"',
            "host: Ensure this field has no more than 200",
            "host",
        ),
    ],
)
def test_a_bad_gpus_argument_is_named(api, kv_reads, arguments, message, argument):
    data, errs = errors(api, f"{{ gpus({arguments}) {{ totalCount }} }}")
    assert data is None or data == {}
    (error,) = errs
    assert error["message"].startswith(message)
    assert error["extensions"] == {"code": "BAD_ARGUMENT", "argument": argument}
    assert kv_reads == []  # checked before reading


def test_an_unusable_key_segment_is_a_bad_argument(pipeline, api):
    (error,) = errors(api, '{ gpus(cluster: "a/b") { totalCount } }')[1]
    assert error["message"] == "cluster 'a/b' contains '/'"
    assert error["extensions"] == {"code": "BAD_ARGUMENT"}
    assert api.get("/api/v1/gpus", {"cluster": "a/b"}).status_code == 400


def test_etcd_down_answers_503_saying_so(api, monkeypatch):
    from apps.read import queries

    def down(*args, **kwargs):
        raise StoreUnavailable("etcd is unavailable: test")

    monkeypatch.setattr(queries, "list_clusters", down)
    response = post(api, "{ clusters { name } }")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    (error,) = response.json()["errors"]
    assert error["message"] == "etcd is unavailable: test"
    assert error["extensions"] == {"code": "UNAVAILABLE"}
