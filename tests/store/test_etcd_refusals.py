"""A request etcd refuses as invalid (over its size limit) is `Refused`, not an outage:
`StoreUnavailable` is retried by the workers forever, and no retry can make it pass.
On real etcd."""

from __future__ import annotations

import grpc
import pytest

from store import kv
from store.errors import Refused, StoreUnavailable


def test_a_request_over_etcds_size_limit_is_refused_not_unavailable(etcd_root):
    with pytest.raises(Refused, match="request is too large") as info:
        kv.put(f"{etcd_root}/big", b"x" * 2_000_000)  # etcd's limit: 1.5 MiB
    assert not isinstance(info.value, StoreUnavailable)
    assert isinstance(info.value, ValueError)  # what the chunk task records, never retries
    assert kv.get(f"{etcd_root}/big") is None
    kv.put(f"{etcd_root}/small", b"x")  # etcd is fine
    assert kv.get(f"{etcd_root}/small").value == b"x"


class _Answer(grpc.RpcError):
    """What gRPC raises for an etcd answer (a unit seam: etcd's auth is not enabled here)."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


@pytest.mark.parametrize(
    ("code", "details", "refused"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: request is too large", True),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: too many operations in txn request", True),
        # answered INVALID_ARGUMENT too, but a retry (or new credentials) makes them pass
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: revision of auth store is old", False),
        (grpc.StatusCode.INVALID_ARGUMENT, "etcdserver: authentication failed", False),
        (grpc.StatusCode.UNAVAILABLE, "connection refused", False),
    ],
)
def test_only_requests_that_can_never_pass_are_refused(code, details, refused):
    with pytest.raises(Refused if refused else StoreUnavailable), kv.translated():
        raise _Answer(code, details)
