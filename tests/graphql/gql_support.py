"""Helpers for the GraphQL tests: posting queries, and GraphQL answers in REST's shape.

Not a test module; imported as `tests.graphql.gql_support`.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rest_framework.test import APIClient

GPU_FIELDS = """
    uuid gpuIndex device model host cluster driver labels firstSeen lastSeen
    parent placements { cluster host since }
    latest { metricName timestamp value }
"""
SAMPLE_FIELDS = "timestamp metricName value"


def post(client: APIClient, query: str, variables: dict | None = None, **extra: Any):
    body = {"query": query, "variables": variables or {}}
    return client.post("/graphql", json.dumps(body), content_type="application/json", **extra)


def data(client: APIClient, query: str, variables: dict | None = None) -> dict:
    """The `data` of a query that must succeed."""
    response = post(client, query, variables)
    body = response.json()
    assert response.status_code == 200 and "errors" not in body, body
    return body["data"]


def errors(client: APIClient, query: str, variables: dict | None = None) -> tuple[dict, list]:
    """(data or {}, errors) of a query that must fail."""
    body = post(client, query, variables).json()
    assert body.get("errors"), body
    return body.get("data") or {}, body["errors"]


def rest_gpu(node: dict) -> dict:
    """A GraphQL GPU node in the REST API's shape."""
    out = {_snake(k): v for k, v in node.items() if k != "latest"}
    out["latest"] = {
        s["metricName"]: {"timestamp": s["timestamp"], "value": s["value"]} for s in node["latest"]
    }
    return out


def rest_samples(edges: list[dict]) -> list[dict]:
    return [
        {
            "timestamp": e["node"]["timestamp"],
            "metric_name": e["node"]["metricName"],
            "value": e["node"]["value"],
        }
        for e in edges
    ]


def cursor_of(next_url: str | None) -> str | None:
    """The `cursor` parameter of a REST `next` URL."""
    if next_url is None:
        return None
    return parse_qs(urlsplit(next_url).query)["cursor"][0]


def _snake(name: str) -> str:
    return "".join("_" + ch.lower() if ch.isupper() else ch for ch in name)
