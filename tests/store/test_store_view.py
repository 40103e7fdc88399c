"""The store's watched view (store/view.py) vouches for kept answers only while it can: it
follows writes to the GPU they read, refuses at once when this process has seen a newer
revision than the watch delivered, refuses within READ_VIEW_LAG when its watch stalls
(writes it was not told of), and refuses every stamp from before a restarted watch."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from store import client, default_keys, kv, view
from store.errors import StoreUnavailable
from tests.helpers import wait_for

LAG_S = 0.6


@pytest.fixture
def watched(etcd_root, settings) -> view.View:
    settings.READ_VIEW_LAG = LAG_S
    view.reset()  # a view of its own: one a test stalled is not the next one's
    seen = view.get()
    assert seen is not None
    wait_for(lambda: seen.stamp(etcd_root) is not None, 10, "the view started")
    return seen


def put_elsewhere(etcd, key: str) -> None:
    """A write by another process: this one learns of it only through its watch."""
    code = (
        "import pyetcd, sys; host, port = sys.argv[1].rsplit(':', 1); "
        "pyetcd.client(host, int(port)).put(sys.argv[2], b'1')"
    )
    subprocess.run([sys.executable, "-c", code, etcd.url.removeprefix("http://"), key], check=True)


def stall(watched: view.View, monkeypatch) -> None:
    """The watch delivers nothing more (a stalled stream), as far as the view can tell."""
    monkeypatch.setattr(watched, "_apply", lambda events: None)


def test_a_write_to_a_gpu_ends_its_stamps_and_no_other_gpus(watched, etcd_root, etcd):
    keys = default_keys()
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    put_elsewhere(etcd, keys.blocks_prefix("GPU-a") + "0000000001000-0000000002000-x")
    wait_for(lambda: not watched.unchanged(etcd_root, stamp, "GPU-a"), 10, "GPU-a written")
    assert watched.unchanged(etcd_root, stamp, "GPU-b")  # another GPU's answer stands
    assert watched.unchanged(etcd_root, stamp, fleet=True)  # a block is not the fleet's
    put_elsewhere(etcd, keys.latest("GPU-b"))
    wait_for(lambda: not watched.unchanged(etcd_root, stamp, fleet=True), 10, "fleet written")
    assert not watched.unchanged(etcd_root, stamp, "GPU-b")
    # another root's writes are not this root's
    put_elsewhere(etcd, "/elsewhere/blocks/GPU-c/0000000001000-0000000002000-x")
    later = watched.stamp(etcd_root)
    assert later is not None
    put_elsewhere(etcd, "/elsewhere/latest/GPU-c")
    wait_for(lambda: watched.seen > later, 10, "the other root's write delivered")
    assert watched.unchanged(etcd_root, later, "GPU-c", fleet=True)


def test_a_revision_this_process_saw_first_is_waited_for(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    kv.put(default_keys().latest("GPU-a"), b"{}")  # answered at a revision the view lacks
    assert client.observed() > watched.seen
    assert watched.stamp(etcd_root) is None  # at once, whatever the lag
    assert not watched.unchanged(etcd_root, stamp, "GPU-z")


def test_a_stalled_watch_stops_vouching_within_the_lag(watched, etcd_root, etcd, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    stall(watched, monkeypatch)
    written = time.monotonic()
    put_elsewhere(etcd, default_keys().latest("GPU-a"))  # the view is never told
    wait_for(lambda: watched.stamp(etcd_root) is None, 10, "the stalled view refuses")
    assert time.monotonic() - written <= LAG_S + 0.5  # no later than the lag (and a margin)
    assert not watched.unchanged(etcd_root, stamp, "GPU-a")


def test_a_restarted_watch_refuses_the_stamps_made_before_it(watched, etcd_root, etcd):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None
    first = watched.start
    watched._stream.cancel()  # the stream breaks (etcd restarted, a network cut)
    put_elsewhere(etcd, default_keys().latest("GPU-a"))  # missed while it was down, maybe
    wait_for(lambda: watched.start > first, 10, "the watch followed again")
    wait_for(lambda: watched.stamp(etcd_root) is not None, 10, "the view confirmed again")
    assert not watched.unchanged(etcd_root, stamp, "GPU-z")  # nothing named it: still refused


def test_no_view_with_a_zero_lag_or_shards(etcd_root, settings):
    settings.READ_VIEW_LAG = 0
    assert view.get() is None
    settings.READ_VIEW_LAG = 1.0
    settings.ETCD_SHARDS = {"other": list(settings.ETCD_ENDPOINTS)}
    assert view.get() is None


def test_a_view_that_cannot_confirm_stops_vouching_within_the_lag(watched, etcd_root, monkeypatch):
    stamp = watched.stamp(etcd_root)
    assert stamp is not None

    def unreachable() -> int:
        raise StoreUnavailable("etcd is unavailable (the test cut it)")

    monkeypatch.setattr(kv, "revision", unreachable)  # the confirmations fail from now on
    cut = time.monotonic()
    wait_for(lambda: watched.stamp(etcd_root) is None, 10, "the unconfirmed view refuses")
    assert time.monotonic() - cut <= LAG_S + 0.5
    assert not watched.unchanged(etcd_root, stamp, "GPU-z")
