"""Work tried on the event loop: refused the moment it would wait or grow.

A read answered from memory (plans still fresh, columns cached) costs less than the
hop to a worker thread and back (docs/PERFORMANCE.md, issue 15: ~1 ms of a 3 ms
query on this machine). The read lane tries such a read on the event loop inside
`inline()`; everything that could keep the loop waiting (an etcd request, a fan-out
to shard threads, a long build another thread may hold the lock of) calls `check()`
first, and anything whose size follows the request calls `spend()`. In `inline()`,
both raise `WouldWait`, and the lane starts the request again on its threads: what
the first try did is dropped, not half-used (the caches it filled are keyed by
content, so they hold nothing the second try must not see).

`WouldWait` is a BaseException, as the event loop's own cancellation is: handlers that
turn failures into answers (`except Exception`) let it through.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

# Work units a try on the loop may spend (`spend`): the Prometheus API counts
# series x (steps + 64), so one GPU's metric over a day at 10 s steps (8,641 steps)
# or an instant query of ~150 series fits, a 64-GPU range query does not. Measured
# at ~0.1-0.3 us of CPU a unit on this machine: ~3 ms at most on the loop.
BUDGET = 10_000


class WouldWait(BaseException):
    """The work must wait or grow: run it again off the event loop."""


_budget: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar(
    "inline_budget", default=None
)


@contextlib.contextmanager
def inline(budget: int | None = None) -> Iterator[None]:
    """Run the block as a try on the event loop (see the module's text); BUDGET units."""
    token = _budget.set([BUDGET if budget is None else budget])
    try:
        yield
    finally:
        _budget.reset(token)


def active() -> bool:
    return _budget.get() is not None


def check(what: str) -> None:
    """Raise WouldWait inside `inline()`: `what` would wait (I/O, a thread, a lock)."""
    if _budget.get() is not None:
        raise WouldWait(what)


def spend(units: int) -> None:
    """Count `units` of work against the try's budget; WouldWait past it."""
    left = _budget.get()
    if left is not None:
        left[0] -= units
        if left[0] < 0:
            raise WouldWait("the work exceeds what a try on the event loop may take")
