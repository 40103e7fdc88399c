"""Work tried on the event loop: refused the moment it would wait or grow.

A read answered from memory (plans still fresh, columns cached) costs less than the
hop to a worker thread and back (docs/PERFORMANCE.md, issue 15: ~1 ms of a 3 ms
query on this machine). The read lane tries such a read on the event loop inside
`inline()`; everything that could keep the loop waiting (an etcd request, a fan-out
to shard threads, a long build another thread may hold the lock of) calls `check()`
first, and every step whose cost follows the request (series matched, windows
gathered, samples formatted) calls `spend()` with its size *before* it starts. In
`inline()`, both raise `WouldWait` (so does any `spend` once the try has run
MAX_SECONDS), and the lane starts the request again on its threads: what the first
try did is dropped, not half-used (the caches it filled are keyed by content, so they
hold nothing the second try must not see).

`WouldWait` is a BaseException, as the event loop's own cancellation is: handlers that
turn failures into answers (`except Exception`) let it through.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

# Work units a try on the loop may spend: an array element a numpy step touches is 1, an
# item Python handles one by one is PER_ITEM. One GPU's metric over a day at 60 s steps,
# its windows gathered, or an instant query of ~100 series fits; a 64-GPU range query,
# a day-long window at every step, or a thousand samples formatted one by one do not.
BUDGET = 20_000
PER_ITEM = 20
# And a try stops at its next `spend` past this much time (what the units missed).
MAX_SECONDS = 0.005


class WouldWait(BaseException):
    """The work must wait or grow: run it again off the event loop."""


@dataclass
class _Try:
    left: int
    deadline: float
    later: list[Callable[[], object]] = field(default_factory=list)


_try: contextvars.ContextVar[_Try | None] = contextvars.ContextVar("inline_try", default=None)


@contextlib.contextmanager
def inline(budget: int | None = None) -> Iterator[None]:
    """Run the block as a try on the event loop (see the module's text); BUDGET units."""
    left = BUDGET if budget is None else budget
    held = _Try(left, time.perf_counter() + MAX_SECONDS)
    token = _try.set(held)
    try:
        yield
    finally:
        _try.reset(token)
    for step in held.later:  # the try answered: what it counted stands
        step()


def counted(step: Callable[[], object]) -> None:
    """Run `step` (a metric counted) now, or inside `inline()` once the try has answered: a
    try stopped by WouldWait is run again on a thread, which counts for itself."""
    held = _try.get()
    if held is None:
        step()
    else:
        held.later.append(step)


def check(what: str) -> None:
    """Raise WouldWait inside `inline()`: `what` would wait (I/O, a thread, a lock)."""
    if _try.get() is not None:
        raise WouldWait(what)


def spend(units: int) -> None:
    """Count `units` of work about to be done against the try's budget and time: WouldWait
    past either (before the work starts)."""
    held = _try.get()
    if held is None:
        return
    held.left -= units
    if held.left < 0:
        raise WouldWait("more work than a try on the event loop may take")
    if time.perf_counter() > held.deadline:
        raise WouldWait(f"a try on the event loop ran past {MAX_SECONDS * 1000:g} ms")
