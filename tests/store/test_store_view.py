"""The store's watched view (store/view.py) vouches for kept answers only while it can: it
follows writes to the GPU they read (not other GPUs', nor other roots'), cannot vouch at once
when this process has seen a newer revision than the watch delivered, nor later than
READ_VIEW_LAG after its watch stalls or its confirmations fail, and refuses every stamp made
before a restarted watch."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from collections.abc import Iterator

import pytest

from store import client, default_keys, kv, view
from store.errors import StoreUnavailable
from store.view import Verdict
from tests.helpers import wait_for

LAG_S = 0.6
MARGIN_S = 0.3  # a confirmation's round trip and the polling's step


@pytest.fixture
def watched(etcd_root, settings) -> Iterator[view.View]:
    settings.READ_VIEW_LAG = LAG_S  # (a setting changed: any view of before is stopped)
    kv.revision()  # the process's client, which the view follows (it never connects)
    seen = view.get()
    assert seen is not None
    wait_for(lambda: fresh(seen, etcd_root), 10, "the view vouches")
    wait_for(lambda: seen._stream is not None, 10, "the watch is open")
    yield seen
    view.reset()


def fresh(seen: view.View, root: str) -> bool:
    stamp = seen.stamp(root)
    return stamp is not None and seen.check(root, stamp) is Verdict.UNCHANGED


class Elsewhere:
    """Another etcd client (etcd's own JSON gateway): its writes reach this process only
    through the view's watch."""

    def __init__(self, url: str) -> None:
        self.url = url if "://" in url else f"http://{url}"

    def _call(self, path: str, body: dict) -> dict:
        request = urllib.request.Request(f"{self.url}/v3/kv/{path}", json.dumps(body).encode())
        with urllib.request.urlopen(request, timeout=10) as answer:
            return json.loads(answer.read())

    def put(self, key: str, value: bytes) -> int:
        text = {"key": base64.b64encode(key.encode()).decode()}
        answer = self._call("put", {**text, "value": base64.b64encode(value).decode()})
        return int(answer["header"]["revision"])


@pytest.fixture
def elsewhere(etcd) -> Elsewhere:
    return Elsewhere(etcd.url)


def stall(watched: view.View, monkeypatch) -> None:
    """The watch delivers nothing more (a stalled stream), as far as the view can tell."""
    monkeypatch.setattr(watched, "_apply", lambda events: None)


def test_a_write_to_a_gpu_ends_its_stamps_and_no_other_gpus(watched, etcd_root, elsewhere):
    keys = default_keys()
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    elsewhere.put(keys.blocks_prefix("GPU-a") + "0000000001000-0000000002000-x", b"1")

    def verdict(uuid: str | None = None, fleet: bool = False) -> Verdict:
        return watched.check(etcd_root, stamp, uuid, fleet)

    wait_for(lambda: verdict("GPU-a") is Verdict.CHANGED, 10, "GPU-a written")
    wait_for(lambda: verdict("GPU-b") is Verdict.UNCHANGED, 10, "the view vouches again")
    assert verdict(fleet=True) is Verdict.UNCHANGED  # a block is not the fleet's
    elsewhere.put(keys.latest("GPU-b"), b"{}")
    wait_for(lambda: verdict(fleet=True) is Verdict.CHANGED, 10, "the fleet written")
    assert verdict("GPU-b") is Verdict.CHANGED
    # another root's writes are not this root's, nor are upload jobs
    later = watched.stamp(etcd_root)
    assert later is not None
    elsewhere.put("/elsewhere/latest/GPU-c", b"{}")
    top = elsewhere.put(keys.job("j1"), b"{}")
    wait_for(lambda: watched.seen >= top, 10, "the writes delivered")
    wait_for(lambda: fresh(watched, etcd_root), 10, "the view vouches again")
    assert watched.check(etcd_root, later, "GPU-c", fleet=True) is Verdict.UNCHANGED


def test_a_revision_this_process_saw_first_is_waited_for(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    kv.put(default_keys().latest("GPU-a"), b"{}")  # answered at a revision the view lacks
    assert client.observed() > watched.seen
    assert watched.check(etcd_root, stamp, "GPU-z") is Verdict.UNKNOWN  # at once


def test_a_stalled_watch_stops_vouching_within_the_lag(watched, etcd_root, elsewhere, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    before = time.monotonic()
    elsewhere.put(default_keys().latest("GPU-a"), b"{}")  # this process is never told
    wait_for(
        lambda: watched.check(etcd_root, stamp, "GPU-a") is Verdict.UNKNOWN,
        10,
        "the stalled view stops vouching",
    )
    assert time.monotonic() - before <= LAG_S + MARGIN_S  # acknowledged after `before`


def test_a_view_that_cannot_confirm_stops_vouching_within_the_lag(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None

    def unreachable() -> int:
        raise StoreUnavailable("etcd is unavailable (the test cut it)")

    monkeypatch.setattr(watched, "_revision", unreachable)  # confirmations fail from now on
    cut = time.monotonic()
    wait_for(
        lambda: watched.check(etcd_root, stamp, "GPU-z") is Verdict.UNKNOWN,
        10,
        "the unconfirmed view stops vouching",
    )
    assert time.monotonic() - cut <= LAG_S + MARGIN_S


def test_a_restarted_watch_refuses_the_stamps_made_before_it(
    watched, etcd_root, elsewhere, monkeypatch
):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    first = watched.start
    stall(watched, monkeypatch)
    elsewhere.put(default_keys().latest("GPU-a"), b"{}")  # missed: the stream is about to break
    monkeypatch.undo()
    watched._stream.cancel()  # the stream breaks (etcd restarted, a network cut)
    wait_for(lambda: watched.start > first, 10, "the watch followed again")
    wait_for(lambda: fresh(watched, etcd_root), 10, "the view vouches again")
    assert watched.check(etcd_root, stamp, "GPU-z") is Verdict.CHANGED  # whatever it names


def test_no_view_with_a_zero_lag_or_shards(watched, settings):
    settings.READ_VIEW_LAG = 0
    assert view.get() is None
    assert watched._stop.is_set()  # the view of before is stopped
    settings.READ_VIEW_LAG = 1.0
    settings.ETCD_SHARDS = {"other": list(settings.ETCD_ENDPOINTS)}
    assert view.get() is None
