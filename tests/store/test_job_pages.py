"""A page of jobs reads the documents it shows, not every job JOB_RETENTION keeps: measured
by the bytes the real etcd sends its clients (its own metric)."""

from __future__ import annotations

import re

import requests

from store import kv
from store.jobs import list_jobs, save_job
from store.keys import Keys

PADDING = 20_000  # bytes of errors a refused upload's document may carry


def sent_bytes(etcd_url: str) -> float:
    text = requests.get(f"http://{etcd_url}/metrics", timeout=10).text
    found = re.findall(r"^etcd_network_client_grpc_sent_bytes_total (\S+)$", text, re.M)
    assert found, "etcd exposes no etcd_network_client_grpc_sent_bytes_total"
    return float(found[0])


def test_a_page_reads_its_own_documents_only(etcd, etcd_root):
    keys = Keys(etcd_root)
    ids = [f"17528713{n:05d}-{n:08x}" for n in range(200)]
    for job_id in ids:
        save_job(keys, {"id": job_id, "state": "parsed", "errors": ["x" * PADDING]})
    kv.put(keys.job(ids[-2] + "z"), b"not json")  # second newest key: skipped, not shown
    before = sent_bytes(etcd.url)
    page = list_jobs(keys, limit=5)
    spent = sent_bytes(etcd.url) - before
    assert [j["id"] for j in page] == ids[::-1][:5]
    assert spent < 10 * PADDING, f"{spent:.0f} bytes read for a page of 5 of 200 jobs"
    assert [j["id"] for j in list_jobs(keys, limit=3, offset=198)] == ids[2::-1]
