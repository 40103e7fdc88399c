"""GPUs, hosts and clusters as the read API lists them: filters, pages, counts."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest

from tests.api.api_support import UPLOAD_URL, generated, upload
from tests.helpers import wait_job_done
from tools.generate_sample import MODEL_NAME

A100 = "NVIDIA A100-SXM4-80GB"


@pytest.fixture
def two_clusters(pipeline, api) -> dict[str, list[str]]:
    """alpha: node-01, node-02 with 3 H100 each; beta: node-01..03 with 2 A100 each.

    Host names repeat across clusters on purpose. `alpha` comes by the form field,
    `beta` by the query parameter. Returns the GPU uuids of each cluster.
    """
    alpha = generated(hosts=2, gpus_per_host=3, samples=3, seed=11, cluster_prefix="node")
    beta = generated(hosts=3, gpus_per_host=2, samples=3, seed=12, cluster_prefix="node")
    beta = beta.replace(MODEL_NAME.encode(), A100.encode())
    first = upload(api, alpha, "alpha.csv", cluster="alpha")
    second = api.post(
        f"{UPLOAD_URL}?cluster=beta",
        {"file": _file(beta, "beta.csv")},
        format="multipart",
    )
    for response in (first, second):
        assert response.status_code == 202, response.content
        wait_job_done(api, response.json()["id"])
    assert (first.json()["cluster"], second.json()["cluster"]) == ("alpha", "beta")
    return {"alpha": _uuids(alpha), "beta": _uuids(beta)}


def _file(data: bytes, name: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile(name, data)


def _uuids(data: bytes) -> list[str]:
    import csv
    import io

    return sorted({row["uuid"] for row in csv.DictReader(io.StringIO(data.decode()))})


def page(api, path: str, **params) -> dict:
    response = api.get(path, params)
    assert response.status_code == 200, response.content
    return response.json()


def test_it_lists_every_gpu_sorted_with_its_facts(two_clusters, api):
    body = page(api, "/api/v1/gpus")
    assert body["count"] == 12
    assert (body["next"], body["previous"]) == (None, None)
    keys = [(g["cluster"], g["host"], g["uuid"]) for g in body["results"]]
    assert keys == sorted(keys)
    assert sorted(g["uuid"] for g in body["results"]) == sorted(
        two_clusters["alpha"] + two_clusters["beta"]
    )
    gpu = body["results"][0]
    assert gpu["model"] == MODEL_NAME
    assert gpu["driver"] == "535.129.03"
    assert gpu["first_seen"] == "2025-07-18T20:00:00Z"
    assert gpu["last_seen"] == "2025-07-18T20:00:20Z"
    assert len(gpu["latest"]) == 10
    assert gpu["latest"]["DCGM_FI_DEV_MEM_CLOCK"] == {
        "timestamp": "2025-07-18T20:00:20Z",
        "value": 2619.0,
    }


@pytest.mark.parametrize(
    ("params", "count"),
    [
        ({"cluster": "alpha"}, 6),
        ({"cluster": "beta"}, 6),
        ({"cluster": "gamma"}, 0),
        ({"host": "node-01"}, 5),
        ({"host": "node-03"}, 2),
        ({"cluster": "beta", "host": "node-01"}, 2),
        ({"model": A100}, 6),
        ({"model": MODEL_NAME, "host": "node-02"}, 3),
        ({"cluster": "alpha", "model": A100}, 0),
    ],
)
def test_it_filters_gpus(two_clusters, api, params, count):
    body = page(api, "/api/v1/gpus", **params)
    assert body["count"] == len(body["results"]) == count
    for gpu in body["results"]:
        assert gpu["cluster"] == params.get("cluster", gpu["cluster"])
        assert gpu["host"] == params.get("host", gpu["host"])
        assert gpu["model"] == params.get("model", gpu["model"])


def test_it_pages_gpus_with_limit_and_offset(two_clusters, api):
    everything = page(api, "/api/v1/gpus")["results"]
    first = page(api, "/api/v1/gpus", limit=5)
    assert first["count"] == 12
    assert first["previous"] is None
    assert parse_qs(urlparse(first["next"]).query) == {"limit": ["5"], "offset": ["5"]}
    last = page(api, "/api/v1/gpus", limit=5, offset=10)
    assert len(last["results"]) == 2
    assert last["next"] is None
    assert parse_qs(urlparse(last["previous"]).query) == {"limit": ["5"], "offset": ["5"]}

    walked, url = [], "/api/v1/gpus?limit=5&cluster=beta"
    while url:
        body = api.get(url).json()
        walked += body["results"]
        url = body["next"]
    assert walked == [g for g in everything if g["cluster"] == "beta"]


def test_it_answers_one_gpu_and_404_naming_an_unknown_uuid(two_clusters, api):
    uuid = two_clusters["beta"][0]
    body = page(api, f"/api/v1/gpus/{uuid}")
    assert (body["uuid"], body["cluster"], body["model"]) == (uuid, "beta", A100)
    assert body["labels"]["UUID"] == uuid

    response = api.get("/api/v1/gpus/GPU-does-not-exist")
    assert response.status_code == 404
    assert set(response.json()) == {"detail"}
    assert "GPU-does-not-exist" in response.json()["detail"]
    response = api.get("/api/v1/gpus/GPU-does-not-exist/telemetry")
    assert response.status_code == 404
    assert "GPU-does-not-exist" in response.json()["detail"]


def test_it_lists_hosts_per_cluster_with_gpu_counts(two_clusters, api):
    body = page(api, "/api/v1/hosts")
    assert body["count"] == 5
    assert [(h["cluster"], h["hostname"], h["gpu_count"]) for h in body["results"]] == [
        ("alpha", "node-01", 3),
        ("alpha", "node-02", 3),
        ("beta", "node-01", 2),
        ("beta", "node-02", 2),
        ("beta", "node-03", 2),
    ]
    assert page(api, "/api/v1/hosts", cluster="beta")["count"] == 3
    assert page(api, "/api/v1/hosts", limit=2, offset=4)["results"][0]["hostname"] == "node-03"


def test_it_lists_a_hosts_gpus_in_every_cluster_or_one(two_clusters, api):
    both = page(api, "/api/v1/hosts/node-01/gpus")
    assert both["count"] == 5
    assert {g["cluster"] for g in both["results"]} == {"alpha", "beta"}
    only = page(api, "/api/v1/hosts/node-01/gpus", cluster="alpha")
    assert only["count"] == 3
    assert {g["host"] for g in only["results"]} == {"node-01"}
    unknown = api.get("/api/v1/hosts/node-99/gpus")
    assert unknown.status_code == 404 and "node-99" in unknown.json()["detail"], unknown.content


def test_it_lists_clusters_with_host_and_gpu_counts(two_clusters, api):
    body = page(api, "/api/v1/clusters")
    assert body["count"] == 2
    assert body["results"] == [
        {"name": "alpha", "host_count": 2, "gpu_count": 6},
        {"name": "beta", "host_count": 3, "gpu_count": 6},
    ]


def test_it_refuses_a_bad_cluster_filter(pipeline, api):
    response = api.get("/api/v1/gpus", {"cluster": ".."})
    assert response.status_code == 400
    assert "cluster" in response.json()["detail"]
