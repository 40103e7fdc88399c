"""An etcd member of a 3-member cluster killed (SIGKILL): the leader in the middle of an
ingest, and a follower under a client that is using it.

Workers and this process (the gateway's code: uploads run in-process) know all three
members (ETCD_ENDPOINTS=a,b,c). Each process's client talks to one member at a time,
picked at random, so the test makes the failover certain instead of likely: it finds
which members the workers' pool processes are connected to (their TCP connections, from
/proc), moves the leadership to one of them (etcd's MoveLeader), puts this process's
client on that member too, and kills it while an upload is being parsed and its chunks
stored. So the member killed is the leader, and the gateway and at least one worker
process are using it.

The ingest goes on: chunks whose write met the election are retried by Celery, the
clients move to the survivors, and every row is stored exactly once. The upload in
flight answers 202, or 503 when its last etcd write fell in the election (a write sent
to a follower then waits for the client timeout, see docs/RELIABILITY.md); the client
then uploads the file again, which is safe: the same file writes the same keys.
"""

from __future__ import annotations

import threading
import time

from store import client as etcd_client
from store import kv
from tests.api.api_support import Expected, expected_samples, generated, upload
from tests.faults.conftest import (
    Lab,
    assert_stored_exactly,
    child_pids,
    log_text,
    tcp_peers,
)
from tests.helpers import wait_for
from tools import services


def _connections(lab: Lab) -> dict[int, set[int]]:
    """{pool process: etcd client ports it is connected to}."""
    ports = {m.port for m in lab.etcd}
    pids = [pid for w in lab.workers for pid in child_pids(w.proc.pid)]
    return {pid: set(tcp_peers([pid])) & ports for pid in pids}


def _connected(lab: Lab) -> dict[int, set[int]] | None:
    connections = _connections(lab)
    return connections if any(connections.values()) else None


def _use_member(member: services.Service) -> None:
    """Recreate this process's etcd client until it talks to `member` (picked at random)."""
    for _ in range(100):
        etcd_client.reset()
        kv.status()
        if etcd_client.get().endpoint_in_use.netloc == member.url:
            return
    raise AssertionError(f"this process's client never picked {member.url}")


def test_leader_killed_mid_ingest_ingest_goes_on(lab: Lab):
    from rest_framework.test import APIClient

    lab.settings.INGEST_CHUNK_ROWS = 200
    lab.settings.INGEST_BUFFER_ROWS = 2000  # chunks leave while the file is still parsed
    members = lab.start_etcd(members=3)
    lab.start_redis()
    for _ in range(2):
        lab.start_worker(concurrency=2)

    # A first upload makes the pool processes open their etcd connections.
    warm_data = generated(hosts=2, gpus_per_host=4, samples=20, seed=70)
    warm = lab.upload(warm_data, "warm-up.csv")
    lab.wait_chunks_done(warm["id"], warm["chunks_expected"], deadline_s=30)
    before = wait_for(
        lambda: _connected(lab), deadline_s=10, what="pool processes connected to etcd"
    )
    in_use = [m for m in members if any(m.port in ports for ports in before.values())]
    target = max(in_use, key=lambda m: sum(m.port in p for p in before.values()))
    services.etcd_move_leader(members, target)
    assert services.etcd_leader(members) is target
    on_target = [pid for pid, ports in before.items() if target.port in ports]
    _use_member(target)

    data = generated(hosts=4, gpus_per_host=8, samples=100, seed=71)
    answer: dict = {}

    def upload_in_flight() -> None:
        response = upload(APIClient(), data, "during-election.csv")
        answer.update(status=response.status_code, body=response.json())

    uploading = threading.Thread(target=upload_in_flight)
    uploading.start()
    try:
        wait_for(
            lambda: kv.count_prefix(f"{lab.root}/chunks/") >= warm["chunks_expected"] + 5,
            deadline_s=30,
            what="the upload's first chunks stored",
        )
        target.kill()
        killed_at = time.monotonic()
        assert uploading.is_alive(), "the upload was over before the leader died"
    finally:
        uploading.join(timeout=120)
    survivors = [m for m in members if m is not target]
    new_leader = services.etcd_leader(survivors)

    if answer["status"] == 503:  # what an ingest client does: upload the file again
        assert "etcd is unavailable" in answer["body"]["detail"], answer
        again = upload(APIClient(), data, "during-election.csv")
        answer.update(status=again.status_code, body=again.json(), first=503)
    assert answer["status"] == 202, answer
    job = answer["body"]
    chunks = job["chunks_expected"]
    failed_polls = lab.wait_chunks_done(job["id"], chunks, deadline_s=60)
    took = time.monotonic() - killed_at
    # The pool processes that were on the killed member moved to a survivor.
    after = _connections(lab)
    moved = [pid for pid in on_target if after.get(pid) and target.port not in after[pid]]
    assert moved, (before, after, target.port)
    assert etcd_client.get().endpoint_in_use.netloc != target.url

    expected: Expected = {**expected_samples(warm_data), **expected_samples(data)}
    assert_stored_exactly(lab.root, expected)
    for done in (warm, job):
        assert lab.job(done["id"])["state"] == "done"
    retries = sum(log_text(w).count("retry: Retry in") for w in lab.workers)
    print(
        f"killed leader {target.url} during an upload of {chunks} chunks "
        f"(answered {answer.get('first', 202)}); new leader "
        f"{new_leader.url}; {len(moved)}/{len(on_target)} pool processes moved; "
        f"{retries} task retries; {failed_polls} failed polls here; "
        f"all stored {took:.1f}s after the kill"
    )


def test_a_request_meeting_a_dead_member_is_sent_to_another(lab: Lab):
    """The first request after a member died succeeds: store/client.py sends it again.

    (pyetcd alone fails it and moves only the next request.) A follower is killed, so
    no election is involved: the survivors serve at once.
    """
    members = lab.start_etcd(members=3)
    leader = services.etcd_leader(members)
    follower = next(m for m in members if m is not leader)
    _use_member(follower)
    kv.put(f"{lab.root}/probe", b"before")
    follower.kill()
    kv.put(f"{lab.root}/probe", b"after")  # no StoreUnavailable
    item = kv.get(f"{lab.root}/probe")
    assert item is not None and item.value == b"after"
    assert etcd_client.get().endpoint_in_use.netloc != follower.url
