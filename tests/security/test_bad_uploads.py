"""Thirty-odd bad uploads, table-driven: each gets a clear 4xx (or 202 with its bad rows
rejected by line), never a 500, and a refused one leaves nothing in etcd or the queue."""

from __future__ import annotations

import gzip
import io
import random

import pytest
from rest_framework.test import APIClient

from tests.api.api_support import generated, keys_under

HEADER = (
    b"timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,"
    b"container,pod,namespace,value,labels_raw\n"
)


def row(
    ts=b"2025-07-18T20:42:34Z",
    metric=b"DCGM_FI_DEV_GPU_UTIL",
    uuid=b"GPU-1",
    host=b"h1",
    value=b"1",
) -> bytes:
    return b'"%s","%s","0","nvidia0","%s","H100","%s","","","","%s",""\n' % (
        ts,
        metric,
        uuid,
        host,
        value,
    )


GOOD = row()
RANDOM = random.Random(9)
# (name, body, content type, expected status, expected words in the answer)
REFUSED = [
    ("empty", b"", "text/csv", 400, "empty"),
    ("only blank lines", b"\n\n\r\n", "text/csv", 400, "empty"),
    ("header only", HEADER, "text/csv", 400, "no data rows"),
    ("wrong header", b"a,b,c\n1,2,3\n", "text/csv", 400, "missing"),
    (
        "semicolons",
        HEADER.replace(b",", b";") + GOOD.replace(b",", b";"),
        "text/csv",
        400,
        "missing",
    ),
    (
        "binary garbage",
        bytes(RANDOM.randrange(256) for _ in range(4096)),
        "text/csv",
        400,
        "header",
    ),
    ("png", b"\x89PNG\r\n\x1a\n" + bytes(100), "application/octet-stream", 400, "header"),
    ("truncated gzip", gzip.compress(HEADER + GOOD * 50)[:20], "application/gzip", 400, "gzip"),
    ("gzip of nothing", gzip.compress(b""), "application/gzip", 400, "empty"),
    ("utf-16", (HEADER + GOOD).decode().encode("utf-16"), "text/csv", 400, "header"),
    ("json", b'{"timestamp": 1}', "text/csv", 400, "missing"),
    ("html", b"<html><script>alert(1)</script></html>", "text/csv", 400, "missing"),
    ("every value bad", HEADER + row(value=b"abc") * 3, "text/csv", 400, "no row"),
    ("every time bad", HEADER + row(ts=b"yesterday") * 3, "text/csv", 400, "no row"),
    ("every uuid missing", HEADER + row(uuid=b"") * 3, "text/csv", 400, "no row"),
    ("uuid with slash", HEADER + row(uuid=b"../../etc") * 2, "text/csv", 400, "no row"),
    ("hostname dot-dot", HEADER + row(host=b"..") * 2, "text/csv", 400, "no row"),
    ("NUL in uuid", HEADER + row(uuid=b"GPU\x00x") * 2, "text/csv", 400, "no row"),
    ("NaN values", HEADER + row(value=b"NaN") * 2, "text/csv", 400, "no row"),
    ("infinite values", HEADER + row(value=b"inf") * 2, "text/csv", 400, "no row"),
    ("year 9999", HEADER + row(ts=b"9999-12-31T00:00:00Z") * 2, "text/csv", 400, "no row"),
    ("before 1970", HEADER + row(ts=b"1960-01-01T00:00:00Z") * 2, "text/csv", 400, "no row"),
    ("huge uuid", HEADER + row(uuid=b"G" * 5000) * 2, "text/csv", 400, "no row"),
    ("xml content type", HEADER + GOOD, "application/xml", 415, "unsupported content type"),
    ("form without file", None, "multipart", 400, "file"),
]


