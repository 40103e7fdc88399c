"""Each writer's samples of a UTC day are bounded (INGEST_QUOTA_SAMPLES_PER_DAY): the
upload chunk or remote write request that would pass the quota is refused with 429 and a
Retry-After, nothing of it enqueued; what came before stays stored; another writer goes on.
Counted in the real Redis, stored by a real worker in real etcd."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.ingest import quota, service
from apps.ingest.jobs import Job
from store import default_keys
from store.jobs import load_job
from tests.api.api_support import expected_samples, generated, upload
from tests.helpers import wait_for, wait_job_done
from tools import prometheus

pytestmark = pytest.mark.django_db


@pytest.fixture
def writers(pipeline: str, settings) -> dict[str, APIClient]:
    """Two users with tokens, their counts of the day cleared; writes need a token."""
    settings.TELEMETRY_WRITE_AUTH = True
    client = quota._client()
    for key in client.scan_iter("telemetry:quota:*"):
        client.delete(key)
    out = {}
    for name in ("alice", "bob"):
        user = get_user_model().objects.create_user(name, password="x")
        api = APIClient()
        api.credentials(HTTP_AUTHORIZATION=f"Bearer {Token.objects.create(user=user).key}")
        out[name] = api
        out[f"{name}-owner"] = quota.owner_of(user)  # type: ignore[assignment]
    return out


def _file(seed: int) -> tuple[bytes, int]:
    data = generated(hosts=1, gpus_per_host=2, samples=10, seed=seed, cluster_prefix=f"q{seed}")
    return data, sum(len(s) for s in expected_samples(data).values())


def test_the_upload_that_would_pass_the_quota_is_refused_and_another_writer_goes_on(
    writers, settings
) -> None:
    first, samples = _file(1)
    second, _ = _file(2)
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = samples + samples // 2
    alice, bob = writers["alice"], writers["bob"]

    accepted = upload(alice, first, "first.csv")
    assert accepted.status_code == 202, accepted.content
    wait_job_done(alice, accepted.json()["id"])
    refused = upload(alice, second, "second.csv")
    assert refused.status_code == 429, refused.content
    assert "INGEST_QUOTA_SAMPLES_PER_DAY" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 86_401
    assert quota.used(writers["alice-owner"]) == samples  # the refused file is not counted
    job = load_job(default_keys(), refused.json()["job"])  # saved failed, nothing enqueued
    assert (job["state"], job["samples"], job["chunks_expected"]) == ("failed", 0, 0)

    other = upload(bob, second, "second.csv")  # a quota is each writer's own
    assert other.status_code == 202, other.content
    wait_job_done(bob, other.json()["id"])


def test_an_upload_stopped_midway_keeps_its_first_chunks_and_names_its_job(
    writers, settings
) -> None:
    data, samples = _file(3)
    settings.INGEST_CHUNK_ROWS = 10  # a chunk per GPU and 10 samples: several chunks
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = samples // 2
    refused = upload(writers["alice"], data, "big.csv")
    assert refused.status_code == 429, refused.content
    job_id = refused.json()["job"]
    job = load_job(default_keys(), job_id)
    assert job["state"] == "failed" and "INGEST_QUOTA_SAMPLES_PER_DAY" in job["error"]
    assert 0 < job["samples"] <= samples // 2
    assert quota.used(writers["alice-owner"]) == job["samples"]

    def stored() -> dict | None:
        shown = writers["alice"].get(f"/api/v1/ingest/jobs/{job_id}").json()
        return shown if shown["chunks_done"] == job["chunks_expected"] else None

    assert (
        wait_for(stored, 60, "the chunks enqueued before the refusal stored")["samples"]
        == (job["samples"])
    )


def test_a_large_upload_parsed_in_a_worker_stops_at_the_quota(writers, settings, tmp_path):
    """The worker's half of an upload answered 202 (service.parse_spooled, as the parse task
    runs it): the job ends failed naming the quota."""
    data, samples = _file(4)
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = samples - 1
    resume = Job(source="large.csv", cluster=None, fmt="dcgm").save_queued()
    spooled = tmp_path / "large.csv"
    spooled.write_bytes(data)
    service.parse_spooled(str(spooled), "large.csv", "default", resume, writers["alice-owner"])
    job = load_job(default_keys(), resume[0])
    assert job["state"] == "failed" and "INGEST_QUOTA_SAMPLES_PER_DAY" in job["error"], job
    assert not spooled.exists()


def test_a_parse_delivered_again_is_charged_once(writers, settings, tmp_path) -> None:
    """A worker that died mid-parse leaves the task to be delivered again: it parses from
    the start, and its chunks are charged once per job and chunk."""
    data, samples = _file(5)
    settings.INGEST_CHUNK_ROWS = 10
    resume = Job(source="again.csv", cluster=None, fmt="dcgm").save_queued()
    for _ in range(2):
        spooled = tmp_path / "again.csv"
        spooled.write_bytes(data)
        service.parse_spooled(str(spooled), "again.csv", "default", resume, writers["alice-owner"])
    assert quota.used(writers["alice-owner"]) == samples


def test_a_large_upload_is_refused_before_it_is_spooled_when_no_sample_is_left(
    writers, settings, tmp_path
) -> None:
    settings.INGEST_SPOOL_DIR = str(tmp_path / "spool")
    settings.INGEST_ASYNC_BYTES = 0  # every upload with a declared size is large
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = 5
    quota.charge(writers["alice-owner"], 5)
    refused = upload(writers["alice"], _file(6)[0], "large.csv")
    assert refused.status_code == 429, refused.content
    assert not list((tmp_path / "spool").glob("*"))  # nothing kept, nothing queued


def test_two_writers_near_the_quota_are_never_both_refused_when_one_fits(writers, settings):
    """Check and add are one step: a refused charge never makes a charge that fits fail."""
    import threading

    owner = writers["alice-owner"]
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = 1000
    quota.charge(owner, 990)
    refused_small = []

    def big() -> None:
        for _ in range(300):
            with pytest.raises(quota.QuotaExceeded):
                quota.charge(owner, 20)

    def small() -> None:
        for _ in range(300):
            try:
                given = quota.charge(owner, 5)
            except quota.QuotaExceeded:
                refused_small.append(1)
            else:
                quota.refund(given)

    threads = [threading.Thread(target=big) for _ in range(3)] + [threading.Thread(target=small)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert refused_small == [] and quota.used(owner) == 990


def test_a_refund_goes_to_the_day_it_was_charged_on(writers, settings) -> None:
    owner = writers["alice-owner"]
    midnight = (int(time.time()) // quota.DAY_S + 1) * quota.DAY_S
    given = quota.charge(owner, 10, now=midnight - 0.5)
    assert quota.used(owner, now=midnight - 0.5) == 10
    quota.refund(given)  # after midnight: the charge was yesterday's
    assert quota.used(owner, now=midnight - 0.5) == 0
    assert quota.used(owner, now=midnight + 1) == 0
    assert not quota._client().exists(f"telemetry:quota:{owner}:{midnight // quota.DAY_S}")


def test_remote_write_past_the_quota_is_refused_with_429(writers, settings) -> None:
    series = {"__name__": "DCGM_FI_DEV_GPU_TEMP", "UUID": "GPU-1", "gpu": "0", "Hostname": "h"}
    now = int(time.time() * 1000)
    body = prometheus.remote_write_body([(series, [(now - 2000, 40.0), (now - 1000, 41.0)])])
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = 3
    alice = writers["alice"]

    def post():
        return alice.post("/prometheus/api/v1/write", body, content_type="application/x-protobuf")

    assert post().status_code == 204
    refused = post()  # 4 samples in the day would pass 3
    assert refused.status_code == 429, refused.content
    assert "INGEST_QUOTA_SAMPLES_PER_DAY" in refused.json()["detail"]
    assert 0 < int(refused["Retry-After"]) <= 86_401
    assert quota.used(writers["alice-owner"]) == 2


def test_a_quota_of_zero_counts_nothing(writers, settings) -> None:
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = 0
    quota.charge(writers["alice-owner"], 10**12)
    assert quota.used(writers["alice-owner"]) == 0


def test_a_remote_write_the_pipeline_fails_is_not_counted(writers, settings, monkeypatch) -> None:
    """Answered 503, Prometheus sends the batch again: the failed try must not count."""
    from apps.ingest import remote_write
    from store.errors import StoreUnavailable

    class Down:  # the job series' seam: etcd down when the batch is sent
        def tick(self) -> None: ...

        def send(self, *args, **kwargs) -> int:
            raise StoreUnavailable("etcd is unavailable")

    monkeypatch.setattr(remote_write, "series_for", lambda cluster: Down())
    series = {"__name__": "DCGM_FI_DEV_GPU_TEMP", "UUID": "GPU-1", "gpu": "0", "Hostname": "h"}
    body = prometheus.remote_write_body([(series, [(int(time.time() * 1000) - 1000, 40.0)])])
    settings.INGEST_QUOTA_SAMPLES_PER_DAY = 10
    answer = writers["alice"].post(
        "/prometheus/api/v1/write", body, content_type="application/x-protobuf"
    )
    assert answer.status_code == 503, answer.content
    assert quota.used(writers["alice-owner"]) == 0
