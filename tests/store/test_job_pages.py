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
    # a page of 5 reads ~5 documents (~0.1 MB); every document would be 4 MB
    assert spent < 25 * PADDING, f"{spent:.0f} bytes read for a page of 5 of 200 jobs"
    assert [j["id"] for j in list_jobs(keys, limit=3, offset=198)] == ids[2::-1]


def test_a_long_page_reads_each_jobs_counts_with_its_document(etcd_root):
    keys = Keys(etcd_root)
    ids = [f"17528714{n:05d}-{n:08x}" for n in range(70)]
    for n, job_id in enumerate(ids):
        save_job(keys, {"id": job_id, "state": "parsed", "chunks_expected": n % 4})
        for seq in range(n % 4):
            kv.put(keys.chunk(job_id, seq), b"{}")
        if n % 5 == 0:
            kv.put(keys.failure(job_id, 0), b'{"error": "x"}')
    page = list_jobs(keys, limit=60, offset=3)  # 60 jobs: 180 reads, over one transaction's 120
    assert [j["id"] for j in page] == ids[::-1][3:63]
    for job in page:
        n = ids.index(job["id"])
        assert (job["chunks_done"], job["chunks_failed"]) == (n % 4, int(n % 5 == 0)), job


def test_batches_of_reads_never_cut_a_key_from_its_counts():
    from store.kv import _whole_groups

    wanted = [(f"k{i}", ["a", "b"]) for i in range(100)]
    batches = _whole_groups(wanted, 120)
    assert [pair for batch in batches for pair in batch] == wanted
    assert all(sum(1 + len(p) for _, p in batch) <= 120 for batch in batches)
    assert [len(b) for b in batches] == [40, 40, 20]
