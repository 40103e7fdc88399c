"""MIG instances from a hand-written CSV: named as the scrape path names them, linked both ways."""

from __future__ import annotations

from apps.ingest.exposition import gpu_uuid
from tests.api.api_support import upload
from tests.helpers import wait_job_done

PARENT = "GPU-1d2c3b4a-0000-4000-8000-0000000000b2"
HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,GPU_I_ID,GPU_I_PROFILE,"
    "value,labels_raw"
)


def row(instance: str, profile: str, value: int) -> str:
    return (
        f"2025-07-18T20:00:00Z,DCGM_FI_DEV_GPU_UTIL,0,nvidia0,{PARENT},NVIDIA A100,node-1,"
        f"{instance},{profile},{value},"
    )


def test_rows_of_two_instances_and_their_gpu_are_three_records(pipeline, api):
    data = "\n".join([HEADER, row("", "", 50), row("1", "1g.10gb", 5), row("2", "2g.20gb", 7)])
    response = upload(api, (data + "\n").encode(), "mig.csv")
    assert response.status_code == 202, response.content
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_accepted"], job["rows_rejected"]) == (3, 0)

    mig1, mig2 = gpu_uuid(PARENT, "1"), gpu_uuid(PARENT, "2")
    parent = api.get(f"/api/v1/gpus/{PARENT}").json()
    assert parent["instances"] == [mig1, mig2]
    assert parent["latest"]["DCGM_FI_DEV_GPU_UTIL"]["value"] == 50.0
    for uuid, value, profile in ((mig1, 5.0, "1g.10gb"), (mig2, 7.0, "2g.20gb")):
        mig = api.get(f"/api/v1/gpus/{uuid}").json()
        assert mig["parent"] == PARENT and mig["host"] == "node-1"
        assert mig["labels"]["GPU_I_PROFILE"] == profile
        assert mig["latest"]["DCGM_FI_DEV_GPU_UTIL"]["value"] == value
