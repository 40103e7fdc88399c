"""etcd shards on real etcd processes: where writes land, fleet reads, a shard that is down."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from apps.read.middleware import PARTIAL_HEADER
from tests.api.api_support import all_gpus, expected_samples, generated, stored_samples, upload
from tests.api.lane_support import Pair
from tests.conftest import migrate_children_db
from tests.graphql.gql_support import data
from tests.helpers import wait_for, wait_job_done
from tests.shards.shards_support import Fleet, etcd_keys


@pytest.fixture
def fleet(settings, tmp_path: Path) -> Iterator[Fleet]:
    from telemetry_site.celery import app

    old_broker = app.conf.broker_url
    state = Fleet(tmp_path, settings)
    try:
        state.start_etcd("default")
        state.start_etcd("prod-b")
        state.start_redis()
        settings.TELEMETRY_WRITE_AUTH = False
        migrate_children_db(state.endpoints(), state.redis.url)
        state.start_worker(concurrency=2)
        yield state
    finally:
        state.close()
        from tests.api.api_support import point_producer_at

        point_producer_at(old_broker)


def load(api: APIClient, cluster: str, seed: int) -> tuple[dict, bytes]:
    data = generated(
        hosts=1, gpus_per_host=2, samples=6, seed=seed, cluster_prefix=f"{cluster}-node"
    )
    response = upload(api, data, f"{cluster}.csv", cluster=cluster)
    assert response.status_code == 202, response.content
    return wait_job_done(api, response.json()["id"]), data


def uuids_of(data: bytes) -> set[str]:
    return set(expected_samples(data))


def test_each_clusters_data_lands_in_its_shard_and_fleet_reads_merge(fleet: Fleet) -> None:
    api = APIClient()
    _, data_b = load(api, "prod-b", seed=1)
    _, data_a = load(api, "prod-a", seed=2)
    gpus_a, gpus_b = uuids_of(data_a), uuids_of(data_b)
    # straight from each etcd process: prod-b's GPUs only in its shard, prod-a's in default
    [etcd_b], [etcd_a] = fleet.shards["prod-b"], fleet.default
    root = fleet.root
    in_b = {k.split("/")[3] for k in etcd_keys(etcd_b, f"{root}/blocks/")}
    in_a = {k.split("/")[3] for k in etcd_keys(etcd_a, f"{root}/blocks/")}
    assert in_b == gpus_b and in_a == gpus_a
    assert all("/clusters/prod-b/" in k for k in etcd_keys(etcd_b, f"{root}/clusters/"))
    assert all("/clusters/prod-a/" in k for k in etcd_keys(etcd_a, f"{root}/clusters/"))
    assert len(etcd_keys(etcd_b, f"{root}/jobs/")) == 1  # a job lives with its cluster
    # fleet reads: every GPU of both shards, one list, not marked partial
    response = api.get("/api/v1/gpus", {"limit": 100})
    assert response.status_code == 200 and PARTIAL_HEADER not in response
    assert {g["uuid"] for g in response.json()["results"]} == gpus_a | gpus_b
    clusters = api.get("/api/v1/clusters").json()["results"]
    assert [(c["name"], c["gpu_count"]) for c in clusters] == [("prod-a", 2), ("prod-b", 2)]
    hosts = api.get("/api/v1/hosts").json()["results"]
    assert {h["cluster"] for h in hosts} == {"prod-a", "prod-b"}
    graph = data(api, "{ gpus { edges { node { uuid } } } }")
    assert {e["node"]["uuid"] for e in graph["gpus"]["edges"]} == gpus_a | gpus_b
    # one GPU's telemetry is read from its own shard
    for uuid in gpus_b:
        assert stored_samples(api, uuid) == expected_samples(data_b)[uuid]


def test_a_stopped_shard_answers_503_by_name_and_the_others_keep_serving(fleet: Fleet) -> None:
    api = APIClient()
    _, data_b = load(api, "prod-b", seed=3)
    _, data_a = load(api, "prod-a", seed=4)
    gpu_b = sorted(uuids_of(data_b))[0]
    fleet.stop_shard("prod-b")

    down = api.get("/api/v1/gpus", {"cluster": "prod-b"})
    assert down.status_code == 503 and "prod-b" in down.json()["detail"]
    one = api.get(f"/api/v1/gpus/{gpu_b}/telemetry")
    assert one.status_code == 503 and "prod-b" in one.json()["detail"]
    up = api.get("/api/v1/gpus", {"cluster": "prod-a"})
    assert up.status_code == 200 and len(up.json()["results"]) == 2
    fleet_answer = api.get("/api/v1/gpus", {"limit": 100})
    assert fleet_answer.status_code == 200
    assert fleet_answer[PARTIAL_HEADER] == "prod-b"
    assert {g["uuid"] for g in fleet_answer.json()["results"]} == uuids_of(data_a)
    clusters = api.get("/api/v1/clusters")
    assert clusters[PARTIAL_HEADER] == "prod-b"
    page = api.get("/")
    assert page.status_code == 200 and page[PARTIAL_HEADER] == "prod-b"
    assert 'id="partial-fleet"' in page.content.decode() and "prod-b" in page.content.decode()
    assert [c["name"] for c in clusters.json()["results"]] == ["prod-a"]
    ready = api.get("/ready")
    etcd = ready.json()["checks"]["etcd"]
    assert ready.status_code == 200, "the gateway still serves the other clusters"
    assert etcd["down"] == ["prod-b"] and "prod-b" in etcd["error"]
    assert etcd["shards"]["default"]["ok"] and not etcd["shards"]["prod-b"]["ok"]
    for uuid in uuids_of(data_a):
        assert stored_samples(api, uuid) == expected_samples(data_a)[uuid]


def test_the_read_lane_answers_a_partial_fleet_as_django_does(fleet: Fleet) -> None:
    api = APIClient()
    _, data_b = load(api, "prod-b", seed=6)
    _, data_a = load(api, "prod-a", seed=7)
    pair = Pair(
        *(
            f"127.0.0.1:{fleet.start_gateway(READ_LANE=lane, THROTTLE_READS='off').port}"
            for lane in ("on", "off")
        )
    )
    fleet.stop_shard("prod-b")
    gpu_a, gpu_b = sorted(uuids_of(data_a))[0], sorted(uuids_of(data_b))[0]
    answers = {
        path: pair.compare(path)
        for path in (
            "/api/v1/gpus?limit=100",  # partial: named in the header
            "/api/v1/gpus?cluster=prod-b",  # that shard down: 503 naming it
            "/api/v1/gpus?cluster=prod-a",
            f"/api/v1/gpus/{gpu_b}/telemetry",
            f"/api/v1/gpus/{gpu_a}/telemetry?limit=5",
            "/prometheus/api/v1/query?query=DCGM_FI_DEV_GPU_UTIL&time=2025-01-01T00:00:00Z",
        )
    }
    assert all(served for _, served in answers.values()), answers
    fleet_answer = dict(answers["/api/v1/gpus?limit=100"][0].headers)
    assert fleet_answer[PARTIAL_HEADER.lower()] == "prod-b"
    assert answers["/api/v1/gpus?cluster=prod-b"][0].status == 503
    assert answers[f"/api/v1/gpus/{gpu_b}/telemetry"][0].status == 503


def test_no_row_is_lost_while_a_shard_is_down(fleet: Fleet) -> None:
    api = APIClient()
    data = generated(hosts=2, gpus_per_host=2, samples=30, seed=5)
    response = upload(api, data, "late.csv", cluster="prod-b")
    assert response.status_code == 202, response.content
    job_id = response.json()["id"]
    fleet.stop_shard("prod-b")  # chunks still queued or in retry: the worker keeps them
    refused = api.get(f"/api/v1/ingest/jobs/{job_id}")
    assert refused.status_code == 503 and "prod-b" in refused.json()["detail"]
    fleet.restart_shard("prod-b")
    wait_for(
        lambda: api.get(f"/api/v1/ingest/jobs/{job_id}").status_code == 200,
        30,
        "prod-b answering again",
    )
    wait_job_done(api, job_id, deadline_s=120)
    expected = expected_samples(data)
    assert {g["uuid"] for g in all_gpus(api, cluster="prod-b")} == set(expected)
    for uuid, samples in expected.items():
        assert stored_samples(api, uuid) == samples


def test_upkeep_runs_in_every_shard_and_goes_on_without_one_that_is_down(fleet: Fleet) -> None:
    from store import default_keys, shards
    from store.codec import samples_from_rows
    from store.upkeep import run_upkeep
    from store.write import GpuBatch, write_chunk
    from tests.admin.inventory_support import T0, facts

    keys = default_keys()
    for cluster in ("prod-a", "prod-b"):
        for seq in range(3):  # three small blocks of one window: compaction merges them
            rows = [(T0 + seq * 10_000, "DCGM_FI_DEV_GPU_UTIL", float(seq))]
            batch = GpuBatch(facts(f"GPU-{cluster}", cluster=cluster), samples_from_rows(rows))
            with shards.in_cluster(cluster):
                write_chunk(keys, f"upkeep-{cluster}", seq, [batch], 3_600_000)
    report = run_upkeep(retention=False, defrag=False)
    assert not report["skipped"]
    assert {n: r["raw_windows_merged"] for n, r in report["shards"].items()} == {
        "default": 1,
        "prod-b": 1,
    }
    fleet.stop_shard("prod-b")
    report = run_upkeep(retention=False, defrag=False)
    assert "prod-b" in report["shards"]["prod-b"]["error"]
    assert report["shards"]["default"]["raw_windows_merged"] == 0  # ran, nothing new
