"""A GET the read lane answered before, asked again with the same headers, is sent its kept
answer without the lane's request steps (telemetry_site/recall.py), and is still answered
as Django answers it: byte for byte, throttled and refused alike; a request differing in
anything the steps read (a header, the query, the scheme), carrying credentials, or for a
view whose checks read more of the request, takes the steps; a setting change forgets
every noted request; and the caller made from the scope is the one DRF's throttles would
count."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest
from django.core.handlers.asgi import ASGIRequest
from django.test import override_settings
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.throttling import ScopedRateThrottle

from apps.read import views
from telemetry_site import recall
from tests.api.test_kept_answers import WINDOW, answered_from_memory, load, q
from tests.api.test_read_lane import pair_of
from tests.security.conftest import make_token

RECALLED = re.compile(r'^telemetry_read_lane_recalled_total\{outcome="(\w+)"\} ([0-9.e+]+)$', re.M)
TELE = "/api/v1/gpus/GPU-1/telemetry"


def recalled(pair) -> dict[str, float]:
    text = pair.ask(pair.lane, "/metrics").body.decode()
    return {outcome: float(count) for outcome, count in RECALLED.findall(text)}


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


def test_credentials_other_checks_and_large_requests_are_never_noted():
    recalls = recall.Recalls()
    assert not noted(recalls, scope(authorization="Bearer x"))
    request = ASGIRequest(scope(), io.BytesIO())
    match = SimpleNamespace(func=SimpleNamespace(view_initkwargs={}), route="r")
    recalls.note(request, match, answer(views.GpuTelemetryView(), touched=False), closes=False)
    recalls.note(request, match, answer(views.GpuTelemetryView(), kept_key=None), closes=False)
    recalls.note(request, match, answer(views.GpuTelemetryView()), closes=True)
    assert recalls.get(scope()) is None

    class Strict(views.GpuTelemetryView):
        permission_classes = [IsAuthenticated]

    class Counted(views.GpuTelemetryView):
        throttle_classes = [type("Own", (ScopedRateThrottle,), {})]

    assert not noted(recalls, scope(), Strict)
    assert not noted(recalls, scope(), Counted)
    assert not noted(recalls, scope(user_agent="x" * recall.MAX_RECALL_BYTES))
    assert noted(recalls, scope(), views.GpuTelemetryView)


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


# --- on real gateways: the lane with recalls against Django ----------------------------
@pytest.fixture
def loaded(pipeline, api) -> str:
    load(api, seed=8)
    uuid = api.get("/api/v1/gpus").json()["results"][0]["uuid"]
    return q(f"/api/v1/gpus/{uuid}/telemetry", limit="all", **WINDOW)


def test_a_request_asked_again_alike_is_sent_without_the_steps_and_as_django_answers(
    loaded, pipeline, etcd, redis_server, tmp_path
):
    with pair_of(tmp_path, etcd, redis_server, pipeline, THROTTLE_READS="off") as pair:
        answered_from_memory(pair, loaded)  # compares with Django at every ask
        before = recalled(pair).get("sent", 0.0)
        for _ in range(3):
            answer, served = pair.compare(loaded)
            assert served and answer.status == 200
        assert recalled(pair).get("sent", 0.0) == before + 3
        # anything the steps read differing: the steps run, and answer as Django does
        for headers in (
            {"Host": "elsewhere.example"},  # not an allowed host: Django's 400
            {"Accept": "text/html"},  # DRF's browsable page
            {"Cookie": "sessionid=x"},
            {"Accept-Encoding": "gzip"},
        ):
            answer, _ = pair.compare(loaded, headers)
        assert recalled(pair).get("sent", 0.0) == before + 3


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
