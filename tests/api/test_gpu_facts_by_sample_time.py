"""A GPU's facts come from its newest samples, whatever order files are processed in."""

from __future__ import annotations

import json

from django.test import Client

from tests.api.api_support import upload
from tests.helpers import wait_job_done

UUID = "GPU-7b4e0c6a-0000-4000-8000-00000000f00d"
HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,"
    "value,labels_raw"
)


def dcgm_file(day: str, host: str, model: str) -> bytes:
    """One GPU, two metrics, three samples on `day` (long DCGM format)."""
    lines = [HEADER]
    for i in range(3):
        for metric, value in (("DCGM_FI_DEV_GPU_UTIL", 40 + i), ("DCGM_FI_DEV_GPU_TEMP", 50 + i)):
            ts = f"{day}T12:00:{i * 10:02d}Z"
            lines.append(
                f'"{ts}","{metric}","0","nvidia0","{UUID}","{model}","{host}","","","","{value}",""'
            )
    return ("\n".join(lines) + "\n").encode()


def ingest(api, data: bytes, **fields: str) -> None:
    response = upload(api, data, "gpu.csv", **fields)
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])


def gpu(api) -> dict:
    response = api.get(f"/api/v1/gpus/{UUID}")
    assert response.status_code == 200, response.content
    return response.json()


def host_gpus(api, host: str) -> list[str]:
    body = api.get(f"/api/v1/hosts/{host}/gpus").json()
    return [g["uuid"] for g in body.get("results", [])]


def test_an_older_file_never_moves_a_gpu_back(pipeline, api):
    ingest(api, dcgm_file("2025-07-18", "host-a", "NVIDIA H100 80GB HBM3"))
    ingest(api, dcgm_file("2025-07-10", "host-b", "NVIDIA A100-SXM4-40GB"))
    ingest(api, dcgm_file("2025-07-01", "host-c", "NVIDIA A100-SXM4-40GB"), cluster="elsewhere")

    now = gpu(api)
    assert (now["host"], now["cluster"], now["model"]) == (
        "host-a",
        "default",
        "NVIDIA H100 80GB HBM3",
    )
    assert now["first_seen"] == "2025-07-01T12:00:00Z"
    assert now["placements"] == [
        {"cluster": "elsewhere", "host": "host-c", "since": "2025-07-01T12:00:00Z"},
        {"cluster": "default", "host": "host-b", "since": "2025-07-10T12:00:00Z"},
        {"cluster": "default", "host": "host-a", "since": "2025-07-18T12:00:00Z"},
    ]
    assert host_gpus(api, "host-a") == [UUID]
    assert host_gpus(api, "host-b") == []
    clusters = {c["name"] for c in api.get("/api/v1/clusters").json()["results"]}
    assert clusters == {"default"}

    query = "query($u: String!) { gpu(uuid: $u) { host placements { cluster host since } } }"
    payload = json.dumps({"query": query, "variables": {"u": UUID}})
    body = api.post("/graphql", payload, content_type="application/json")
    answer = body.json()["data"]["gpu"]
    assert answer["host"] == "host-a"
    assert [p["host"] for p in answer["placements"]] == ["host-c", "host-b", "host-a"]

    page = Client().get(f"/gpus/{UUID}/").content.decode()
    assert "Placement history" in page and "host-b" in page and "2025-07-10T12:00:00Z" in page

    # a newer file does move it, and the old host no longer lists it
    ingest(api, dcgm_file("2025-07-20", "host-d", "NVIDIA H100 80GB HBM3"))
    assert gpu(api)["host"] == "host-d"
    assert host_gpus(api, "host-a") == [] and host_gpus(api, "host-d") == [UUID]
    assert gpu(api)["placements"][-1] == {
        "cluster": "default",
        "host": "host-d",
        "since": "2025-07-20T12:00:00Z",
    }
