"""The real DCGM export through the whole pipeline: upload, worker, etcd, REST."""

from __future__ import annotations

import csv
import gzip
from collections import defaultdict
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests.helpers import wait_job_done
from timeparse.timestamps import parse_timestamp


def upload(client: APIClient, data: bytes, name: str = "file.csv", **extra: str):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(
        "/api/v1/csv/upload", {"file": SimpleUploadedFile(name, data), **extra}, format="multipart"
    )


def expected_samples(path: Path) -> dict[str, dict[tuple[int, str], float]]:
    out: dict[str, dict[tuple[int, str], float]] = defaultdict(dict)
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            out[row["uuid"]][(parse_timestamp(row["timestamp"]), row["metric_name"])] = float(
                row["value"]
            )
    return out


def all_gpus(client: APIClient) -> list[dict]:
    body = client.get("/api/v1/gpus?limit=1000").json()
    assert body["count"] == len(body["results"])
    return body["results"]


def stored_samples(client: APIClient, uuid: str) -> dict[tuple[int, str], float]:
    body = client.get(f"/api/v1/gpus/{uuid}/telemetry").json()
    return {
        (parse_timestamp(r["timestamp"]), r["metric_name"]): r["value"] for r in body["results"]
    }


@pytest.fixture
def client() -> APIClient:
    return APIClient()


def test_real_file_lands_whole_and_reupload_changes_nothing(pipeline, real_csv, client):
    response = upload(client, real_csv.read_bytes(), real_csv.name)
    assert response.status_code == 202, response.content
    assert response["Location"].endswith(f"/api/v1/ingest/jobs/{response.json()['id']}")
    job = wait_job_done(client, response.json()["id"])
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (2470, 2470, 0)

    gpus = all_gpus(client)
    assert len(gpus) == 247
    hosts = client.get("/api/v1/hosts?limit=1000").json()["results"]
    assert len(hosts) == 31
    assert 7 in {h["gpu_count"] for h in hosts}
    expected = expected_samples(real_csv)
    for gpu in gpus:
        assert stored_samples(client, gpu["uuid"]) == expected[gpu["uuid"]]
        assert len(gpu["latest"]) == 10

    again = upload(client, real_csv.read_bytes(), real_csv.name)
    wait_job_done(client, again.json()["id"])
    assert len(all_gpus(client)) == 247
    assert len(client.get("/api/v1/hosts?limit=1000").json()["results"]) == 31
    one = gpus[0]["uuid"]
    assert stored_samples(client, one) == expected[one]


@pytest.mark.parametrize("variant", ["crlf_bom", "gzip"])
def test_real_file_variants_give_the_same_result(pipeline, real_csv, client, variant):
    data = real_csv.read_bytes()
    if variant == "crlf_bom":
        data = b"\xef\xbb\xbf" + data.replace(b"\n", b"\r\n")
    else:
        data = gzip.compress(data)
    response = upload(client, data, "export.csv.gz" if variant == "gzip" else "export.csv")
    assert response.status_code == 202, response.content
    job = wait_job_done(client, response.json()["id"])
    assert (job["rows_accepted"], job["rows_rejected"]) == (2470, 0)
    expected = expected_samples(real_csv)
    gpus = all_gpus(client)
    assert len(gpus) == 247
    for gpu in gpus[:25]:
        assert stored_samples(client, gpu["uuid"]) == expected[gpu["uuid"]]
