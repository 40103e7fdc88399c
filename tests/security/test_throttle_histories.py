"""The throttles keep DRF's decisions with histories held, not pickled per request
(apps/accounts/throttles.py). Unit tests, no services: the gateways' throttle tests
(tests/security/test_throttle_address.py, tests/api/test_recalled_requests.py, the lane's)
run the same classes through real gateways."""

from __future__ import annotations

import random
import threading
import time
from array import array

import pytest
from django.core.cache.backends.locmem import LocMemCache
from django.test import override_settings
from rest_framework import throttling
from rest_framework.settings import api_settings
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from apps.accounts import throttles
from apps.read import views
from telemetry_site import recall


class _View(APIView):
    throttle_scope = "reads"


def _request(address: str = "10.0.0.9"):
    from rest_framework.request import Request

    return Request(APIRequestFactory().get("/x", REMOTE_ADDR=address))


def _asked(kind: type, clock: list[float], request) -> tuple[bool, float | None]:
    throttle = kind()
    throttle.timer = lambda: clock[0]
    allowed = throttle.allow_request(request, _View())
    return allowed, None if allowed else throttle.wait()


def _rate(monkeypatch, rate: str) -> None:
    # the rates are read once, when DRF's throttling module loads: set them where it looks
    monkeypatch.setattr(throttling.ScopedRateThrottle, "THROTTLE_RATES", {"reads": rate})


@pytest.fixture
def held():
    throttles.HISTORIES.clear()
    yield throttles.HISTORIES
    throttles.HISTORIES.clear()


def test_decisions_and_retry_after_are_drfs_on_the_same_clock(held, monkeypatch):
    """DRF's class on Django's LocMemCache and ours on held arrays, asked the same requests at
    the same times (bursts, pauses past the period, an exact boundary): the same answers."""
    monkeypatch.setattr(throttling.ScopedRateThrottle, "cache", LocMemCache("drf", {}))
    _rate(monkeypatch, "5/min")
    rng = random.Random(7)
    clock = [1_000.0]
    request = _request()
    decisions = {"drf": [], "ours": []}
    for _ in range(600):
        clock[0] += rng.choice([0.0, 0.01, 0.5, 3.0, 12.0, 60.0, 61.0])
        for name, kind in (
            ("drf", throttling.ScopedRateThrottle),
            ("ours", throttles.ScopedRateThrottle),
        ):
            decisions[name].append(_asked(kind, clock, request))
    assert decisions["ours"] == decisions["drf"]
    refused = [d for d in decisions["ours"] if not d[0]]
    assert refused and len(refused) < len(decisions["ours"])  # both outcomes were met
    assert all(wait is not None and 0 < wait <= 60 for _, wait in refused)


def test_a_history_is_held_by_reference_not_copied(held, monkeypatch):
    _rate(monkeypatch, "1000/min")
    clock = [50.0]
    request = _request()
    first = None
    for n in range(1, 40):
        clock[0] += 1.0
        assert _asked(throttles.ScopedRateThrottle, clock, request)[0]
        [(key, times)] = [(k, held.get(k)) for k in list(held._held)]
        first = first or times
        assert times is first and isinstance(times, array) and len(times) == n
    assert list(first) == sorted(first, reverse=True)  # newest first, as DRF keeps it
    assert held.bytes == throttles.OVERHEAD + len(key) + 8 * len(first)


def test_histories_are_bounded_least_recently_seen_out_first():
    histories = throttles.Histories(max_bytes=10 * (throttles.OVERHEAD + 8 * 10 + 2))
    for i in range(10):
        histories.set(f"k{i}", [float(t) for t in range(10)])
    assert len(histories) == 10
    histories.get("k0")  # seen again: the least recently seen is now k1
    histories.set("k10", [1.0] * 10)
    assert histories.get("k1") is None and histories.get("k0") is not None
    assert histories.bytes <= histories.max_bytes
    # a history larger than the whole bound: the others go, it stays (its caller is counted)
    histories.set("big", [1.0] * 10_000)
    assert len(histories) == 1 and len(histories.get("big")) == 10_000
    histories.set("small", [1.0])
    assert histories.get("big") is None and len(histories) == 1


def test_one_caller_from_many_threads_takes_each_place_once(held, monkeypatch):
    """Two requests of one caller at once (the lane on the event loop, a view on its thread):
    never both given the last place. The clock yields the GIL between DRF's read of the
    history and its write, where copies of it (LocMemCache) let every thread count from the
    same length."""

    def clock() -> float:
        # not a wait: a switch of threads mid-check, every time (sleep(0) may not switch)
        time.sleep(0.0005)
        return 10_000.0

    _rate(monkeypatch, "100/min")
    allowed: list[bool] = []
    request = _request("10.9.9.9")

    def hammer() -> None:
        for _ in range(60):
            throttle = throttles.ScopedRateThrottle()
            throttle.timer = clock
            allowed.append(throttle.allow_request(request, _View()))

    threads = [threading.Thread(target=hammer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(allowed) == 480 and sum(allowed) == 100


def test_the_site_throttles_with_held_histories_and_the_recall_notes_them():
    assert [throttles.ScopedRateThrottle] == api_settings.DEFAULT_THROTTLE_CLASSES
    view = views.GpuTelemetryView()
    assert [type(t) for t in view.get_throttles()] == [throttles.ScopedRateThrottle]
    assert recall._plain_checks(views.GpuTelemetryView)


def test_a_setting_change_forgets_every_history(held):
    held.set("k", [1.0, 2.0])
    with override_settings(REST_FRAMEWORK={"NUM_PROXIES": 1}):
        assert held.get("k") is None and held.bytes == 0
