"""The admin's ingest job list, read from etcd (no table behind it)."""

from __future__ import annotations

import pytest

from store import kv
from store.jobs import list_jobs, save_job
from store.keys import Keys

JOBS = "/admin/gpus/ingestjob/"


def job(job_id: str, **kw: object) -> dict:
    doc = {
        "id": job_id,
        "source": "dcgm.csv",
        "cluster": "prod",
        "format": "long",
        "state": "parsed",
        "created_at": 1_752_871_354_000,
        "rows_accepted": 10,
        "rows_rejected": 0,
        "samples": 10,
        "chunks_expected": 2,
        "error": "",
    }
    return {**doc, **kw}


@pytest.fixture
def jobs(etcd_root: str) -> Keys:
    keys = Keys(etcd_root)
    save_job(keys, job("1752871354000-aaaaaaaa"))
    save_job(keys, job("1752871355000-bbbbbbbb", source="<script>alert(1)</script>"))
    save_job(keys, job("1752871356000-cccccccc", state="failed", error="broker went away"))
    for seq in (0, 1):
        kv.put(keys.chunk("1752871355000-bbbbbbbb", seq), b"{}")
    kv.put(keys.chunk("1752871354000-aaaaaaaa", 0), b"{}")
    kv.put(keys.job("1752871357000-broken00"), b"not json")
    return keys


def test_list_jobs_gives_the_newest_first_with_their_progress(jobs):
    got = list_jobs(jobs, limit=10)
    assert [j["id"] for j in got] == [
        "1752871356000-cccccccc",
        "1752871355000-bbbbbbbb",
        "1752871354000-aaaaaaaa",
    ]
    assert [j["state"] for j in got] == ["failed", "done", "running"]
    assert [j["chunks_done"] for j in got] == [0, 2, 1]
    assert [j["id"] for j in list_jobs(jobs, limit=1)] == ["1752871356000-cccccccc"]


@pytest.mark.django_db
def test_the_admin_shows_jobs_escaped_and_linked_to_the_api(admin_client, jobs):
    response = admin_client.get(JOBS)
    assert response.status_code == 200
    html = response.content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert(1)</script>" not in html
    assert 'href="/api/v1/ingest/jobs/1752871355000-bbbbbbbb"' in html
    assert "broker went away" in html and "2 / 2" in html and "1 / 2" in html
    # the index lists the job page next to the GPUs
    index = admin_client.get("/admin/").content.decode()
    assert JOBS in index and "/admin/gpus/gpu/" in index


@pytest.mark.django_db
def test_the_admin_job_list_says_when_there_is_none(admin_client, etcd_root):
    assert "No ingest job yet." in admin_client.get(JOBS).content.decode()
