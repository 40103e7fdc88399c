"""MIG instances are records of their own, linked to their GPU both ways.

Fed through the scrape path's facts (apps/ingest/exposition.py): the same
contract CSV rows with GPU_I_ID/GPU_I_PROFILE columns follow.
"""

from __future__ import annotations

import json

from django.test import Client

from apps.ingest import service
from apps.ingest.exposition import gpu_uuid, parse_exposition
from tests.helpers import wait_for, wait_job_done

PARENT = "GPU-5f3c9a10-0000-4000-8000-0000000000a1"
T = 1_752_871_200_000
COMMON = f'gpu="0",UUID="{PARENT}",device="nvidia0",modelName="NVIDIA A100",Hostname="node-1"'
EXPOSITION = "\n".join(
    [
        f"DCGM_FI_DEV_GPU_UTIL{{{COMMON}}} 50 {T}",
        f'DCGM_FI_DEV_GPU_UTIL{{{COMMON},GPU_I_ID="1",GPU_I_PROFILE="1g.10gb"}} 5 {T}',
        f'DCGM_FI_DEV_GPU_UTIL{{{COMMON},GPU_I_ID="2",GPU_I_PROFILE="2g.20gb"}} 7 {T}',
    ]
)
MIG1, MIG2 = gpu_uuid(PARENT, "1"), gpu_uuid(PARENT, "2")


def test_instances_and_their_gpu_name_each_other(pipeline, api):
    exposition = parse_exposition(EXPOSITION, cluster="default", scraped_at=T)
    assert sorted(exposition.facts) == sorted([PARENT, MIG1, MIG2])
    job = service.ingest_rows(
        exposition.rows, lambda row: exposition.facts[row.uuid], source="scrape", fmt="scrape"
    )
    wait_job_done(api, job["id"])

    parent = api.get(f"/api/v1/gpus/{PARENT}").json()
    assert parent["instances"] == [MIG1, MIG2] and parent["parent"] is None
    for uuid, value in ((MIG1, 5.0), (MIG2, 7.0)):
        mig = api.get(f"/api/v1/gpus/{uuid}").json()
        assert mig["parent"] == PARENT
        assert mig["latest"]["DCGM_FI_DEV_GPU_UTIL"]["value"] == value
    listed = {g["uuid"]: g["parent"] for g in api.get("/api/v1/gpus").json()["results"]}
    assert listed == {PARENT: None, MIG1: PARENT, MIG2: PARENT}

    query = "query($u: String!) { gpu(uuid: $u) { instances parent } }"
    body = api.post(
        "/graphql",
        json.dumps({"query": query, "variables": {"u": PARENT}}),
        content_type="application/json",
    ).json()
    assert body["data"]["gpu"] == {"instances": [MIG1, MIG2], "parent": None}

    page = wait_for(lambda: Client().get(f"/gpus/{PARENT}/").content.decode(), what="page")
    assert "MIG instances" in page and MIG1 in page and MIG2 in page
    mig_page = Client().get(f"/gpus/{MIG1}/").content.decode()
    assert "MIG instance of" in mig_page and f"/gpus/{PARENT}/" in mig_page
