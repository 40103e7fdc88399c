"""GraphQL answers equal the REST answers for the same questions, on the real DCGM export.

The file is uploaded through the API and read back both ways: clusters, hosts, GPU lists
with filters and pages, one GPU, a telemetry window, a downsampled series, and paging
through telemetry with `after`/`endCursor`, whose cursors are the REST cursors.
"""

from __future__ import annotations

from typing import Any

from rest_framework.test import APIClient

from tests.api.api_support import generated, upload
from tests.graphql.gql_support import (
    GPU_FIELDS,
    SAMPLE_FIELDS,
    cursor_of,
    data,
    rest_gpu,
    rest_samples,
)
from tests.helpers import wait_job_done

GPUS = f"""
query($cluster: String, $host: String, $model: String, $first: Int, $after: String) {{
  gpus(cluster: $cluster, host: $host, model: $model, first: $first, after: $after) {{
    totalCount
    edges {{ cursor node {{ {GPU_FIELDS} }} }}
    pageInfo {{ hasNextPage endCursor }}
  }}
}}"""

TELEMETRY = f"""
query($uuid: String!, $start: String, $end: String, $metrics: [String!], $order: String,
      $step: String, $agg: String, $first: Int, $after: String) {{
  gpu(uuid: $uuid) {{
    telemetry(start: $start, end: $end, metrics: $metrics, order: $order, step: $step,
              agg: $agg, first: $first, after: $after) {{
      edges {{ cursor node {{ {SAMPLE_FIELDS} }} }}
      pageInfo {{ hasNextPage hasPreviousPage endCursor }}
    }}
  }}
}}"""


def rest(client: APIClient, path: str, **params: Any) -> Any:
    response = client.get(f"/api/v1/{path}", params)
    assert response.status_code == 200, response.content
    return response.json()


def gql_gpus(client: APIClient, **variables: Any) -> dict:
    return data(client, GPUS, {"first": 1000, **variables})["gpus"]


def test_lists_and_one_gpu_equal_rest(real_fleet, api):
    clusters = data(api, "{ clusters { name hostCount gpuCount } }")["clusters"]
    assert [
        {"name": c["name"], "host_count": c["hostCount"], "gpu_count": c["gpuCount"]}
        for c in clusters
    ] == rest(api, "clusters", limit=1000)["results"]
    cluster = clusters[0]["name"]

    for args in ({}, {"cluster": cluster}):
        hosts = data(
            api,
            "query($c: String) { hosts(cluster: $c) { hostname cluster gpuCount } }",
            {"c": args.get("cluster")},
        )["hosts"]
        assert [
            {"hostname": h["hostname"], "cluster": h["cluster"], "gpu_count": h["gpuCount"]}
            for h in hosts
        ] == rest(api, "hosts", limit=1000, **args)["results"]
    assert len(hosts) == 31

    every = rest(api, "gpus", limit=1000)
    assert every["count"] == 247
    host, model = every["results"][40]["host"], every["results"][40]["model"]
    for filters in (
        {},
        {"cluster": cluster},
        {"host": host},
        {"cluster": cluster, "host": host},
        {"model": model},
        {"model": "no such model"},
    ):
        page = gql_gpus(api, **filters)
        expected = rest(api, "gpus", limit=1000, **filters)
        assert page["totalCount"] == expected["count"], filters
        assert [rest_gpu(e["node"]) for e in page["edges"]] == expected["results"], filters
    by_host = rest(api, f"hosts/{host}/gpus", limit=1000)["results"]
    assert [rest_gpu(e["node"]) for e in gql_gpus(api, host=host)["edges"]] == by_host

    for gpu in every["results"][:5] + every["results"][-2:]:
        one = data(
            api,
            f"query($u: String!) {{ gpu(uuid: $u) {{ {GPU_FIELDS} instances }} }}",
            {"u": gpu["uuid"]},
        )["gpu"]
        detail = rest(api, f"gpus/{gpu['uuid']}")
        assert detail.pop("instances") == one.pop("instances") == []  # one GPU's answer only
        assert rest_gpu(one) == detail == gpu


