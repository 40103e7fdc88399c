"""Wide-format files land under the DCGM metric names, and agree with the long format."""

from __future__ import annotations

import csv
import io
import uuid
from pathlib import Path

from apps.ingest.formats import WIDE_METRICS
from tests.api.api_support import all_gpus, expected_samples, stored_samples, upload
from tests.helpers import wait_job_done
from tools.generate_sample import LONG_HEADER

WIDE_SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "wide_sample.csv"


def long_from_wide(data: bytes) -> bytes:
    """The same samples as a wide file, one metric per row (long layout, no labels)."""
    out = io.StringIO()
    writer = csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n")
    out.write(LONG_HEADER + "\n")
    for row in csv.DictReader(io.StringIO(data.decode())):
        for column, metric in WIDE_METRICS.items():
            writer.writerow(
                [
                    row["timestamp"],
                    metric,
                    row["gpu_id"],
                    row["device"],
                    row["uuid"],
                    row["modelname"],
                    row["hostname"],
                    "",
                    "",
                    "",
                    row[column],
                    "",
                ]
            )
    return out.getvalue().encode()


def everything(api) -> dict[str, tuple[dict, dict]]:
    """Every GPU with its whole series, as the API answers them."""
    return {g["uuid"]: (g, stored_samples(api, g["uuid"])) for g in all_gpus(api)}


def test_it_stores_wide_columns_under_dcgm_names_with_exact_values(pipeline, api):
    data = WIDE_SAMPLE.read_bytes()
    response = upload(api, data, "wide_sample.csv")
    assert response.status_code == 202, response.content
    assert response.json()["format"] == "wide"
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (80, 80, 0)
    assert job["samples"] == 80 * 8

    expected = expected_samples(data)
    gpus = all_gpus(api)
    assert {g["uuid"] for g in gpus} == set(expected)
    for gpu in gpus:
        assert set(gpu["latest"]) == set(WIDE_METRICS.values())
        assert gpu["model"] == "NVIDIA H100 80GB HBM3"
        assert gpu["device"] == f"nvidia{gpu['gpu_index']}"
        assert stored_samples(api, gpu["uuid"]) == expected[gpu["uuid"]]


def test_it_answers_the_same_for_a_long_and_a_wide_file_of_the_same_samples(
    pipeline, api, settings
):
    wide = WIDE_SAMPLE.read_bytes()
    response = upload(api, wide, "wide.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    from_wide = everything(api)

    settings.ETCD_PREFIX = f"/test-long-{uuid.uuid4().hex[:12]}"
    response = upload(api, long_from_wide(wide), "long.csv")
    assert response.status_code == 202, response.content
    assert response.json()["format"] == "dcgm"
    job = wait_job_done(api, response.json()["id"])
    assert job["rows_accepted"] == 80 * 8
    from_long = everything(api)

    assert len(from_wide) == 8
    assert from_long == from_wide
