"""A job is read in one etcd request (its document and its chunk counts together), a page
of jobs in two (every job's key without its document, then the shown jobs' documents and
counts together), with the counts each would have read alone; and a page reads the
documents it shows, not every job kept."""

from __future__ import annotations

from rest_framework.test import APIClient

from store import default_keys, kv
from store.jobs import list_jobs, load_job
from tests.api.api_support import generated, upload
from tests.helpers import spy_calls, wait_job_done

READS = (
    "get",
    "get_prefix",
    "get_range",
    "get_many",
    "keys_in_range",
    "count_prefix",
    "count_prefixes",
    "get_counting",
)


def test_a_job_and_a_page_of_jobs_cost_one_and_two_etcd_requests(pipeline, monkeypatch):
    api = APIClient()
    ids = []
    for seed in (1, 2, 3):
        response = upload(api, generated(hosts=1, gpus_per_host=2, samples=3, seed=seed), "a.csv")
        assert response.status_code == 202, response.content
        ids.append(wait_job_done(api, response.json()["id"])["id"])
    keys = default_keys()
    counted = {
        i: (
            kv.count_prefix(keys.chunks_prefix(i)),
            kv.count_prefix(keys.failures_prefix(i)),
        )
        for i in ids
    }
    made = spy_calls(monkeypatch, kv, READS)
    job = load_job(keys, ids[0])
    assert made == ["get_counting"]
    assert (job["chunks_done"], job["chunks_failed"]) == counted[ids[0]]
    assert job["state"] == "done" and job["chunks_done"] == job["chunks_expected"] > 0
    made.clear()
    page = list_jobs(keys, limit=2, offset=0)
    assert made == ["keys_in_range", "get_counting"]
    assert [j["id"] for j in page] == sorted(ids, reverse=True)[:2]
    assert [(j["chunks_done"], j["chunks_failed"]) for j in page] == [
        counted[j["id"]] for j in page
    ]
