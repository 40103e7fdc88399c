"""One etcd client per shard and process, created on first use.

The client of the current shard (store/shards.py) is returned; the `default`
shard is ETCD_ENDPOINTS. gRPC channels do not survive fork while in use, so a
client is never made at import time; a process that finds a client made by its parent (pid differs)
drops it and makes its own. Celery children also call `reset()` from
`worker_process_init`.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any

import pyetcd
from django.conf import settings
from pyetcd import exceptions as etcd_exc

from store import inline, shards
from store.errors import StoreUnavailable

# etcd answers up to the request limit; ranges of many blocks can be larger than
# gRPC's 4 MiB default receive size.
_GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 256 * 1024 * 1024),
    ("grpc.max_send_message_length", 16 * 1024 * 1024),
    # gRPC's reconnect backoff grows to 120 s: after an etcd outage the client would
    # keep failing long after etcd is back (measured: 25 s after a 45 s outage).
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 2000),
]
# pyetcd marks a failed endpoint unusable for `time_retry` seconds (default 300):
# keep it short so a restarted etcd is used again at once.
_ENDPOINT_RETRY_S = 0.5


class _Client(pyetcd.MultiEndpointEtcd3Client):
    """pyetcd's client, plus: a request that meets a member gone away is sent once more,
    to another member.

    pyetcd's failover only moves the *next* request; the one that met the dead member
    fails. Measured: an upload in flight when the member its gateway used was killed
    answered 503, two members of three being up (tests/faults/test_fault_etcd_leader.py).
    Only UNAVAILABLE is sent again (connection refused or reset, a member without a
    leader), never a timeout, so the worst-case latency does not grow; and only when
    another member is not marked failed, so one member alone is never asked twice. Safe
    because every write the store sends is idempotent or guarded by compares.
    """

    @pyetcd.MultiEndpointEtcd3Client._handle_errors
    def txn_request(self, request: Any) -> Any:
        """Send a TxnRequest built by store/kv.py as it is (pyetcd's `transaction` cannot ask
        for counts only); the response as etcd gives it. Errors and failover as pyetcd's."""
        return self.kvstub.Txn(
            request, self.timeout, credentials=self.call_credentials, metadata=self.metadata
        )


def _once_more_elsewhere(name: str) -> Callable[..., Any]:
    method = getattr(_Client, name)  # pyetcd's, or one of ours above

    @functools.wraps(method)
    def call(self: _Client, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = method(self, *args, **kwargs)
        except etcd_exc.ConnectionFailedError:
            # pyetcd has just marked the member in use failed; is there another?
            if not self.failover or all(ep.is_failed() for ep in self.endpoints.values()):
                raise
            answer = method(self, *args, **kwargs)
        header = getattr(answer, "header", None)
        if header is not None:
            _saw(self, int(header.revision))
        return answer

    return call


_observed_lock = threading.Lock()
_observed: tuple[int, int] = (0, 0)  # (id of the default shard's client, revision)


def _saw(used: Any, revision: int) -> None:
    """Note the revision an answer of the default shard's etcd was given at."""
    global _observed
    if _clients.get(shards.DEFAULT) is not used:
        return
    with _observed_lock:
        if _observed[0] != id(used) or revision > _observed[1]:
            _observed = (id(used), revision)


def _forget_observed() -> None:
    global _observed
    with _observed_lock:
        _observed = (0, 0)


def observed() -> int:
    """The newest revision this process has been answered at by the default shard's etcd
    (its client of now; 0 before any answer): a read served from memory must not be older
    than what this process has already seen (store/view.py)."""
    current = _clients.get(shards.DEFAULT)
    with _observed_lock:
        held, revision = _observed
    return revision if current is not None and held == id(current) else 0


# The RPCs store/kv.py makes (get, get_prefix and get_range call the *_response ones).
for _name in (
    "get_response",
    "get_prefix_response",
    "get_range_response",
    "put",
    "delete_prefix",
    "status",
    "transaction",
    "txn_request",
    "lease",
    "revoke_lease",
    "defragment",
):
    setattr(_Client, _name, _once_more_elsewhere(_name))

_lock = threading.Lock()
_clients: dict[str, pyetcd.MultiEndpointEtcd3Client] = {}
_pid: int | None = None


def _endpoints(shard: str) -> list[pyetcd.Endpoint]:
    creds = None
    if settings.ETCD_CA_CERT:
        creds = pyetcd.MultiEndpointEtcd3Client.get_secure_creds(
            settings.ETCD_CA_CERT, settings.ETCD_KEY or None, settings.ETCD_CERT or None
        )
    endpoints = []
    for item in shards.endpoints(shard):
        host, _, port = item.removeprefix("http://").removeprefix("https://").rpartition(":")
        if not host or not port.isdigit():
            raise StoreUnavailable(f"etcd shard {shard!r}: endpoint {item!r} is not host:port")
        endpoints.append(
            pyetcd.Endpoint(
                host,
                int(port),
                secure=creds is not None,
                creds=creds,
                time_retry=_ENDPOINT_RETRY_S,
                opts=_GRPC_OPTIONS,
            )
        )
    return endpoints


def _connect(shard: str) -> pyetcd.MultiEndpointEtcd3Client:
    from store.kv import translated

    with translated("connect"):
        return _Client(
            endpoints=_endpoints(shard),
            timeout=settings.ETCD_TIMEOUT,
            user=settings.ETCD_USER or None,
            password=settings.ETCD_PASSWORD or None,
            failover=True,
        )


def get() -> pyetcd.MultiEndpointEtcd3Client:
    """This process's client of the current shard; thread-safe (gRPC channels are)."""
    global _pid
    shard = shards.current()
    pid = os.getpid()
    client = _clients.get(shard)
    if client is not None and _pid == pid:
        return client
    inline.check("connecting to etcd")  # another thread may hold the lock while it connects
    with _lock:
        if _pid != pid:
            _clients.clear()  # made by the parent before fork: never used, never closed here
            _pid = pid
            _forget_observed()
        if shard not in _clients:
            _clients[shard] = _connect(shard)
        return _clients[shard]


def existing() -> pyetcd.MultiEndpointEtcd3Client | None:
    """This process's client of the default shard if one was made; never connects."""
    return _clients.get(shards.DEFAULT) if _pid == os.getpid() else None


def reset() -> None:
    """Forget every client (after fork, or when settings change in tests).

    An inherited client is dropped without closing: closing a channel that the
    parent still uses can hang in the child.
    """
    global _pid
    from store import view  # (it imports this module)

    view.reset()  # it follows a client about to be closed
    with _lock:
        _forget_observed()
        if _pid == os.getpid():
            for client in _clients.values():
                client.close()
        _clients.clear()
        _pid = None
    shards.forget()
