"""The read lane answers exactly as Django does: the same requests against a gateway with
READ_LANE on and one with it off give the same status, headers and body; and the lane
really answers the requests it is for (its own counter in /metrics), leaving the rest."""

from __future__ import annotations

import contextlib
import json
import re
import urllib.parse
import uuid as uuidlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.api.api_support import generated, upload
from tests.api.lane_support import HOST, Answer, Pair
from tests.conftest import start_gateway
from tests.helpers import wait_job_done
from tests.security.conftest import make_token

UTIL = "DCGM_FI_DEV_GPU_UTIL"
HOUR = timedelta(hours=1)


@contextlib.contextmanager
def pair_of(tmp: Path, etcd, redis_server, root: str, **env: str) -> Iterator[Pair]:
    """Two gateways over the same etcd root, READ_LANE on and off, each with its own metrics."""
    with contextlib.ExitStack() as stack:
        ports = []
        for lane in ("on", "off"):
            metrics = tmp / f"metrics-{lane}-{uuidlib.uuid4().hex[:6]}"
            metrics.mkdir()
            gateway = start_gateway(
                tmp,
                etcd.url,
                redis_server.url,
                ETCD_PREFIX=root,
                READ_LANE=lane,
                PROMETHEUS_MULTIPROC_DIR=str(metrics),
                **env,
            )
            ports.append(stack.enter_context(gateway).port)
        yield Pair(*(f"127.0.0.1:{port}" for port in ports))


@pytest.fixture
def loaded(pipeline, api) -> dict[str, str]:
    response = upload(api, generated(hosts=2, gpus_per_host=2, samples=60, seed=11))
    job = wait_job_done(api, response.json()["id"])["id"]
    gpus = api.get("/api/v1/gpus").json()["results"]
    first = gpus[0]
    shown = {k: first[k] for k in ("uuid", "cluster", "last_seen")}
    return {"root": pipeline, "job": job, **shown}


@pytest.fixture
def open_pair(loaded, etcd, redis_server, tmp_path) -> Iterator[Pair]:
    with pair_of(tmp_path, etcd, redis_server, loaded["root"], THROTTLE_READS="off") as pair:
        yield pair


def q(path: str, **params: str) -> str:
    return f"{path}?{urllib.parse.urlencode(params)}" if params else path


def test_the_lane_answers_its_requests_as_django_does(loaded, open_pair):
    uuid, cluster = loaded["uuid"], loaded["cluster"]
    tele = f"/api/v1/gpus/{uuid}/telemetry"
    window = {"start_time": "2025-01-01T00:00:00Z", "end_time": "2030-01-01T00:00:00Z"}
    first, served = open_pair.compare("/api/v1/gpus")
    assert first.status == 200 and served
    etag = dict(first.headers)["etag"]
    page, _ = open_pair.compare(q(tele, limit="5"))
    cursor = urllib.parse.parse_qs(urllib.parse.urlsplit(_next(page)).query)["cursor"][0]
    taken = [
        ("/health", {}),
        (q("/api/v1/gpus", limit="1"), {}),
        (q("/api/v1/gpus", limit="1", offset="2"), {}),
        (q("/api/v1/gpus", cluster=cluster, model=""), {}),
        (q("/api/v1/gpus", cluster="nowhere"), {}),
        ("/api/v1/gpus", {"If-None-Match": etag}),
        ("/api/v1/gpus", {"If-None-Match": '"other"'}),
        ("/api/v1/gpus", {"Accept-Encoding": "gzip", "Accept": "application/json"}),
        (tele, {}),
        (q(tele, limit="5", cursor=cursor), {}),
        (q(tele, order="desc", limit="7", metric=f"{UTIL},DCGM_FI_DEV_POWER_USAGE"), {}),
        (q(tele, format="columns", **window), {"Accept-Encoding": "zstd"}),
        (q(tele, format="csv"), {}),
        (q(tele, format="wide"), {"Accept-Encoding": "br"}),
        (q(tele, step="1m", agg="max", metric=UTIL, **window), {}),
        (q(tele, limit="all"), {"Accept-Encoding": "gzip, deflate, br, zstd", "Accept": "*/*"}),
        ("/api/v1/gpus/GPU-nope/telemetry", {}),
        (q("/prometheus/api/v1/query", query=UTIL, time=loaded["last_seen"]), {}),
        (q("/prometheus/api/v1/query", query=f"avg by (Hostname) ({UTIL})", time="1e9"), {}),
        (q("/prometheus/api/v1/query", query="sum(("), {}),
        (q("/prometheus/api/v1/query"), {}),
        (
            q("/prometheus/api/v1/query_range", query=UTIL, start="1.7e9", end="1.8e9", step="1e4"),
            {"Accept": "application/json, text/plain, */*"},
        ),
        (q("/prometheus/api/v1/query_range", query=UTIL, start="0", end="1", step="0"), {}),
        (f"/api/v1/ingest/jobs/{loaded['job']}", {}),
        ("/api/v1/ingest/jobs/1796220000000-nosuchjob", {}),
    ]
    for path, headers in taken:
        _, served = open_pair.compare(path, headers)
        assert served, f"the lane left {path} {headers} to Django"
    left = [
        (q("/api/v1/gpus", limit="abc"), {}),
        (q("/api/v1/gpus", cluster=" "), {}),
        (q("/api/v1/gpus", unknown="1"), {}),
        (q(tele, limit="0"), {}),
        (q(tele, step="0s"), {}),
        (q(tele, start_time="2025-02-01T00:00:00Z", end_time="2025-01-01T00:00:00Z"), {}),
        (q(tele, format="xml"), {}),
        (q(tele, cursor="junk"), {}),
        (q(tele, limit="5", _="123"), {}),  # a cache buster: Django ignores it, as before
        (tele, {"Cookie": "sessionid=made-up"}),
        (tele, {"Accept": "application/xml"}),
        (tele, {"Authorization": "Bearer not-a-token"}),
        ("/api/v1/gpus/" + uuid, {}),
        ("/api/v1/clusters", {}),
        (q(f"/api/v1/ingest/jobs/{loaded['job']}", fields="all"), {}),
        ("/api/v1/ingest/jobs", {}),
    ]
    for path, headers in left:
        _, served = open_pair.compare(path, headers)
        assert not served, f"the lane took {path} {headers}"
    _, served = open_pair.compare("/api/v1/gpus", method="HEAD")
    assert not served