@pytest.mark.parametrize("name,body,ctype,status,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_upload_is_answered_and_leaves_nothing(
    pipeline, sent_tasks, name, body, ctype, status, words
):
    client = APIClient()
    if ctype == "multipart":
        response = client.post("/api/v1/csv/upload", {"cluster": "x"}, format="multipart")
    else:
        response = client.post("/api/v1/csv/upload", body, content_type=ctype)
    assert response.status_code == status, (name, response.content[:300])
    assert words.lower() in response.content.decode(errors="replace").lower(), response.content[
        :300
    ]
    assert keys_under("jobs") == [] and keys_under("gpus") == [] and keys_under("chunks") == []
    assert sent_tasks == []


# Files with some bad rows: accepted in part, each bad row reported with its line.
PARTIAL = [
    ("bad number", row(value=b"12,5")),
    ("extra field", row().replace(b'""\n', b'"","x"\n')),
    ("missing field", row().replace(b',""\n', b"\n")),
    ("unterminated quote", b'"2025-07-18T20:42:34Z,"m"\n'),
    ("line too long", b'"' + b"x" * 300_000 + b'"\n'),
    ("hostile hostname html", row(host=b"<script>alert(1)</script>", value=b"oops")),
    ("only commas", b",,,\n"),
]


@pytest.mark.parametrize("name,bad", PARTIAL, ids=[p[0] for p in PARTIAL])
def test_bad_rows_are_rejected_alone_with_their_line(pipeline, name, bad):
    body = HEADER + GOOD + bad + row(ts=b"2025-07-18T20:42:44Z")
    response = APIClient().post("/api/v1/csv/upload", body, content_type="text/csv")
    assert response.status_code == 202, response.content[:300]
    job = response.json()
    assert job["rows_accepted"] == 2
    assert (
        job["rows_rejected"] >= 1
        and job["rows_read"] == job["rows_accepted"] + job["rows_rejected"]
    )
    assert job["errors"][0]["line"] == 3, job["errors"]


def test_oversized_upload_is_refused_with_413(pipeline, settings):
    settings.INGEST_MAX_UPLOAD_BYTES = 1000
    response = APIClient().post("/api/v1/csv/upload", HEADER + GOOD * 100, content_type="text/csv")
    assert response.status_code == 413 and "limit of 1000 bytes" in response.json()["detail"]


def test_gzip_bomb_is_stopped_at_the_decompressed_cap(pipeline, settings):
    settings.INGEST_MAX_DECOMPRESSED_BYTES = 1_000_000
    settings.INGEST_MAX_GZIP_RATIO = 10_000  # the cap, not the ratio check, is under test
    bomb = gzip.compress(HEADER + GOOD * 50_000)  # ~5 MB of CSV in ~30 kB
    response = APIClient().post("/api/v1/csv/upload", bomb, content_type="application/gzip")
    assert response.status_code == 413 and "decompresses to more than" in response.json()["detail"]


def test_too_many_rows_is_refused_with_413_naming_the_limit(pipeline, settings):
    settings.INGEST_MAX_ROWS = 10
    response = APIClient().post("/api/v1/csv/upload", HEADER + GOOD * 11, content_type="text/csv")
    assert response.status_code == 413 and "INGEST_MAX_ROWS" in response.json()["detail"]


def test_too_many_metrics_per_gpu_rejects_the_extra_rows(pipeline, settings):
    settings.INGEST_MAX_METRICS_PER_GPU = 3
    body = HEADER + b"".join(row(metric=f"M{i}".encode()) for i in range(5))
    job = APIClient().post("/api/v1/csv/upload", body, content_type="text/csv").json()
    assert (job["rows_accepted"], job["rows_rejected"]) == (3, 2)
    assert "INGEST_MAX_METRICS_PER_GPU" in job["errors"][0]["message"]


def test_many_tiny_gzip_members_and_crlf_bom_still_parse(pipeline):
    data = generated(hosts=1, gpus_per_host=2, samples=2)
    body = b"".join(gzip.compress(part) for part in io.BytesIO(data).readlines())
    response = APIClient().post("/api/v1/csv/upload", body, content_type="application/gzip")
    assert response.status_code == 202 and response.json()["rows_accepted"] == 40
