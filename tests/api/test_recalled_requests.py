"""A GET the read lane answered before, asked again with the same headers, is sent its kept
answer without the lane's request steps (telemetry_site/recall.py), and is still answered
as Django answers it: byte for byte, throttled and refused alike; a request differing in
anything the steps read (a header, the query, the scheme), carrying credentials, or for a
view whose checks read more of the request, takes the steps; a setting change forgets
every noted request; and the caller made from the scope is the one DRF's throttles would
count."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import re
from types import SimpleNamespace

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import override_settings
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from apps.read import answers, views
from store import view as view_module
from telemetry_site import lane, recall
from tests.api.api_support import generated, upload
from tests.api.lane_support import HOST
from tests.api.test_kept_answers import (
    KEPT,
    WINDOW,
    answered_from_memory,
    job_seen_by_lane,
    load,
    q,
)
from tests.api.test_read_lane import pair_of
from tests.helpers import wait_for
from tests.security.conftest import make_token

RECALLED = re.compile(r'^telemetry_read_lane_recalled_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)
ETCD_REQUESTS = re.compile(r"^telemetry_etcd_request_seconds_count\{[^}]*\} ([0-9.e+]+)$", re.M)
TELE = "/api/v1/gpus/GPU-1/telemetry"


def recalled(pair) -> dict[str, float]:
    text = pair.ask(pair.lane, "/metrics").body.decode()
    return {outcome: float(count) for outcome, count in RECALLED.findall(text)}


def store_reads(pair) -> tuple[float, float]:
    """The lane gateway's kept answers given, and its etcd requests (its store view's own
    are not counted; this scrape's are), from one /metrics."""
    text = pair.ask(pair.lane, "/metrics").body.decode()
    hits = sum(float(n) for outcome, n in KEPT.findall(text) if outcome == "hit")
    return hits, sum(float(n) for n in ETCD_REQUESTS.findall(text))


def scope(path: str = TELE, query: bytes = b"limit=all", **headers: str) -> dict:
    sent = [(b"host", b"testserver")]
    sent += [(n.replace("_", "-").encode(), v.encode()) for n, v in headers.items()]
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query,
        "root_path": "", "headers": sent, "client": ("10.0.0.7", 5555), "server": ("t", 80),
    }  # fmt: skip


def answer(view: object, kept_key: object = ("k",), touched: bool = True) -> SimpleNamespace:
    return SimpleNamespace(view=view, kept_key=kept_key, partial=None, session_touched=touched)


def noted(recalls: recall.Recalls, sc: dict, view_class: type = views.GpuTelemetryView) -> bool:
    request = ASGIRequest(sc, io.BytesIO())
    match = SimpleNamespace(func=SimpleNamespace(view_initkwargs={}), route="r")
    recalls.note(request, match, answer(view_class()), closes=False)  # type: ignore[arg-type]
    return recalls.get(sc) is not None


# --- what is noted, and under what -------------------------------------------------------
def test_a_request_is_recalled_only_with_everything_the_steps_read_alike():
    recalls = recall.Recalls()
    assert noted(recalls, scope(accept="application/json"))
    assert recalls.get(scope(accept="application/json")) is not None
    for other in (
        scope(accept="text/html"),  # a header differs
        scope(),  # one header fewer
        scope(query=b"limit=all&x=1"),  # the query
        scope(path="/api/v1/gpus/GPU-2/telemetry", accept="application/json"),
        {**scope(accept="application/json"), "scheme": "https"},
        {**scope(accept="application/json"), "server": ("t", 8080)},
        {**scope(accept="application/json"), "method": "POST"},
    ):
        assert recalls.get(other) is None, other
    # the caller's address is not part of it: the throttle reads it per request
    assert recalls.get({**scope(accept="application/json"), "client": ("10.9.9.9", 1)})


def note(recalls: recall.Recalls, closes: bool = False, **fields: object) -> bool:
    request = ASGIRequest(scope(), io.BytesIO())
    match = SimpleNamespace(func=SimpleNamespace(view_initkwargs={}), route="r")
    given = {**vars(answer(views.GpuTelemetryView())), **fields}
    recalls.note(request, match, SimpleNamespace(**given), closes=closes)  # type: ignore[arg-type]
    return recalls.get(scope()) is not None


