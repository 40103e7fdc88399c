"""The whole sharded deployment as processes: two etcd shards (the default one a 3-member
cluster), PostgreSQL, Redis, two workers and two gateways, and uploads through both."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from apps.read.middleware import PARTIAL_HEADER
from tests.api.api_support import expected_samples, generated
from tests.conftest import REPO
from tests.helpers import wait_for
from tests.shards.shards_support import Fleet, etcd_keys
from timeparse.timestamps import parse_timestamp
from tools import services


@pytest.fixture
def deployment(settings, tmp_path: Path, postgres: services.Service) -> Iterator[Fleet]:
    from telemetry_site.celery import app
    from tests.api.api_support import point_producer_at

    old_broker = app.conf.broker_url
    fleet = Fleet(tmp_path, settings)
    try:
        fleet.start_etcd("default", members=3)
        fleet.start_etcd("prod-b")
        fleet.start_redis()
        env = {**fleet.child_env(), "DATABASE_URL": postgres.url}
        migrate = [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"]
        subprocess.run(migrate, cwd=REPO, env=env, check=True, timeout=120)
        for _ in range(2):
            fleet.start_worker(concurrency=1, DATABASE_URL=postgres.url)
        fleet.gateways = [fleet.start_gateway(DATABASE_URL=postgres.url) for _ in range(2)]
        yield fleet
    finally:
        fleet.close()
        point_producer_at(old_broker)


def get(gateway: services.Service, path: str, **params) -> requests.Response:
    return requests.get(f"http://127.0.0.1:{gateway.port}{path}", params=params, timeout=30)


def samples_of(gateway: services.Service, uuid: str) -> dict[tuple[int, str], float]:
    body = get(gateway, f"/api/v1/gpus/{uuid}/telemetry", limit=10_000).json()
    assert body["next"] is None
    return {
        (parse_timestamp(r["timestamp"]), r["metric_name"]): r["value"] for r in body["results"]
    }


def test_two_shards_postgresql_two_gateways_and_two_workers(
    deployment: Fleet, postgres: services.Service
) -> None:
    one, two = deployment.gateways
    files = {
        "prod-a": generated(hosts=2, gpus_per_host=2, samples=12, seed=71, cluster_prefix="a"),
        "prod-b": generated(hosts=2, gpus_per_host=2, samples=12, seed=72, cluster_prefix="b"),
    }
    jobs = {}
    for gateway, (cluster, data) in zip((one, two), files.items(), strict=True):
        answer = requests.post(
            f"http://127.0.0.1:{gateway.port}/api/v1/csv/upload",
            params={"cluster": cluster},
            data=data,
            headers={"Content-Type": "text/csv"},
            timeout=60,
        )
        assert answer.status_code == 202, answer.text
        jobs[cluster] = answer.json()["id"]
    for cluster, job in jobs.items():
        wait_for(
            lambda job=job: get(one, f"/api/v1/ingest/jobs/{job}").json()["state"] == "done",
            120,
            f"the {cluster} upload stored",
        )
    expected = {c: expected_samples(d) for c, d in files.items()}
    # each shard holds its cluster's blocks only (read from the etcd processes themselves)
    root = deployment.root
    for cluster, members in (
        ("prod-a", deployment.default),
        ("prod-b", deployment.shards["prod-b"]),
    ):
        stored = {k.split("/")[3] for k in etcd_keys(members[-1], f"{root}/blocks/")}
        assert stored == set(expected[cluster]), cluster
    # the fleet through either gateway: every GPU, complete (not partial), exact samples
    every = set(expected["prod-a"]) | set(expected["prod-b"])
    for gateway in (one, two):
        listing = get(gateway, "/api/v1/gpus", limit=100)
        assert listing.status_code == 200 and PARTIAL_HEADER not in listing.headers
        assert {g["uuid"] for g in listing.json()["results"]} == every
    for cluster, by_gpu in expected.items():
        for uuid, samples in by_gpu.items():
            assert samples_of(two if cluster == "prod-a" else one, uuid) == samples
    # the workers mirrored every GPU into the one PostgreSQL the gateways' admin reads
    with psycopg.connect(postgres.url.replace("postgres://", "postgresql://", 1)) as conn:
        rows = conn.execute(
            "SELECT uuid, cluster FROM gpus_gpu WHERE uuid = ANY(%s)", (sorted(every),)
        ).fetchall()
    mirrored = {uuid: cluster for uuid, cluster in rows}
    assert mirrored == {u: c for c, by_gpu in expected.items() for u in by_gpu}
