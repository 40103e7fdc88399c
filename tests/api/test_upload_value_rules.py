"""Through the HTTP API on the real pipeline: DCGM blanks, MIG instances, identifier columns,
future rows and a gzip bomb, each as docs/INGEST.md says."""

from __future__ import annotations

import gzip

from tests.api.api_support import all_gpus, keys_under, stored_samples, upload
from tests.helpers import wait_job_done
from tests.ingest.ingest_support import (
    HOST,
    LONG_HEADER,
    TS_MS,
    UUID,
    csv_text,
    labels_raw,
    long_csv,
    long_row,
)


def test_dcgm_blank_values_are_counted_in_the_job_and_never_stored(pipeline, api):
    rows = [
        long_row(value="42"),
        long_row(timestamp="2025-07-18T20:42:44Z", value="9223372036854775792"),
        long_row(timestamp="2025-07-18T20:42:54Z", value="2147483632"),
        long_row(timestamp="2025-07-18T20:43:04Z", value="1.40737488355328e14"),
    ]
    response = upload(api, long_csv(rows), "blanks.csv")
    assert response.status_code == 202, response.content
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_read"], job["rows_rejected"], job["blank"], job["samples"]) == (4, 0, 3, 1)
    assert stored_samples(api, UUID) == {(TS_MS, "DCGM_FI_DEV_GPU_UTIL"): 42.0}


def test_mig_instances_at_the_same_time_are_records_of_their_own(pipeline, api):
    rows = [
        long_row(value=str(10 * gi), labels_raw=labels_raw(GPU_I_ID=str(gi), GPU_I_PROFILE="1g"))
        for gi in (1, 2)
    ]
    response = upload(api, long_csv(rows), "mig.csv")
    job = wait_job_done(api, response.json()["id"])
    assert job["rows_accepted"] == 2
    by_uuid = {g["uuid"]: g for g in all_gpus(api)}
    assert set(by_uuid) == {f"MIG-{UUID}-1", f"MIG-{UUID}-2"}
    for gi in (1, 2):
        uuid = f"MIG-{UUID}-{gi}"
        assert stored_samples(api, uuid) == {(TS_MS, "DCGM_FI_DEV_GPU_UTIL"): 10.0 * gi}
        detail = api.get(f"/api/v1/gpus/{uuid}").json()
        assert detail["labels"]["UUID"] == UUID
        assert detail["labels"]["GPU_I_ID"] == str(gi)


def test_identifier_columns_of_a_wide_file_fill_the_record(pipeline, api):
    header = ["timestamp", "uuid", "hostname", "gpu", "serial", "driver_version", "gpu_utilization"]
    row = ["2025-07-18T20:42:34Z", UUID, HOST, "6", "1654922005123", "550.54.15", "77"]
    response = upload(api, csv_text(header, [row], quote_all=False).encode(), "wide.csv")
    wait_job_done(api, response.json()["id"])
    (gpu,) = all_gpus(api)
    assert (gpu["gpu_index"], gpu["driver"]) == (6, "550.54.15")
    assert stored_samples(api, UUID) == {(TS_MS, "DCGM_FI_DEV_GPU_UTIL"): 77.0}


def test_a_row_far_in_the_future_is_refused_with_its_reason(pipeline, api):
    rows = [long_row(value="1"), long_row(timestamp="2100-01-01T00:00:00Z", value="2")]
    response = upload(api, long_csv(rows), "future.csv")
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_accepted"], job["rows_rejected"]) == (1, 1)
    assert job["errors"][0]["line"] == 3
    assert "ahead of this server's clock (INGEST_MAX_FUTURE)" in job["errors"][0]["message"]


def test_a_gzip_of_blank_lines_is_refused_413_without_a_trace(pipeline, api, sent_tasks):
    header = gzip.compress((",".join(LONG_HEADER) + "\n").encode())
    member = gzip.compress(b"\n" * (1 << 20), compresslevel=9)
    response = upload(api, header + member * 2000, "bomb.csv.gz")  # 2 MB, 2 GB inflated
    assert response.status_code == 413, response.content
    assert "INGEST_MAX_GZIP_RATIO" in response.json()["detail"]
    assert keys_under("jobs") == [] and sent_tasks == []
