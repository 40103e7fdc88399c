"""Block plans a caller lets lag (`plan_blocks(..., fresh_s)`, the Prometheus API's view of the
store) are reused without asking etcd for `fresh_s` after the store was seen at their revision,
never longer: a write then shows. Without `fresh_s`, every plan checks the revision (a write
shows at once). Real etcd; the clock is the seam (store/read.py::_Plans)."""

from __future__ import annotations

import pytest

from store import kv
from store.read import _Plans
from tests.store.test_series_columns import HOUR0, RAW, SPAN, write

FRESH_S = 1.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def revisions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every revision read from now on (still made for real)."""
    seen: list[int] = []
    real = kv.revision

    def spy() -> int:
        seen.append(real())
        return seen[-1]

    monkeypatch.setattr(kv, "revision", spy)
    return seen


def blocks(plans: _Plans, keys, fresh_s: float) -> int:
    return len(plans.get(keys, ["GPU-1"], *SPAN, RAW.window_ms, fresh_s)["GPU-1"])


def test_a_plan_lags_at_most_fresh_s_behind_the_store(cached_keys, revisions):
    clock = Clock()
    plans = _Plans(clock=clock)
    write(cached_keys, 0, [(HOUR0, "a", 1.0)])
    assert blocks(plans, cached_keys, FRESH_S) == 1  # read: the store seen now
    write(cached_keys, 1, [(HOUR0 + 2 * 3_600_000, "a", 2.0)])  # a block in another window
    clock.now += FRESH_S * 0.9
    assert blocks(plans, cached_keys, FRESH_S) == 1  # the lag the caller accepts
    assert revisions == []  # nothing asked of etcd
    clock.now += FRESH_S * 0.2
    assert blocks(plans, cached_keys, FRESH_S) == 2  # past it: checked, and read again
    assert len(revisions) == 1
    assert blocks(plans, cached_keys, FRESH_S) == 2 and len(revisions) == 1  # seen anew


def test_without_fresh_s_every_plan_checks_the_revision(cached_keys, revisions):
    plans = _Plans(clock=Clock())  # the clock never moves: only the check can see a write
    write(cached_keys, 0, [(HOUR0, "a", 1.0)])
    assert blocks(plans, cached_keys, 0.0) == 1
    assert blocks(plans, cached_keys, 0.0) == 1 and len(revisions) == 1  # same revision: reused
    write(cached_keys, 1, [(HOUR0 + 2 * 3_600_000, "a", 2.0)])
    assert blocks(plans, cached_keys, 0.0) == 2 and len(revisions) == 2


def test_a_check_that_finds_the_plan_current_makes_it_fresh_again(cached_keys, revisions):
    clock = Clock()
    plans = _Plans(clock=clock)
    write(cached_keys, 0, [(HOUR0, "a", 1.0)])
    blocks(plans, cached_keys, FRESH_S)
    clock.now += FRESH_S * 1.5
    assert blocks(plans, cached_keys, FRESH_S) == 1 and len(revisions) == 1  # checked: current
    clock.now += FRESH_S * 0.5
    assert blocks(plans, cached_keys, FRESH_S) == 1 and len(revisions) == 1  # fresh from then


def test_an_older_revision_seen_later_never_makes_a_plan_fresh(cached_keys):
    """etcd restored from a backup goes back in revisions: what was seen at the newer one
    is kept, so a check at the older one never extends a plan of the newer one (plans are
    fresh by their own reads then; docs/OPERATIONS.md: restart gateways after a restore)."""
    plans = _Plans(clock=Clock())
    store = ("etcd", "default")
    plans._saw(store, 50, 10.0)
    plans._saw(store, 40, 20.0)  # later, but an older revision
    assert plans._seen[store] == (50, 10.0)
    plans._saw(store, 50, 30.0)
    assert plans._seen[store] == (50, 30.0)


def test_a_plan_stays_fresh_by_its_own_read_when_another_span_sees_a_newer_revision(
    cached_keys, revisions
):
    clock = Clock()
    plans = _Plans(clock=clock)
    write(cached_keys, 0, [(HOUR0, "a", 1.0)])
    assert blocks(plans, cached_keys, FRESH_S) == 1  # read at R1
    write(cached_keys, 1, [(HOUR0 + 2 * 3_600_000, "a", 2.0)])  # R2
    wider = plans.get(cached_keys, ["GPU-1"], SPAN[0] - 3_600_000, SPAN[1], RAW.window_ms)
    assert len(wider["GPU-1"]) == 2  # another span, read at R2
    clock.now += FRESH_S * 0.5
    assert blocks(plans, cached_keys, FRESH_S) == 1  # read half a lag ago: still fresh
    assert revisions == []
