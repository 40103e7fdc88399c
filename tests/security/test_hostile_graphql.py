"""GraphQL attacks on a real gateway: fragment chains, float page sizes, aliases, big documents.

Each is answered quickly with a clear error (or, when harmless, an answer), measured by the
gateway's CPU time and RSS. Issue 14, points 2 and 3.
"""

from __future__ import annotations

import json

import requests

from bench.attacks import MiB, float_first_aliases, fragment_chain, graphql


def test_a_fragment_chain_costs_linear_time(hostile_gateway):
    before = hostile_gateway.meter.read()
    out = graphql(hostile_gateway.url, fragment_chain(30), timeout=20)
    after = hostile_gateway.meter.read()
    status, _, text = out.answers[0]
    assert status == 200, text  # 2^30 paths for a naive walk; 30 fragments for ours
    assert json.loads(text)["data"] == {"__typename": "Query"}
    assert after.cpu_s - before.cpu_s < 2.0
    status, _, text = graphql(hostile_gateway.url, fragment_chain(60)).answers[0]
    assert status == 400 and "TOO_MANY_SPREADS" in text


def test_a_float_page_size_is_costed_as_the_integer_it_becomes(hostile_gateway):
    query = "query F($b: Int) { " + " ".join(
        f'g{i}: gpu(uuid: "GPU-x") {{ telemetry(first: $b) {{ edges {{ node {{ value }} }} }} }}'
        for i in range(6)
    )
    before = hostile_gateway.meter.read()
    out = graphql(hostile_gateway.url, query + " }", {"b": 10000.0})
    status, _, text = out.answers[0]
    error = json.loads(text)["errors"][0]
    assert status == 400
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] >= 60_000
    over = graphql(hostile_gateway.url, float_first_aliases(2), {"b": 10000.0}).answers[0]
    assert over[0] == 400 and "GPU_PAGE_MAX" in over[2]
    assert hostile_gateway.meter.read().rss - before.rss < 100 * MiB


def test_aliases_document_size_and_body_size_are_bounded(hostile_gateway):
    aliases = "{ " + " ".join(f"a{i}: __typename" for i in range(31)) + " }"
    status, _, text = graphql(hostile_gateway.url, aliases).answers[0]
    assert status == 400 and "TOO_MANY_ALIASES" in text
    long = "{ __typename " + "#" * 30_000 + "\n }"
    status, _, text = graphql(hostile_gateway.url, long).answers[0]
    assert status == 400 and "DOCUMENT_TOO_LARGE" in text
    body = requests.post(
        f"{hostile_gateway.url}/graphql",
        data=b'{"query": "' + b" " * (3 * MiB) + b'{ __typename }"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert body.status_code == 413 and "DATA_UPLOAD_MAX_MEMORY_SIZE" in body.text


def test_deeply_nested_variables_get_an_error_not_a_crash(hostile_gateway):
    variables = "[" * 100_000 + "]" * 100_000
    body = '{"query": "{ __typename }", "variables": ' + variables + "}"
    response = requests.post(
        f"{hostile_gateway.url}/graphql",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["errors"]
