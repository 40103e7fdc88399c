"""A large upload is answered 202 once received and its header checked; a worker parses it,
the job shows its progress and, at the end, its refused rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.api_support import all_gpus, expected_samples, keys_under, stored_samples, upload
from tests.helpers import wait_job_done

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dcgm_sample.csv"


@pytest.fixture
def large_from(settings):
    """Uploads over 1 kB count as large (the worker's INGEST_SPOOL_DIR is the default too)."""
    settings.INGEST_ASYNC_BYTES = 1000
    return settings


def test_a_large_upload_is_parsed_in_a_worker_and_every_row_stored(pipeline, api, large_from):
    lines = SAMPLE.read_text().splitlines()[:801]
    lines[5] = lines[5].replace('"2025-07-18T20:00:00Z"', '"soon"')
    data = ("\n".join(lines) + "\n").encode()
    response = upload(api, data, "large.csv")
    assert response.status_code == 202, response.content
    accepted = response.json()
    # answered before a row was parsed: the job exists, parsing, with no counts yet
    assert accepted["state"] == "running"
    assert accepted.get("rows_read", 0) == 0
    job = wait_job_done(api, accepted["id"])
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (800, 799, 1)
    assert [e["line"] for e in job["errors"]] == [6]
    assert "soon" in job["errors"][0]["message"]
    kept = "\n".join(lines[:5] + lines[6:]) + "\n"
    expected = expected_samples(kept.encode())
    assert {g["uuid"] for g in all_gpus(api)} == set(expected)
    for uuid, samples in expected.items():
        assert stored_samples(api, uuid) == samples
    assert not list(Path(large_from.INGEST_SPOOL_DIR).glob("*.csv")) or all(
        accepted["id"] not in p.name for p in Path(large_from.INGEST_SPOOL_DIR).glob("*.csv")
    )


def test_a_large_upload_with_a_bad_header_is_refused_at_once(pipeline, api, large_from):
    response = upload(api, b"time,gpu,val\n" + b"1,2,3\n" * 500, "bad.csv")
    assert response.status_code == 400, response.content
    assert "neither accepted format" in response.json()["detail"]
    assert keys_under("jobs") == []


def test_a_large_upload_whose_rows_are_all_bad_ends_failed_with_its_errors(
    pipeline, api, large_from
):
    lines = SAMPLE.read_text().splitlines()[:101]
    bad = [lines[0]] + [line.replace('"2025-07-18T20:00:00Z"', '"soon"') for line in lines[1:]]
    response = upload(api, ("\n".join(bad) + "\n").encode(), "all-bad.csv")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    from tests.helpers import wait_for

    def failed() -> dict | None:
        body = api.get(f"/api/v1/ingest/jobs/{job_id}").json()
        return body if body["state"] == "failed" else None

    job = wait_for(failed, 90, f"job {job_id} failed")
    assert (job["rows_read"], job["rows_rejected"]) == (100, 100)
    assert "no row of the file was accepted" in job["error"]
    assert job["errors"][0]["line"] == 2