def test_gpu_pages_follow_end_cursor_like_rest_offsets(real_fleet, api):
    seen, after, offset = [], None, 0
    while True:
        page = gql_gpus(api, first=50, after=after)
        expected = rest(api, "gpus", limit=50, offset=offset)
        assert [rest_gpu(e["node"]) for e in page["edges"]] == expected["results"]
        assert page["pageInfo"]["hasNextPage"] == (expected["next"] is not None)
        assert page["pageInfo"]["endCursor"] == page["edges"][-1]["cursor"]
        seen += [e["node"]["uuid"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after, offset = page["pageInfo"]["endCursor"], offset + 50
    assert len(seen) == len(set(seen)) == 247


def test_telemetry_windows_and_series_equal_rest(real_fleet, api):
    gpus = rest(api, "gpus", limit=1000)["results"]
    questions = [
        {},
        {"start": "2025-07-18T20:42:35Z", "end": "2025-07-18T20:42:36Z"},
        {"start": "1752871355", "end": "2025-07-18T20:42:37Z", "order": "desc"},
        {"metrics": ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"]},
        {"step": "2s", "agg": "max"},
        {"step": "1m"},
        {"step": "2s", "agg": "count", "order": "desc", "metrics": ["DCGM_FI_DEV_GPU_UTIL"]},
        {"start": "2025-07-18T21:00:00Z"},  # after the data: empty
    ]
    for gpu in (gpus[0], gpus[123], gpus[-1]):
        for q in questions:
            got = data(api, TELEMETRY, {"uuid": gpu["uuid"], "first": 10_000, **q})
            params = {
                "start_time": q.get("start"),
                "end_time": q.get("end"),
                "metric": ",".join(q.get("metrics", [])) or None,
                "order": q.get("order"),
                "step": q.get("step"),
                "agg": q.get("agg"),
                "limit": 10_000,
            }
            expected = rest(
                api,
                f"gpus/{gpu['uuid']}/telemetry",
                **{k: v for k, v in params.items() if v is not None},
            )
            telemetry = got["gpu"]["telemetry"]
            assert rest_samples(telemetry["edges"]) == expected["results"], q
            assert expected["results"] or q is questions[-1], q  # not equal by being empty
            assert telemetry["pageInfo"]["hasNextPage"] is False
    assert (
        len(
            rest_samples(
                data(api, TELEMETRY, {"uuid": gpus[0]["uuid"]})["gpu"]["telemetry"]["edges"]
            )
        )
        == 10
    )


def test_telemetry_pages_are_the_rest_pages(real_fleet, api):
    uuid = rest(api, "gpus", limit=1)["results"][0]["uuid"]
    for extra in ({}, {"order": "desc"}, {"step": "1s", "agg": "min"}):
        after, cursor, pages = None, None, 0
        while True:
            got = data(api, TELEMETRY, {"uuid": uuid, "first": 3, "after": after, **extra})
            telemetry = got["gpu"]["telemetry"]
            params = {"limit": 3, **extra, **({"cursor": cursor} if cursor else {})}
            expected = rest(api, f"gpus/{uuid}/telemetry", **params)
            assert rest_samples(telemetry["edges"]) == expected["results"]
            info = telemetry["pageInfo"]
            assert info["hasPreviousPage"] == (after is not None)
            assert info["endCursor"] == telemetry["edges"][-1]["cursor"]
            pages += 1
            if expected["next"] is None:
                assert info["hasNextPage"] is False
                break
            assert info["hasNextPage"] is True
            assert info["endCursor"] == cursor_of(expected["next"])  # the REST cursor itself
            after = cursor = info["endCursor"]
        assert pages == 4, extra  # 10 samples, 3 a page


def test_a_longer_series_pages_the_same_way(pipeline, api):
    response = upload(api, generated(hosts=1, gpus_per_host=2, samples=40, seed=5))
    wait_job_done(api, response.json()["id"])
    uuid = rest(api, "gpus")["results"][1]["uuid"]
    collected, after = [], None
    while True:
        got = data(
            api,
            TELEMETRY,
            {
                "uuid": uuid,
                "first": 37,
                "after": after,
                "metrics": ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_GPU_UTIL"],
            },
        )
        telemetry = got["gpu"]["telemetry"]
        collected += rest_samples(telemetry["edges"])
        if not telemetry["pageInfo"]["hasNextPage"]:
            break
        after = telemetry["pageInfo"]["endCursor"]
    whole = rest(
        api,
        f"gpus/{uuid}/telemetry",
        limit=10_000,
        metric="DCGM_FI_DEV_GPU_TEMP,DCGM_FI_DEV_GPU_UTIL",
    )["results"]
    assert collected == whole and len(whole) == 80
