"""Bad uploads get a clear answer, and leave nothing half-written behind."""

from __future__ import annotations

import csv
import gzip
import io
import random
from pathlib import Path

import pytest

from tests.api.api_support import (
    UPLOAD_URL,
    all_gpus,
    expected_samples,
    generated,
    keys_under,
    stored_samples,
    upload,
)
from tests.helpers import wait_job_done
from tools.generate_sample import LONG_HEADER, write

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "dcgm_sample.csv"


def sample_lines(n: int) -> list[str]:
    """The header and the first `n` data lines of the bundled long sample."""
    return SAMPLE.read_text().splitlines()[: n + 1]


def with_field(line: str, column: str, value: str | None) -> str:
    """`line` of the long sample with one field replaced (None: removed)."""
    fields = next(csv.reader([line]))
    position = LONG_HEADER.split(",").index(column)
    if value is None:
        del fields[position]
    else:
        fields[position] = value
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(fields)
    return out.getvalue()


def assert_nothing_written(sent_tasks: list[str]) -> None:
    assert keys_under("jobs") == []
    assert keys_under("chunks") == []
    assert keys_under("gpus") == []
    assert sent_tasks == []


def test_it_refuses_an_empty_file(pipeline, api, sent_tasks):
    response = upload(api, b"", "empty.csv")
    assert response.status_code == 400, response.content
    assert "empty" in response.json()["detail"]
    assert_nothing_written(sent_tasks)


def test_it_refuses_a_file_with_only_a_header(pipeline, api, sent_tasks):
    response = upload(api, (LONG_HEADER + "\n").encode(), "header.csv")
    assert response.status_code == 400, response.content
    assert "no data rows" in response.json()["detail"]
    assert_nothing_written(sent_tasks)


def test_it_refuses_a_wrong_header_naming_the_missing_columns(pipeline, api, sent_tasks):
    data = b"time,metric,gpu,val\n2025-07-18T20:00:00Z,DCGM_FI_DEV_GPU_UTIL,GPU-1,5\n"
    response = upload(api, data, "wrong.csv")
    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    for column in ("timestamp", "metric_name", "uuid", "hostname", "value"):
        assert column in detail
    assert_nothing_written(sent_tasks)


def test_it_refuses_binary_garbage(pipeline, api, sent_tasks):
    garbage = random.Random(7).randbytes(64 * 1024)
    assert not garbage.startswith(b"\x1f\x8b")
    response = upload(api, garbage, "garbage.bin")
    assert response.status_code == 400, response.content
    assert response.json()["detail"]
    assert_nothing_written(sent_tasks)


def test_it_keeps_the_good_rows_and_reports_bad_ones_by_line(pipeline, api):
    lines = sample_lines(40)
    good = list(lines)
    bad = {
        5: with_field(lines[5], "timestamp", "yesterday"),
        9: with_field(lines[9], "value", "abc"),
        14: with_field(lines[14], "uuid", ""),
        20: with_field(lines[20], "value", "NaN"),
        27: with_field(lines[27], "labels_raw", None),  # a field short
    }
    for index, text in bad.items():
        lines[index] = text
        good[index] = None
    data = ("\n".join(lines) + "\n").encode()
    response = upload(api, data, "some-bad.csv")
    assert response.status_code == 202, response.content
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (40, 35, 5)
    # Line numbers count the header as line 1, like an editor does.
    assert [e["line"] for e in job["errors"]] == [index + 1 for index in sorted(bad)]
    assert all(e["message"] for e in job["errors"])

    kept = "\n".join(line for line in good if line is not None) + "\n"
    expected = expected_samples(kept.encode())
    gpus = all_gpus(api)
    assert {g["uuid"] for g in gpus} == set(expected)
    for gpu in gpus:
        assert stored_samples(api, gpu["uuid"]) == expected[gpu["uuid"]]


def test_it_refuses_a_file_whose_every_row_is_bad_with_counts(pipeline, api, sent_tasks):
    lines = sample_lines(3)
    data = "\n".join(
        [lines[0], *(line.replace('"2025-07-18T20:00:00Z"', '"soon"') for line in lines[1:])]
    )
    response = upload(api, data.encode(), "all-bad.csv")
    assert response.status_code == 400, response.content
    body = response.json()
    assert (body["rows_read"], body["rows_accepted"], body["rows_rejected"]) == (3, 0, 3)
    assert [e["line"] for e in body["errors"]] == [2, 3, 4]
    assert "soon" in body["errors"][0]["message"]
    assert body["detail"]
    assert_nothing_written(sent_tasks)