def test_credentials_other_checks_and_large_requests_are_never_noted():
    recalls = recall.Recalls()
    assert not noted(recalls, scope(authorization="Bearer x"))
    assert not note(recalls, session_touched=False)  # authenticated by a token
    assert not note(recalls, kept_key=None)  # nothing kept to give again
    assert not note(recalls, closes=True)  # plain answers closed through Django
    assert not note(recalls, partial=SimpleNamespace(missing=["shard-1"]))
    assert note(recall.Recalls(), partial=SimpleNamespace(missing=[]))  # every shard answered

    class Strict(views.GpuTelemetryView):
        permission_classes = [IsAuthenticated]

    class Counted(views.GpuTelemetryView):
        throttle_classes = [type("Own", (ScopedRateThrottle,), {})]

    class Twice(views.GpuTelemetryView):
        throttle_classes = [ScopedRateThrottle, ScopedRateThrottle]

    class OwnChecks(views.GpuTelemetryView):
        def get_throttles(self):  # reads what a Caller may not carry
            return super().get_throttles()

    for view_class in (Strict, Counted, Twice, OwnChecks):
        assert not noted(recalls, scope(), view_class), view_class
    assert not noted(recalls, scope(user_agent="x" * recall.MAX_RECALL_BYTES))
    # many tiny headers: each costs its objects, not only its two bytes
    assert not noted(recalls, scope(**{f"x_{i}": "y" for i in range(70)}))
    assert noted(recalls, scope(**{f"x_{i}": "y" for i in range(20)}))
    assert noted(recalls, scope(), views.GpuTelemetryView)


def test_request_ids_and_trace_contexts_are_not_part_of_the_key():
    recalls = recall.Recalls()
    assert noted(recalls, scope(x_request_id="a1", traceparent="00-aa-bb-01"))
    assert recalls.get(scope(x_request_id="b2", traceparent="00-cc-dd-01")) is not None
    assert recalls.get(scope()) is not None
    assert recalls.get(scope(x_forwarded_for="10.1.1.1")) is None  # read by the throttle


def test_a_scope_with_lists_is_never_noted_and_never_fails():
    recalls = recall.Recalls()
    assert noted(recalls, scope())
    listed = {**scope(), "headers": [[b"host", b"testserver"]], "server": ["t", 80]}
    assert recalls.get(listed) is None
    recalls.drop(listed)
    assert not noted(recall.Recalls(), listed)


def test_noted_requests_are_bounded_least_recently_used_out_first():
    recalls = recall.Recalls()
    for i in range(recall.MAX_RECALLS + 5):
        noted(recalls, scope(query=f"n={i}".encode()))
        if i == recall.MAX_RECALLS - 1:  # full: the first noted, used again, is kept
            assert recalls.get(scope(query=b"n=0"))
    assert len(recalls.held) == recall.MAX_RECALLS
    assert recalls.get(scope(query=b"n=0")) is not None
    assert recalls.get(scope(query=b"n=1")) is None


def test_a_setting_change_forgets_every_noted_request():
    recalls = recall.Recalls()
    assert noted(recalls, scope())
    with override_settings(TELEMETRY_READ_AUTH=True):
        assert recalls.get(scope()) is None


