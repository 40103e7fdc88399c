"""Typed store errors, and the one map from an error to the answer a client gets.

Every error a client may see carries its `answer` (HTTP status, the code GraphQL puts in
`extensions.code`, Retry-After): the store's errors here, ingest's own likewise (HeaderError,
TooLarge, NoRows, NothingAccepted, BrokerUnavailable). `answer_for` reads it, and each
transport calls it in one place: REST in apps/read/errors.py (DRF's exception handler, for the
ingest views too), GraphQL in apps/read/graphql_view.py, the dashboard's pages in
apps/read/dashboard.py. (The WebSocket feed never reads etcd: its only errors are the
client's commands, answered in apps/read/consumers.py.) An error without an answer is a bug:
the transport answers 500 as it would for any other.

>>> answer_for(StoreUnavailable("etcd is unavailable"))
Answer(status=503, code='UNAVAILABLE', retry_after=5)
>>> answer_for(KeyError("x")) is None
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Answer:
    status: int  # HTTP status
    code: str  # `extensions.code` in GraphQL errors
    retry_after: int | None = None  # seconds, for the Retry-After header


class StoreError(Exception):
    """Base of every error the store raises."""


class StoreUnavailable(StoreError):
    """etcd could not be reached or did not answer in time; the operation may be retried."""

    answer = Answer(503, "UNAVAILABLE", retry_after=5)


class NotFound(StoreError):
    """The object asked for does not exist."""

    answer = Answer(404, "NOT_FOUND")


class InvalidSegment(StoreError, ValueError):
    """A value cannot be used as an etcd key segment (empty, `/`, `..`, control chars, too long)."""

    answer = Answer(400, "BAD_ARGUMENT")


class OverBound(StoreError, ValueError):
    """A write would take a stored value past a stated bound: refused whole, never retried
    as an outage is. Raised by the workers' writes only: no client request meets it.
    `each` names the GPUs whose values they are ({uuid: message}), when GPUs'."""

    def __init__(self, message: str, each: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.each = each or {}


class Refused(StoreError, ValueError):
    """etcd refused the request itself (too large, too many operations, a key twice): no
    retry can make it pass, so it is never retried as an outage is. A request of ours
    that etcd refuses is a bug: no answer, so a transport answers 500."""


class Conflict(StoreError):
    """An optimistic update lost its race too many times."""

    answer = Answer(409, "CONFLICT")


def answer_for(exc: BaseException) -> Answer | None:
    """The answer `exc` declares (its class's `answer`), or None for any other error."""
    answer = getattr(exc, "answer", None)
    return answer if isinstance(answer, Answer) else None