def test_it_asks_for_the_file_field_in_a_multipart_upload(pipeline, api, sent_tasks):
    response = api.post(UPLOAD_URL, {"other": "x"}, format="multipart")
    assert response.status_code == 400, response.content
    assert "file" in response.json()
    assert_nothing_written(sent_tasks)


def test_it_refuses_an_unsupported_content_type(pipeline, api, sent_tasks):
    response = api.post(UPLOAD_URL, {"rows": []}, format="json")
    assert response.status_code == 415, response.content
    assert "application/json" in response.json()["detail"]
    assert_nothing_written(sent_tasks)


@pytest.mark.parametrize(
    "content_type", ["text/csv", "text/csv; charset=utf-8", "application/gzip"]
)
def test_it_takes_a_raw_body(pipeline, api, settings, content_type):
    # Larger than DATA_UPLOAD_MAX_MEMORY_SIZE: the body is streamed, never read whole.
    data = generated(hosts=4, gpus_per_host=8, samples=20, seed=9)
    assert len(data) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = gzip.compress(data) if content_type == "application/gzip" else data
    response = api.post(f"{UPLOAD_URL}?cluster=raw", body, content_type=content_type)
    assert response.status_code == 202, response.content
    assert (response.json()["cluster"], response.json()["source"]) == ("raw", "request body")
    job = wait_job_done(api, response.json()["id"])
    assert (job["rows_accepted"], job["rows_rejected"]) == (4 * 8 * 20 * 10, 0)
    expected = expected_samples(data)
    gpus = all_gpus(api)
    assert len(gpus) == 32
    for gpu in gpus[::7]:
        assert gpu["cluster"] == "raw"
        assert stored_samples(api, gpu["uuid"]) == expected[gpu["uuid"]]


@pytest.mark.parametrize("cluster", ["../x", "..", "a/b"])
def test_it_refuses_a_bad_cluster_name(pipeline, api, sent_tasks, cluster):
    data = ("\n".join(sample_lines(3)) + "\n").encode()
    response = upload(api, data, "ok.csv", cluster=cluster)
    assert response.status_code == 400, response.content
    assert "cluster" in response.json()["detail"]
    assert_nothing_written(sent_tasks)


def test_it_refuses_a_body_over_the_size_limit(pipeline, api, settings, sent_tasks):
    data = ("\n".join(sample_lines(20)) + "\n").encode()
    settings.INGEST_MAX_UPLOAD_BYTES = len(data) // 2
    response = api.post(UPLOAD_URL, data, content_type="text/csv")
    assert response.status_code == 413, response.content
    assert str(settings.INGEST_MAX_UPLOAD_BYTES) in response.json()["detail"]
    response = upload(api, data, "big.csv")
    assert response.status_code == 413, response.content
    assert_nothing_written(sent_tasks)


def test_it_ingests_a_50_mb_file_whole(pipeline, api, tmp_path):
    path = tmp_path / "big.csv"
    rows = write(path, hosts=20, gpus_per_host=8, samples=75, seed=50)
    assert path.stat().st_size >= 50 * 1000 * 1000
    with open(path, "rb") as fh:
        response = api.post(UPLOAD_URL, {"file": fh}, format="multipart")
    assert response.status_code == 202, response.content
    job = wait_job_done(api, response.json()["id"], deadline_s=180)
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (rows, rows, 0)
    assert job["samples"] == rows == 20 * 8 * 75 * 10
    assert job["chunks_done"] == job["chunks_expected"] > 1

    gpus = all_gpus(api)
    assert len(gpus) == 160
    assert len(api.get("/api/v1/hosts").json()["results"]) == 20
    for gpu in gpus[::40]:
        assert len(stored_samples(api, gpu["uuid"])) == 75 * 10


def test_it_answers_404_for_an_unknown_job_and_400_for_a_bad_id(pipeline, api):
    response = api.get("/api/v1/ingest/jobs/1752868800000-deadbeef")
    assert response.status_code == 404
    assert "1752868800000-deadbeef" in response.json()["detail"]
    assert api.get("/api/v1/ingest/jobs/..").status_code == 400
