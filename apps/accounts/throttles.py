"""DRF's rate throttles, with each caller's history held as an array in process memory.

DRF keeps a caller's history (the times of its requests within the rate's period) in
Django's cache: here the default, LocMemCache, which pickles the whole list at every
request's `set` and unpickles it at every `get`. So a request cost CPU in proportion to
how many the caller had made in the period: at the `reads` scope's 6,000/min, a caller
near its limit spent ~300 µs in the throttle alone, and a refused request ~220 µs
(measured: bench/throttle.py), more than the rest of an answer given again from memory,
and ten times that with a rate ten times higher. Here the history is an `array('d')` held
by reference: a request drops the times past the period (from the end, each time once)
and adds its own (at the front, a move of 8 bytes per time held). The decisions, keys,
rates and Retry-After are DRF's own code, unchanged.

A caller's check and update run under one lock: two requests of one caller at once
(the read lane on the event loop, a Django view on its thread) never both take the last
place, which LocMemCache's copies allowed.

Bounded: MAX_BYTES a process (8 bytes a time held, and OVERHEAD a caller), callers least
recently seen dropped first; a dropped caller starts over, as LocMemCache's cull made it.
The caller just counted is never the one dropped, so a rate allowing more than MAX_BYTES
of history still throttles (the bound is then MAX_BYTES plus that caller's history).
A setting change (tests) forgets every history.

Password checks are paced here too (`login_refusal`): Django checks a login's password
with PBKDF2 at 1,000,000 iterations, ~0.5 s of CPU, and for an unknown user as well (so
that the time tells nothing), so any anonymous POST to the admin's login page spent half
a second of a core. Each client address has THROTTLE_LOGINS attempts (10/min), the whole
process THROTTLE_LOGINS_PROCESS (30/min: at most ~0.25 of a core in password checks,
however many addresses ask); past either, 429 before the password is looked at, and
neither counts the attempt. Their histories are kept apart (LOGIN_HISTORIES, 4 MiB), so
that no flood of other requests can push the process's count out.
"""

from __future__ import annotations

import math
import threading
from array import array
from collections import OrderedDict
from typing import Any

from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from rest_framework import throttling

MAX_BYTES = 32 * 1024 * 1024
OVERHEAD = 384  # a caller's key, its array object and its place in the order (~340 measured)


class Histories:
    """What DRF's SimpleRateThrottle asks of its cache (`get`, `set`), held by reference."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.lock = threading.RLock()
        self._held: OrderedDict[str, tuple[array, int]] = OrderedDict()
        self.bytes = 0

    def get(self, key: str, default: Any = None) -> Any:
        with self.lock:
            held = self._held.get(key)
            if held is None:
                return default
            self._held.move_to_end(key)
            return held[0]

    def set(self, key: str, history: Any, timeout: float | None = None) -> None:
        times = history if isinstance(history, array) else array("d", history)
        size = OVERHEAD + len(key) + times.itemsize * len(times)
        with self.lock:
            old = self._held.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self._held[key] = (times, size)
            self.bytes += size
            while self.bytes > self.max_bytes and len(self._held) > 1:
                _, (_, dropped) = self._held.popitem(last=False)
                self.bytes -= dropped

    def clear(self) -> None:
        with self.lock:
            self._held.clear()
            self.bytes = 0

    def __len__(self) -> int:
        return len(self._held)


HISTORIES = Histories()


class _Held:
    """DRF's throttle code on HISTORIES, a caller's check and update under its lock."""

    cache: Any = HISTORIES

    def allow_request(self, request: Any, view: Any) -> bool:
        with self.cache.lock:
            return super().allow_request(request, view)  # type: ignore[misc]

    def wait(self) -> float | None:
        with self.cache.lock:  # the history may be changed by another request meanwhile
            return super().wait()  # type: ignore[misc]


class ScopedRateThrottle(_Held, throttling.ScopedRateThrottle):
    """DRF's ScopedRateThrottle (the view's `throttle_scope`, per user or client address)."""


class AnonRateThrottle(_Held, throttling.AnonRateThrottle):
    """DRF's AnonRateThrottle."""


class UserRateThrottle(_Held, throttling.UserRateThrottle):
    """DRF's UserRateThrottle."""


# Login histories apart: a flood of reads from ever new addresses must not push the
# process's login count out of memory (and with it, the bound on password checks).
LOGIN_HISTORIES = Histories(4 * 1024 * 1024)


class LoginThrottle(_Held, throttling.SimpleRateThrottle):
    """Password checks asked by one client address (as the others key it: NUM_PROXIES)."""

    cache = LOGIN_HISTORIES
    scope = "logins"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class ProcessLoginThrottle(_Held, throttling.SimpleRateThrottle):
    """Password checks asked of this process, by every address together."""

    cache = LOGIN_HISTORIES
    scope = "logins-process"

    def get_cache_key(self, request: Any, view: Any) -> str:
        return self.cache_format % {"scope": self.scope, "ident": "all"}


_LOGIN_REFUSALS = (
    (LoginThrottle, "too many login attempts from your address"),
    (ProcessLoginThrottle, "too many login attempts on this server"),
)


def login_refusal(request: HttpRequest) -> HttpResponse | None:
    """429 when a password check now would pass either login rate, and then neither counts
    it (an address refused by the process's rate keeps its own attempts); None when it may
    run, counted by both."""
    throttles = [(kind(), message) for kind, message in _LOGIN_REFUSALS]
    with LOGIN_HISTORIES.lock:
        counted = [(t, m) for t, m in throttles if t.rate is not None]
        full = [(_wait(t), m) for t, m in counted if not _has_room(t, request)]
        if full:  # the longest wait: a retry after the shorter one would be refused again
            return _too_many(*max(full))
        for throttle, _ in counted:
            throttle.throttle_success()
    return None


def _has_room(throttle: throttling.SimpleRateThrottle, request: HttpRequest) -> bool:
    """DRF's allow_request up to its decision, counting nothing: the history read and its
    times past the period dropped, as DRF drops them."""
    throttle.key = throttle.get_cache_key(request, None)
    throttle.history = throttle.cache.get(throttle.key, [])
    throttle.now = throttle.timer()
    while throttle.history and throttle.history[-1] <= throttle.now - throttle.duration:
        throttle.history.pop()
    return len(throttle.history) < throttle.num_requests


def _wait(throttle: throttling.SimpleRateThrottle) -> int:
    wait = throttle.wait()
    return max(1, math.ceil(wait if wait is not None else throttle.duration))


def _too_many(after: int, message: str) -> HttpResponse:
    response = HttpResponse(
        f"{message}: retry in {after} s\n", status=429, content_type="text/plain"
    )
    response["Retry-After"] = str(after)
    return response


def _forget(**kwargs: Any) -> None:
    if kwargs.get("setting") == "REST_FRAMEWORK":
        HISTORIES.clear()
        LOGIN_HISTORIES.clear()


setting_changed.connect(_forget)