@pytest.mark.parametrize("proxies", [None, 0, 1, 2])
def test_the_caller_made_from_the_scope_is_counted_as_drfs_request(proxies):
    sc = scope()
    sc["headers"] += [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2"), (b"x-forwarded-for", b"3.3.3.3")]
    view = views.GpuTelemetryView()
    throttle = ScopedRateThrottle()
    throttle.scope = "reads"
    drf = Request(ASGIRequest(sc, io.BytesIO()))
    caller = recall.Caller(sc, SimpleNamespace(route="r"))  # type: ignore[arg-type]
    with override_settings(REST_FRAMEWORK={"NUM_PROXIES": proxies}):
        from rest_framework.settings import api_settings

        api_settings.reload()
        try:
            assert throttle.get_cache_key(caller, view) == throttle.get_cache_key(drf, view)
        finally:
            api_settings.reload()
    plain = recall.Caller(scope(), SimpleNamespace(route="r"))  # type: ignore[arg-type]
    assert throttle.get_ident(plain) == "10.0.0.7"


# --- the lane's recall, with a kept answer given to it -------------------------------------
class Lane:
    """A lane whose Django is a stub recording what it was handed, with one noted request."""

    def __init__(self, monkeypatch, kept: answers.Kept | None, view_class: type) -> None:
        self.handed: list[dict] = []

        async def django(scope, receive, send) -> None:
            self.handed.append(scope)

        self.lane = lane.ReadLane(django, lane.ASGIHandler())  # type: ignore[arg-type]
        self.scope = scope()
        self.recall = recall.Recall(
            key=("gpu-telemetry", "r", False, "testserver", TELE, ""),
            match=SimpleNamespace(route="api/v1/gpus/<str:uuid>/telemetry"),  # type: ignore[arg-type]
            view_class=view_class,
            secure=False,
            coding=None,
        )
        self.lane.recalls.held[recall.recall_key(self.scope)] = self.recall
        template = [(b"content-type", b"application/json"), (b"content-length", None)]
        self.lane.templates.held[(view_class, True, False, None, "application/json")] = template
        monkeypatch.setattr(lane.answers, "looked_up", lambda key: kept)
        self.sent: list[dict] = []
        self.body = lane._Body(self._receive)

    async def _receive(self) -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def _send(self, message: dict) -> None:
        self.sent.append(message)

    def ask(self) -> bool:
        return asyncio.run(self.lane._recall(self.recall, self.scope, self.body, self._send, 0.0))

    def noted(self) -> bool:
        return self.lane.recalls.get(self.scope) is not None


def kept_answer(body: bytes = b"[1]", etag: str | None = None) -> answers.Kept:
    headers = (("Content-Type", "application/json"),)
    return answers.Kept("r", view_module.Stamp(1, 1), "GPU-1", headers, body, etag)


class Open(views.GpuTelemetryView):
    throttle_classes = []


def test_a_kept_answer_the_recall_can_send_goes_out_with_the_template(monkeypatch):
    asked = Lane(monkeypatch, kept_answer(), Open)
    assert asked.ask() and asked.handed == []
    assert asked.sent[1]["body"] == b"[1]"
    assert (b"content-length", b"3") in asked.sent[0]["headers"]


def test_a_kept_answer_the_recall_cannot_send_goes_to_the_steps_and_is_forgotten(monkeypatch):
    big = kept_answer(b"[" + b"1," * lane.OFF_LOOP_SIZE + b"1]")
    asked = Lane(monkeypatch, big, Open)
    asked.recall = dataclasses.replace(asked.recall, coding="gzip")  # compressed off the loop
    assert not asked.ask() and asked.sent == []
    assert asked.body.asked and asked.body.kept is big  # the steps are given it
    assert not asked.noted()


def test_a_kept_answer_with_a_version_is_never_recalled(monkeypatch):
    asked = Lane(monkeypatch, kept_answer(etag="v1"), Open)
    assert not asked.ask() and asked.sent == []  # If-None-Match decides its status


def test_a_recalled_requests_failing_check_goes_to_django_and_is_forgotten(monkeypatch):
    class Failing(Open):
        def get_permissions(self):
            raise RuntimeError("a bug")

    asked = Lane(monkeypatch, kept_answer(), Failing)
    assert asked.ask() and asked.sent == [] and asked.handed == [asked.scope]
    assert not asked.noted()


# --- on real gateways: the lane with recalls against Django ----------------------------
@pytest.fixture
def loaded(pipeline, api) -> str:
    load(api, seed=8)
    uuid = api.get("/api/v1/gpus").json()["results"][0]["uuid"]
    return q(f"/api/v1/gpus/{uuid}/telemetry", limit="all", **WINDOW)


def test_a_request_asked_again_alike_is_sent_without_the_steps_and_as_django_answers(
    loaded, pipeline, etcd, redis_server, tmp_path
):
    env = {"THROTTLE_READS": "off", "DJANGO_ALLOWED_HOSTS": f"{HOST},127.0.0.1"}
    with pair_of(tmp_path, etcd, redis_server, pipeline, **env) as pair:
        answered_from_memory(pair, loaded)  # compares with Django at every ask
        before = recalled(pair).get("sent", 0.0)
        for i in range(3):  # a new request id each time: still the same request
            answer, served = pair.compare(loaded, {"X-Request-ID": f"req-{i}"})
            assert served and answer.status == 200
        assert recalled(pair).get("sent", 0.0) == before + 3
        # anything the steps refuse, asked again and again: refused as Django refuses it
        for headers, status in (
            ({"Host": "elsewhere.example"}, 400),  # not an allowed host
            ({"Accept": "text/html"}, 200),  # DRF's browsable page, from Django
            ({"Cookie": "sessionid=x"}, 200),  # Django's, sessions looked up
        ):
            for _ in range(3):
                answer, _ = pair.compare(loaded, headers)
                assert answer.status == status, headers
        assert recalled(pair).get("sent", 0.0) == before + 3
        # compressed: noted and recalled alike, its own coding
        for _ in range(4):
            answer, served = pair.compare(loaded, {"Accept-Encoding": "gzip"})
            assert served and dict(answer.headers).get("content-encoding") == "gzip"
        assert recalled(pair).get("sent", 0.0) >= before + 5


def test_an_answer_grown_past_what_is_compressed_on_the_loop_is_still_given_from_memory(
    pipeline, api, etcd, redis_server, tmp_path
):
    load(api, seed=9, samples=200)  # ~180 KB of rows a GPU: compressed on the loop
    uuid = api.get("/api/v1/gpus").json()["results"][0]["uuid"]
    tele = q(f"/api/v1/gpus/{uuid}/telemetry", limit="all", **WINDOW)
    gzip = {"Accept-Encoding": "gzip"}
    with pair_of(tmp_path, etcd, redis_server, pipeline, THROTTLE_READS="off") as pair:
        answered_from_memory(pair, tele, gzip)
        before = recalled(pair).get("sent", 0.0)
        pair.compare(tele, gzip)
        assert recalled(pair).get("sent", 0.0) == before + 1
        # its GPU written: the answer, built again, is past OFF_LOOP_SIZE (a thread compresses it)
        more = generated(
            hosts=1, gpus_per_host=2, samples=150, seed=9, start="2025-07-18T20:33:20Z"
        )
        job_seen_by_lane(pair, upload(api, more, "more.csv").json()["id"])
        # /metrics reads etcd too: what one scrape costs, measured by two in a row
        first = store_reads(pair)[1]
        per_scrape = store_reads(pair)[1] - first

        def given_from_memory() -> bool:
            hits, reads = store_reads(pair)
            ours, theirs = pair.ask(pair.lane, tele, gzip), pair.ask(pair.django, tele, gzip)
            assert ours == theirs and ours.status == 200
            now = store_reads(pair)
            if now[0] == hits:
                return False  # read from the store (the write not yet seen, or the rebuild)
            assert now[1] == reads + per_scrape, "a kept answer given, and the store read too"
            return True

        # the first answer from memory after the rebuild meets the noted request, which can
        # no longer send it plainly: the steps are given it (no store read), and then the
        # next asks take the steps from the start
        wait_for(given_from_memory, 30, "the rebuilt answer given from memory")
        stepped = recalled(pair).get("stepped", 0.0)
        for _ in range(3):
            assert given_from_memory()
        assert recalled(pair).get("stepped", 0.0) == stepped  # forgotten: not asked again
        assert recalled(pair).get("sent", 0.0) == before + 1


def test_recalled_requests_are_throttled_and_refused_as_django_does(
    loaded, pipeline, etcd, redis_server, tmp_path
):
    with pair_of(tmp_path, etcd, redis_server, pipeline, THROTTLE_READS="200/min") as pair:
        answered_from_memory(pair, loaded)  # both gateways count these asks alike
        statuses = {where: [] for where in (pair.lane, pair.django)}
        while len(statuses[pair.lane]) < 250 and 429 not in statuses[pair.lane]:
            for where, seen in statuses.items():
                seen.append(pair.ask(where, loaded).status)
        assert statuses[pair.lane] == statuses[pair.django]
        assert statuses[pair.lane][0] == 200 and statuses[pair.lane][-1] == 429
        assert recalled(pair).get("sent", 0.0) > 0  # the recall answered some of the 200s


def test_with_reads_behind_tokens_no_request_is_recalled(
    loaded, pipeline, etcd, redis_server, tmp_path
):
    token = make_token(etcd.url, redis_server.url)
    env = {"TELEMETRY_READ_AUTH": "true", "THROTTLE_READS": "off"}
    with pair_of(tmp_path, etcd, redis_server, pipeline, **env) as pair:
        answered_from_memory(pair, loaded, {"Authorization": f"Bearer {token}"})
        for _ in range(3):
            answer, _ = pair.compare(loaded)
            assert answer.status == 401
            answer, served = pair.compare(loaded, {"Authorization": f"Bearer {token}"})
            assert served and answer.status == 200
        assert recalled(pair).get("sent", 0.0) == 0
