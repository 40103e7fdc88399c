"""Reads asked again are answered from memory while the store's watched view says nothing
they read changed (apps/read/answers.py, store/view.py), and those answers are the store's:
a gateway keeping answers and one reading etcd every time (READ_LANE off) answer alike
before and after new samples of the GPU, a new GPU in the fleet, and a compaction; a write
to another GPU keeps a GPU's answer, a write to it does not; and a kept answer goes only to
callers Django would answer, counted by the throttle as they were."""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator

import pytest
from django.core.management import call_command

from tests.api.api_support import generated, upload
from tests.api.lane_support import Pair
from tests.api.test_read_lane import pair_of
from tests.helpers import wait_for, wait_job_done
from tests.security.conftest import make_token

KEPT = re.compile(r'^telemetry_read_kept_answers_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)
START = "2025-07-18T20:00:00Z"
WINDOW = {"start_time": "2025-07-18T19:00:00Z", "end_time": "2025-07-18T23:00:00Z"}


def kept(pair: Pair) -> dict[str, float]:
    text = pair.ask(pair.lane, "/metrics").body.decode()
    return {outcome: float(count) for outcome, count in KEPT.findall(text)}


def q(path: str, **params: str) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}" if params else path


def hits_after(pair: Pair, path: str, headers: dict | None = None) -> tuple[float, bytes]:
    """Ask both gateways (asserting equal answers); the lane's hits counted after, and the
    body."""
    answer, served = pair.compare(path, headers)
    assert served, f"the lane left {path} to Django"
    return kept(pair).get("hit", 0.0), answer.body


def answered_from_memory(pair: Pair, path: str, headers: dict | None = None) -> None:
    """Ask until the lane answers from memory (the first asks start the process's view)."""

    def hit() -> bool:
        before = kept(pair).get("hit", 0.0)
        return hits_after(pair, path, headers)[0] > before

    wait_for(hit, 30, f"{path} answered from memory")


def load(api, seed: int, start: str = START, samples: int = 60) -> None:
    data = generated(hosts=1, gpus_per_host=2, samples=samples, seed=seed, start=start)
    response = upload(api, data, f"kept-{seed}.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])


@pytest.fixture
def pair(pipeline, api, etcd, redis_server, tmp_path) -> Iterator[Pair]:
    load(api, seed=5)
    with pair_of(tmp_path, etcd, redis_server, pipeline, THROTTLE_READS="off") as both:
        yield both


def job_seen_by_lane(pair: Pair, job: str) -> None:
    """Poll the job through the lane's gateway, as an uploading client does."""

    def done() -> bool:
        answer = pair.ask(pair.lane, f"/api/v1/ingest/jobs/{job}")
        return b'"state":"done"' in answer.body

    wait_for(done, 90, f"job {job} done")


def test_a_gpus_answer_is_kept_until_its_gpu_is_written(pair, api):
    gpus = [g["uuid"] for g in api.get("/api/v1/gpus").json()["results"]]
    tele = q(f"/api/v1/gpus/{gpus[0]}/telemetry", limit="all", **WINDOW)
    step = q(f"/api/v1/gpus/{gpus[0]}/telemetry", step="5m", agg="avg", **WINDOW)
    for path in (tele, step):  # read, kept, and given again (equal to Django's answers)
        answered_from_memory(pair, path)
    _, first = hits_after(pair, tele)
    assert b'"results":[{' in first

    # another GPU written (a new one, in the same host): this GPU's answer is not dropped,
    # and is given again once the watch has delivered what the lane's process saw
    stale = kept(pair).get("stale", 0.0)
    other = upload(api, generated(hosts=1, gpus_per_host=1, samples=30, seed=77, start=START))
    job_seen_by_lane(pair, other.json()["id"])
    answered_from_memory(pair, tele)
    assert kept(pair).get("stale", 0.0) == stale
    still, body = hits_after(pair, tele)
    assert body == first

    # this GPU written (later samples, in the window): its answers are read again, and
    # hold the new samples (the same as Django's: hits_after compares)
    more = upload(
        api, generated(hosts=1, gpus_per_host=2, samples=60, seed=5, start="2025-07-18T21:00:00Z")
    )
    job_seen_by_lane(pair, more.json()["id"])
    now, body = hits_after(pair, tele)
    assert now == still and body != first and len(body) > len(first)


def test_the_fleet_list_and_its_304_are_kept_until_the_fleet_changes(pair, api):
    listed, served = pair.compare("/api/v1/gpus")
    assert served and listed.status == 200
    etag = dict(listed.headers)["etag"]
    answered_from_memory(pair, "/api/v1/gpus")
    answered_from_memory(pair, "/api/v1/gpus", {"If-None-Match": etag})  # a 304 from memory
    not_modified, served = pair.compare("/api/v1/gpus", {"If-None-Match": etag})
    assert served and not_modified.status == 304

    other = upload(api, generated(hosts=1, gpus_per_host=1, samples=30, seed=78, start=START))
    job_seen_by_lane(pair, other.json()["id"])
    changed, served = pair.compare("/api/v1/gpus", {"If-None-Match": etag})
    assert served and changed.status == 200 and dict(changed.headers)["etag"] != etag
    assert len(changed.body) > len(listed.body)


def test_a_compaction_drops_the_answers_it_merges_and_the_next_are_the_stores(pair, api):
    gpus = [g["uuid"] for g in api.get("/api/v1/gpus").json()["results"]]
    tele = q(f"/api/v1/gpus/{gpus[1]}/telemetry", limit="all", **WINDOW)
    # the same samples again, then 30 more minutes: blocks overlapping the first upload's
    data = generated(hosts=1, gpus_per_host=2, samples=240, seed=5, start=START)
    again = upload(api, data, "overlap.csv")
    job_seen_by_lane(pair, again.json()["id"])
    answered_from_memory(pair, tele)
    _, before = hits_after(pair, tele)
    stale = kept(pair).get("stale", 0.0)
    call_command("compact")  # in this process: the lane's gateway learns it from its watch

    def dropped() -> bool:
        hits_after(pair, tele)  # equal to Django's at every try (see hits_after)
        return kept(pair).get("stale", 0.0) > stale

    wait_for(dropped, 30, "the compaction's writes reach the lane's view")
    _, after = hits_after(pair, tele)
    assert after == before  # merged blocks, the same samples


def test_a_kept_answer_goes_only_to_callers_django_would_answer(
    pipeline, api, etcd, redis_server, tmp_path
):
    load(api, seed=6)
    token = make_token(etcd.url, redis_server.url)
    uuid = api.get("/api/v1/gpus").json()["results"][0]["uuid"]
    tele = q(f"/api/v1/gpus/{uuid}/telemetry", limit="all", **WINDOW)
    auth = {"Authorization": f"Bearer {token}"}
    env = {"TELEMETRY_READ_AUTH": "true", "THROTTLE_READS": "40/min"}
    with pair_of(tmp_path, etcd, redis_server, pipeline, **env) as pair:
        answered_from_memory(pair, tele, auth)
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            answer, served = pair.compare(tele, headers)
            assert answer.status == 401 and not served
        # the throttle counts the answers given from memory, and refuses alike
        statuses = {where: [] for where in (pair.lane, pair.django)}
        while len(statuses[pair.lane]) < 50 and 429 not in statuses[pair.lane]:
            for where, seen in statuses.items():
                seen.append(pair.ask(where, tele, auth).status)
        assert statuses[pair.lane] == statuses[pair.django]
        assert statuses[pair.lane][-1] == 429 and statuses[pair.lane][0] == 200
