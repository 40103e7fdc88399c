"""Helpers shared by tests: polling with deadlines, never fixed sleeps."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(check: Callable[[], T], deadline_s: float = 60.0, what: str = "condition") -> T:
    """Call `check` until it returns something truthy; AssertionError at the deadline."""
    end = time.monotonic() + deadline_s
    last: T | None = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"{what} not reached within {deadline_s}s (last: {last!r})")


def wait_job_done(client, job_id: str, deadline_s: float = 90.0) -> dict:
    """Poll the job endpoint until its state is done (or fail on failed/deadline)."""

    def done() -> dict | None:
        body = client.get(f"/api/v1/ingest/jobs/{job_id}").json()
        assert body["state"] != "failed", body
        return body if body["state"] == "done" else None

    return wait_for(done, deadline_s, f"job {job_id} done")


def spy_calls(monkeypatch, owner: object, names: tuple[str, ...]) -> list[str]:
    """Names of the calls made from now on to these functions of `owner` (still made for real)."""
    made: list[str] = []
    for name in names:
        real = getattr(owner, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            made.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(owner, name, counted)
    return made


def txn_put_sizes(monkeypatch) -> list[int]:
    """The bytes each etcd transaction from now on puts (`kv.put_bytes`); still made for real."""
    from store import kv

    sizes: list[int] = []
    real = kv.txn

    def measured(compare, success, failure=()):
        sizes.append(sum(kv.put_bytes(op) for op in success))
        return real(compare, success, failure)

    monkeypatch.setattr(kv, "txn", measured)
    return sizes
