"""Fleet views answer 304 to a poller whose ETag is still right, and a new one once anything
they show has changed."""

from __future__ import annotations

import pytest

from tests.api.api_support import generated, upload
from tests.helpers import wait_job_done

FLEET_URLS = [
    "/api/v1/gpus",
    "/api/v1/hosts",
    "/api/v1/clusters",
    "/api/v1/hosts/demo-node-01/gpus",
]


def load(api, seed: int, **kwargs) -> None:
    response = upload(api, generated(seed=seed, **kwargs))
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])


@pytest.fixture
def fleet(pipeline, api) -> None:
    load(api, seed=3, hosts=2, gpus_per_host=2, samples=2)


@pytest.mark.parametrize("url", FLEET_URLS)
def test_an_unchanged_fleet_answers_304_without_a_body(fleet, api, url):
    first = api.get(url)
    assert first.status_code == 200 and first.json()["count"] > 0
    etag = first["ETag"]
    assert etag.startswith('W/"') and first["Cache-Control"] == "no-cache"
    again = api.get(url, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304 and again.content == b""
    assert again["ETag"] == etag
    listed = api.get(url, HTTP_IF_NONE_MATCH=f'"other", {etag}')
    assert listed.status_code == 304
    assert api.get(url, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_new_latest_values_change_the_gpu_list_etag_but_not_the_hosts_one(fleet, api):
    gpus, hosts = api.get("/api/v1/gpus"), api.get("/api/v1/hosts")
    later = generated(seed=3, hosts=2, gpus_per_host=2, samples=4)  # same GPUs, newer samples
    response = upload(api, later)
    wait_job_done(api, response.json()["id"])
    changed = api.get("/api/v1/gpus", HTTP_IF_NONE_MATCH=gpus["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != gpus["ETag"]
    assert changed.json()["results"] != gpus.json()["results"]  # newer latest values
    assert api.get("/api/v1/hosts", HTTP_IF_NONE_MATCH=hosts["ETag"]).status_code == 304


def test_a_new_gpu_changes_every_fleet_etag(fleet, api):
    before = {url: api.get(url)["ETag"] for url in FLEET_URLS[:3]}
    load(api, seed=4, hosts=3, gpus_per_host=1, samples=1)
    for url, etag in before.items():
        assert api.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 200, url


def test_filters_and_pages_are_answered_from_the_same_read(fleet, api):
    everything = api.get("/api/v1/gpus").json()["results"]
    page = api.get("/api/v1/gpus", {"limit": 1, "offset": 1}).json()
    assert page["count"] == len(everything) and page["results"] == everything[1:2]
    host = everything[0]["host"]
    only = api.get("/api/v1/gpus", {"host": host}).json()["results"]
    assert only == [g for g in everything if g["host"] == host]


def test_a_deleted_latest_value_or_record_changes_the_list_read_after_an_unchanged_poll(
    fleet, api, monkeypatch
):
    # a poll of an unchanged fleet asks etcd for key counts only: a deletion (no key
    # changed, one fewer) must still be seen, and the next read must then be the store's
    from store import default_keys, kv

    made: list[bool] = []
    real = kv.get_ranges_since

    def counted(ranges, revision):
        got = real(ranges, revision)
        made.append(got.items is None)
        return got

    monkeypatch.setattr(kv, "get_ranges_since", counted)
    first = api.get("/api/v1/gpus")
    again = api.get("/api/v1/gpus", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and made[-1] is True  # counts only, no documents
    gpus = first.json()["results"]
    keys = default_keys()
    kv.delete_prefix(keys.latest(gpus[0]["uuid"]))
    changed = api.get("/api/v1/gpus", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert changed.json()["results"][0]["latest"] == {} and made[-1] is False
    gone = gpus[-1]
    kv.delete_prefix(keys.record(gone["cluster"], gone["host"], gone["uuid"]))
    after = api.get("/api/v1/gpus").json()["results"]
    assert [g["uuid"] for g in after] == [g["uuid"] for g in gpus[:-1]]
