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
from types import SimpleNamespace

import pytest

from store import client, default_keys, kv, view
from store.errors import StoreUnavailable
from store.view import Verdict
from tests.helpers import wait_for

LAG_S = 0.6


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
    assert verdict("GPU-b") is not Verdict.CHANGED  # another GPU's answer stands
    assert verdict(fleet=True) is not Verdict.CHANGED  # a block is not the fleet's
    elsewhere.put(keys.latest("GPU-b"), b"{}")
    wait_for(lambda: verdict(fleet=True) is Verdict.CHANGED, 10, "the fleet written")
    assert verdict("GPU-b") is Verdict.CHANGED
    # another root's writes are not this root's, nor are upload jobs
    later = watched.stamp(etcd_root)
    assert later is not None
    elsewhere.put("/elsewhere/latest/GPU-c", b"{}")
    top = elsewhere.put(keys.job("j1"), b"{}")
    wait_for(lambda: watched.seen >= top, 10, "the writes delivered")
    assert watched.check(etcd_root, later, "GPU-c", fleet=True) is not Verdict.CHANGED


def test_a_revision_this_process_saw_first_is_waited_for(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    wait_for(lambda: time.monotonic() - watched.confirmed < LAG_S / 4, 10, "a fresh confirmation")
    kv.put(default_keys().latest("GPU-a"), b"{}")  # answered at a revision the view lacks
    assert client.observed() > watched.seen
    # at once: well within the lag since the last confirmation
    assert watched.check(etcd_root, stamp, "GPU-z") is Verdict.UNKNOWN
    assert time.monotonic() - watched.confirmed < LAG_S


def vouched_until(watched: view.View, root: str, made: view.Stamp) -> float:
    """Ask until the view stops vouching for `made`: the time of the last ask it vouched."""
    last = -1.0
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        asked = time.monotonic()
        verdict = watched.check(root, made, "GPU-z")
        if verdict is Verdict.UNKNOWN:
            return last
        assert verdict is Verdict.UNCHANGED
        last = asked
        time.sleep(0.01)
    raise AssertionError("the view kept vouching")


def test_a_stalled_watch_stops_vouching_within_the_lag(watched, etcd_root, elsewhere, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    elsewhere.put(default_keys().latest("GPU-y"), b"{}")  # this process is never told
    acknowledged = time.monotonic()
    # an answer kept misses no write acknowledged longer than the lag before it is asked
    assert vouched_until(watched, etcd_root, stamp) <= acknowledged + LAG_S


def test_a_view_that_cannot_confirm_stops_vouching_within_the_lag(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None

    def unreachable() -> int:
        raise StoreUnavailable("etcd is unavailable (the test cut it)")

    monkeypatch.setattr(watched, "_revision", unreachable)  # confirmations fail from now on
    cut = time.monotonic()
    assert vouched_until(watched, etcd_root, stamp) <= cut + LAG_S


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


def test_a_root_followed_while_a_batch_is_classified_refuses_its_earlier_stamps(
    watched, monkeypatch
):
    """Events are classified outside the view's lock: a root first followed meanwhile was
    not looked for in them, so its stamps from before the batch are refused."""
    made: list[view.Stamp | None] = []
    real = view.touched

    def classify(root: str, key: str):
        if not made:  # a reader follows a new root while the batch is being classified
            made.append(watched.stamp("/late-root"))
        return real(root, key)

    monkeypatch.setattr(view, "touched", classify)
    revision = watched.seen + 1
    event = SimpleNamespace(kv=SimpleNamespace(mod_revision=revision, key=b"/late-root/latest/G"))
    with watched._cond:
        watched._roots.setdefault("/some-root", watched.seen)  # something to classify for
    watched._apply([event])
    assert made and made[0] is not None and made[0].revision < revision
    assert watched.check("/late-root", made[0], "G") is Verdict.CHANGED


def test_stamps_of_a_store_before_a_restore_are_refused(watched, etcd_root, elsewhere, monkeypatch):
    """A restored store numbers its writes from a lower revision again: an answer kept at a
    higher one must not pass for a newer one."""
    elsewhere.put(default_keys().latest("GPU-a"), b"{}")
    wait_for(lambda: watched.seen > watched.start, 10, "a write delivered")
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    real = watched._revision
    restored = iter([stamp.revision - 1])  # the next follow starts below the stamp
    monkeypatch.setattr(watched, "_revision", lambda: next(restored, None) or real())
    first = watched.epoch
    watched._stream.cancel()
    wait_for(lambda: watched.epoch > first and watched.start, 10, "the watch followed again")
    assert watched.start < stamp.revision
    assert watched.stamp(etcd_root) is not None  # the root followed again
    assert watched.check(etcd_root, stamp, "GPU-z") is Verdict.CHANGED
