"""Issue #8's multi-instance deployment, without containers: 3 etcd members, 2 workers and
2 gateways (uvicorn processes) on loopback, all with the same ETCD_PREFIX.

An upload through one gateway is readable through the other, exactly: each gateway is
stateless, the workers share the queue, and etcd is the only place data lives.
"""

from __future__ import annotations

import requests

from tests.api.api_support import expected_samples, generated
from tests.faults.conftest import Lab, assert_stored_exactly, gateway_get, task_events
from tests.helpers import wait_for
from tools import services


def _upload(gateway: services.Service, data: bytes, name: str) -> dict:
    response = requests.post(
        f"{gateway.url}/api/v1/csv/upload", files={"file": (name, data)}, timeout=60
    )
    assert response.status_code == 202, response.text
    return response.json()


def _chunks_done(gateway: services.Service, job_id: str) -> int:
    return int(gateway_get(gateway)(f"/api/v1/ingest/jobs/{job_id}", {})["chunks_done"])


def test_upload_through_one_gateway_reads_exactly_through_the_other(lab: Lab):
    # Many chunks a job (the gateways chunk, so they get the setting): the broker hands each
    # task to the worker blocked longest, so both workers get some. With one chunk a job, one
    # worker could take both and the last check would fail on luck (it did, in CI).
    chunk_rows = {"INGEST_CHUNK_ROWS": "200"}
    members = lab.start_etcd(members=3)
    lab.start_redis()
    workers = [lab.start_worker(concurrency=1), lab.start_worker(concurrency=1)]
    endpoints = [m.url for m in members]
    gw_a = lab.start_gateway(",".join(endpoints), **chunk_rows)
    gw_b = lab.start_gateway(",".join(reversed(endpoints)), **chunk_rows)

    data_a = generated(hosts=3, gpus_per_host=4, samples=20, seed=91, cluster_prefix="east")
    data_b = generated(hosts=2, gpus_per_host=4, samples=20, seed=92, cluster_prefix="west")
    job_a = _upload(gw_a, data_a, "through-a.csv")
    job_b = _upload(gw_b, data_b, "through-b.csv")
    for job, reader in ((job_a, gw_b), (job_b, gw_a)):
        # The job written by one gateway is followed through the other.
        chunks = job["chunks_expected"]
        wait_for(
            lambda job=job, reader=reader, n=chunks: _chunks_done(reader, job["id"]) == n,
            deadline_s=60,
            what=f"job {job['id']} done, seen through the other gateway",
        )
        status = gateway_get(reader)(f"/api/v1/ingest/jobs/{job['id']}", {})
        assert (status["state"], status["chunks_done"]) == ("done", job["chunks_expected"])

    assert min(job_a["chunks_expected"], job_b["chunks_expected"]) >= 6
    expected = {**expected_samples(data_a), **expected_samples(data_b)}
    assert len(expected) == 20
    # Both gateways see everything, exactly once, whichever received the file.
    for reader in (gw_a, gw_b):
        assert_stored_exactly(lab.root, expected, get_json=gateway_get(reader))
    # Both workers took part.
    for worker in workers:
        assert any(e == "succeeded" for _, e in task_events(worker)), worker.log_tail()