INLINE = re.compile(r'^telemetry_read_lane_inline_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)


def test_queries_answered_on_the_lanes_event_loop_are_djangos_answers(loaded, open_pair):
    """A PromQL query asked again finds its plans and columns in memory: the lane answers it
    on its event loop (store/inline.py), the same bytes as Django's; one too large for a
    try there is answered on its threads, the same bytes too."""
    uuid, last = loaded["uuid"], loaded["last_seen"]
    hour_before = datetime.fromisoformat(last.replace("Z", "+00:00")) - HOUR
    span = {"start": hour_before.isoformat(), "end": last, "step": "60"}
    asked = [
        (q("/prometheus/api/v1/query_range", query=f'avg_over_time({UTIL}{{UUID="{uuid}"}}[5m])',
           **span), True),
        (q("/prometheus/api/v1/query", query=f"sum by (Hostname) ({UTIL})", time=last), True),
        # 10,801 steps a series, 4 series: past a try's budget whatever is held
        (q("/prometheus/api/v1/query_range", query=UTIL, start=(hour_before - 2 * HOUR).isoformat(),
           end=last, step="1"), False),
    ]  # fmt: skip

    # a warm try may still be retried (its catalog ended, or the machine paused it past
    # the try's 5 ms): enough asks that some are answered on the loop
    asks = 8

    def outcomes() -> dict[str, float]:
        metrics = open_pair.ask(open_pair.lane, "/metrics").body.decode()
        return {k: float(v) for k, v in INLINE.findall(metrics)}

    for path, fits in asked:
        before = outcomes()
        for _ in range(asks):  # the first may read etcd (on a thread); the rest need not
            answer, served = open_pair.compare(path)
            assert served and answer.status == 200, path
            assert b'"result":[{' in answer.body, path
        after = outcomes()
        answered = after.get("answered", 0) - before.get("answered", 0)
        retried = after.get("retried", 0) - before.get("retried", 0)
        assert answered + retried == asks, (path, before, after)  # each tried on the loop first
        assert (answered >= 1) == fits, (path, answered, retried)


def test_grafana_form_posts_are_answered_alike(loaded, open_pair):
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    rng = {"query": f"max by (UUID) ({UTIL})", "start": "1.7e9", "end": "1.8e9", "step": "1e4"}
    taken = [
        ("/prometheus/api/v1/query_range", rng, form),
        ("/prometheus/api/v1/query_range?step=2e4", rng, form),  # query string and form merged
        ("/prometheus/api/v1/query", {"query": UTIL, "time": loaded["last_seen"]}, form),
        ("/prometheus/api/v1/query", {"query": "sum(("}, form),
        (
            "/prometheus/api/v1/query",
            {},
            {"Content-Type": "application/x-www-form-urlencoded; charset=UTF-8"},
        ),
    ]
    for path, fields, headers in taken:
        body = urllib.parse.urlencode(fields)
        answer, served = open_pair.compare(path, headers, "POST", body)
        assert served and answer.status in (200, 400), (path, fields)
    left = [
        ("/prometheus/api/v1/query", b'{"query": "up"}', {"Content-Type": "application/json"}),
        ("/prometheus/api/v1/series", b"match[]=up", form),
        ("/api/v1/gpus", b"limit=1", form),
        ("/prometheus/api/v1/query", b"query=up", {**form, "Cookie": "sessionid=x"}),
        ("/prometheus/api/v1/query", "&".join(["a=1"] * 1500).encode(), form),  # too many fields
    ]
    for path, body, headers in left:
        answer, served = open_pair.compare(path, headers, "POST", body)
        assert not served, (path, body[:40])


def _next(answer: Answer) -> str:
    link = json.loads(answer.body)["next"]
    assert link and link.startswith(f"http://{HOST}/"), link
    return link


def test_reads_behind_a_token_are_answered_alike(loaded, etcd, redis_server, tmp_path):
    token = make_token(etcd.url, redis_server.url)
    with pair_of(tmp_path, etcd, redis_server, loaded["root"], TELEMETRY_READ_AUTH="true") as pair:
        tele = f"/api/v1/gpus/{loaded['uuid']}/telemetry?limit=3"
        job = f"/api/v1/ingest/jobs/{loaded['job']}"
        for path in (tele, job):
            for scheme in ("Bearer", "Token"):
                answer, served = pair.compare(path, {"Authorization": f"{scheme} {token}"})
                assert answer.status == 200 and served
                vary = dict(answer.headers)["vary"]
                assert vary == "Accept, Accept-Encoding"  # no session looked at
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic a"}):
                answer, served = pair.compare(path, headers)
                assert answer.status == 401 and not served
        answer, served = pair.compare("/health")
        assert answer.status == 200 and served


def test_the_throttle_counts_once_and_refuses_alike(loaded, etcd, redis_server, tmp_path):
    with pair_of(tmp_path, etcd, redis_server, loaded["root"], THROTTLE_READS="4/min") as pair:
        seen = {}
        for where in (pair.lane, pair.django):
            answers = [pair.ask(where, "/api/v1/gpus") for _ in range(3)]
            answers.append(pair.ask(where, "/api/v1/gpus/GPU-nope/telemetry"))  # counts: 404
            answers.append(pair.ask(where, "/api/v1/gpus"))
            answers.append(pair.ask(where, "/prometheus/api/v1/query?query=up"))
            seen[where] = [_unclocked(a) for a in answers]
        assert [a.status for a in seen[pair.lane]] == [200, 200, 200, 404, 429, 429]
        assert seen[pair.lane] == seen[pair.django]
        assert b"Request was throttled" in seen[pair.lane][-1].body


def _unclocked(answer: Answer) -> Answer:
    """The answer with the wait a 429 names masked: it is computed from the clock, so the
    two gateways may say 59 and 60 seconds."""
    if answer.status != 429:
        return answer
    headers = [(k, "N" if k == "retry-after" else v) for k, v in answer.headers]
    return Answer(429, headers, re.sub(rb"[0-9]+", b"N", answer.body))


def test_behind_https_the_lane_redirects_and_adds_hsts_as_django_does(
    loaded, etcd, redis_server, tmp_path
):
    with pair_of(tmp_path, etcd, redis_server, loaded["root"], DJANGO_HTTPS="true") as pair:
        tele = f"/api/v1/gpus/{loaded['uuid']}/telemetry?limit=3"
        plain, served = pair.compare(tele)
        assert plain.status == 301 and not served  # SecurityMiddleware's redirect, by Django
        secure, served = pair.compare(tele, {"X-Forwarded-Proto": "https"})
        assert secure.status == 200 and served
        assert "strict-transport-security" in dict(secure.headers)
        probe, served = pair.compare("/health")  # exempt from the redirect (SECURE_REDIRECT_EXEMPT)
        assert probe.status == 200 and served


def test_form_posts_drf_reads_otherwise_are_left_to_django(loaded, open_pair):
    """Forms the lane would read where DRF reads another form (or none): Django answers."""
    form = "application/x-www-form-urlencoded"
    path = "/prometheus/api/v1/query"
    fields = urllib.parse.urlencode({"query": UTIL, "time": loaded["last_seen"]}).encode()
    # chunked (no Content-Length): DRF takes the form as empty, whatever the body holds
    answer, served = open_pair.compare(path, {"Content-Type": form}, "POST", [fields])
    assert answer.status == 400 and not served
    # two Content-Types: Django joins them, and DRF has no parser for the result (415)
    both = [("Content-Type", form), ("Content-Type", "application/json")]
    answer, served = open_pair.compare(path, both, "POST", fields)
    assert answer.status == 415 and not served


def test_odd_requests_behind_a_token_are_answered_alike(loaded, etcd, redis_server, tmp_path):
    """With TELEMETRY_READ_AUTH on, no request the lane takes gets past what Django refuses:
    odd Authorization headers, a token elsewhere than the header, odd paths."""
    token = make_token(etcd.url, redis_server.url)
    uuid = loaded["uuid"]
    tele = f"/api/v1/gpus/{uuid}/telemetry?limit=2"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with pair_of(tmp_path, etcd, redis_server, loaded["root"], TELEMETRY_READ_AUTH="true") as pair:
        refused = [
            (tele, [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]),
            (tele, [("Authorization", "Bearer wrong"), ("Authorization", f"Bearer {token}")]),
            (tele, {"Authorization": f"Bearer {token} extra"}),
            (tele, {"Authorization": f"Bearer{token}"}),
            (tele, {"Authorization": f"Basic {token}"}),
            (tele, {"Authorization": "Bearer t\u00f6ken"}),
            (tele, {"Authorization": ""}),
            (tele, {"X-Authorization": f"Bearer {token}"}),
            (f"{tele}&token={token}", {}),
            (f"{tele}&access_token={token}", {}),
            (f"/api/v1/gpus?auth={token}", {}),
            (f"/prometheus/api/v1/query?query={UTIL}", {}),
            ("/api/v1/gpu%73", {}),
            ("/api/v1/gpus/GPU-%C3%A9/telemetry", {}),
        ]
        for path, headers in refused:
            answer, served = pair.compare(path, headers)
            assert answer.status == 401 and not served, (path, headers, answer.status)
        odd = ["//api/v1/gpus", "/api/v1/gpus/", f"/api/v1/gpus/{uuid}/telemetry/"]
        odd += ["/api/v1/gpus/GPU-%FF/telemetry", "/api/v1/gpus/../gpus", "/api/v1/gpus/%2e%2e"]
        for path in odd:  # no such route, or undecodable: Django's answer
            answer, served = pair.compare(path)
            assert answer.status in (400, 401, 404) and not served, (path, answer.status)
        answer, served = pair.compare("/api/v1/gpus", method="HEAD")
        assert answer.status == 401 and not served
        answer, served = pair.compare(
            "/prometheus/api/v1/query",
            {**form, "Authorization": "Bearer wrong"},
            "POST",
            b"query=up",
        )
        assert answer.status == 401 and not served
        for scheme in ("bearer", "TOKEN"):
            answer, served = pair.compare(tele, {"Authorization": f"{scheme}  {token} "})
            assert answer.status == 200 and served
        answer, served = pair.compare(
            "/prometheus/api/v1/query",
            {**form, "Authorization": f"Bearer {token}"},
            "POST",
            f"query={UTIL}".encode(),
        )
        assert answer.status == 200 and served


def test_long_query_strings_and_forms_are_left_to_django(loaded, open_pair):
    """The lane parses on the event loop: a long query string or form (Django parses ~10 MB/s
    of percent-escapes) would stall every other request there. Django parses it in a thread."""
    tele = f"/api/v1/gpus/{loaded['uuid']}/telemetry"
    long_get = [
        q(tele, limit="2", metric=",".join([UTIL] * 4000)),
        q("/api/v1/gpus", cluster="%" * 30_000),
        q("/prometheus/api/v1/query", query=f"{UTIL} or " * 3000 + UTIL),
    ]
    for path in long_get:
        answer, served = open_pair.compare(path)
        assert answer.status in (200, 400) and not served, (path[:60], answer.status)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = urllib.parse.urlencode({"query": f"{UTIL} or " * 3000 + UTIL}).encode()
    answer, served = open_pair.compare("/prometheus/api/v1/query", form, "POST", body)
    assert answer.status in (200, 400) and not served


def test_an_empty_accept_header_is_answered_alike(loaded, open_pair):
    """An Accept header sent empty is not an absent one: DRF finds no renderer for it."""
    tele = f"/api/v1/gpus/{loaded['uuid']}/telemetry?limit=2"
    for path in (tele, "/api/v1/gpus", f"/prometheus/api/v1/query?query={UTIL}"):
        answer, served = open_pair.compare(path, {"Accept": ""})
        assert answer.status == 406 and not served, path
