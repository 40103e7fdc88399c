"""Thin, error-translating wrappers over the etcd client (the only module calling it)."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

import grpc
import pyetcd
from pyetcd import etcdrpc as etcd_rpc
from pyetcd import exceptions as etcd_exc
from pyetcd import utils as etcd_utils

from observability.metrics import ETCD_ERRORS, ETCD_SECONDS, child
from store import client, inline, shards
from store.errors import Conflict, Refused, StoreUnavailable

R = TypeVar("R")

# etcd's own limits (--max-txn-ops 128, --max-request-bytes 1.5 MiB): stay below.
MAX_TXN_OPS = 120
MAX_TXN_BYTES = 1024 * 1024

_UNAVAILABLE = (
    etcd_exc.ConnectionFailedError,
    etcd_exc.ConnectionTimeoutError,
    etcd_exc.NoServerAvailableError,
    etcd_exc.InternalServerError,
    grpc.RpcError,
)


@contextlib.contextmanager
def translated(op: str = "other") -> Iterator[None]:
    """Turn client and gRPC failures into StoreUnavailable (Refused when etcd refused the
    request itself); time the request as `op`. Refused inside `inline.inline()`: a
    request waits on etcd."""
    inline.check(f"etcd {op}")
    started = time.perf_counter()
    try:
        yield
    except _UNAVAILABLE as exc:
        child(ETCD_ERRORS, op).inc()
        if _invalid(exc):  # retrying cannot help
            raise Refused(f"{_which()} refused the request: {exc.details()}") from exc  # type: ignore[attr-defined]
        reason = f"{type(exc).__name__} {exc}".strip()
        raise StoreUnavailable(f"{_which()} is unavailable: {reason}") from exc
    except ValueError as exc:
        # pyetcd raises ValueError('Trying to use a failed node') while an endpoint rests.
        if "failed node" in str(exc):
            child(ETCD_ERRORS, op).inc()
            raise StoreUnavailable(f"{_which()} is unavailable: every endpoint failed") from exc
        raise
    finally:
        child(ETCD_SECONDS, op).observe(time.perf_counter() - started)


# What etcd answers (INVALID_ARGUMENT) to a request that can never pass. Not every
# INVALID_ARGUMENT: failed authentication and "revision of auth store is old" (which
# etcd's own client retries) are answered so too, and stay StoreUnavailable.
_REFUSALS = (
    "request is too large",
    "too many operations in txn request",
    "duplicate key given in txn request",
)


def _invalid(exc: Exception) -> bool:
    """etcd refused the request itself (one of _REFUSALS): etcd is fine."""
    if not isinstance(exc, grpc.RpcError) or not callable(getattr(exc, "code", None)):
        return False
    if exc.code() != grpc.StatusCode.INVALID_ARGUMENT:  # type: ignore[attr-defined]
        return False
    details = str(exc.details() or "")  # type: ignore[attr-defined]
    return any(refusal in details for refusal in _REFUSALS)


def _which() -> str:
    """How errors name the etcd: `etcd`, or `etcd shard 'prod-b'` once shards exist."""
    return "etcd" if len(shards.names()) == 1 else f"etcd shard {shards.current()!r}"


@dataclass(frozen=True, slots=True)
class Item:
    key: str
    value: bytes
    mod_revision: int
    version: int


def _item(value: bytes, meta: Any) -> Item:
    return Item(meta.key.decode(), value, meta.mod_revision, meta.version)


def get(key: str) -> Item | None:
    with translated("get"):
        value, meta = client.get().get(key)
    return None if meta is None else _item(value, meta)


def get_prefix(prefix: str) -> list[Item]:
    with translated("get_prefix"):
        return [_item(v, m) for v, m in client.get().get_prefix(prefix)]


def get_range(start: str, end: str) -> list[Item]:
    with translated("get_range"):
        return [_item(v, m) for v, m in client.get().get_range(start, end)]


class Together(NamedTuple):
    found: dict[str, Item]  # the keys asked for, by key (absent ones left out)
    ranged: list[list[Item]]  # each range's items
    listed: list[list[KeyInfo]]  # each listed range's keys, without values


def get_together(
    keys: Sequence[str],
    ranges: Sequence[tuple[str, str]],
    listed: Sequence[tuple[str, str]] = (),
) -> Together:
    """Some keys, some [start, end) ranges, and the keys (no values) of `listed` ranges, all
    read at one revision in one round trip."""
    # the request built and the answer read here, not by pyetcd (a third of the client's
    # own time on a small read: its op objects, and metadata objects per key read)
    ops = [etcd_rpc.RequestOp(request_range=etcd_rpc.RangeRequest(key=k.encode())) for k in keys]
    ops += [_range_op(start.encode(), end.encode()) for start, end in ranges]
    ops += [_range_op(start.encode(), end.encode(), keys_only=True) for start, end in listed]
    with translated("get_together"):
        response = client.get().txn_request(etcd_rpc.TxnRequest(success=ops))
    answers = [r.response_range for r in response.responses]
    found = [_items(a) for a in answers[: len(keys) + len(ranges)]]
    return Together(
        {i.key: i for got in found[: len(keys)] for i in got},
        found[len(keys) :],
        [_key_infos(a.kvs) for a in answers[len(found) :]],
    )


def _items(found: Any) -> list[Item]:
    return [Item(kv.key.decode(), kv.value, kv.mod_revision, kv.version) for kv in found.kvs]


@dataclass(frozen=True, slots=True)
class Ranges:
    """What `get_ranges_since` found: each range's items (None when unchanged since the
    revision asked about), each range's key count, the revision read at and the etcd
    cluster that answered (a revision means nothing to another cluster)."""

    items: list[list[Item]] | None
    counts: tuple[int, ...]
    revision: int
    cluster: int


def get_ranges_since(ranges: Sequence[tuple[str, str]], revision: int | None) -> Ranges:
    """[start, end) ranges at one revision in one round trip: their items, or only their
    key counts when no key in them was created or changed after `revision` (None: always
    the items). The caller compares the counts with its own to see a deletion."""
    spans = [(start.encode(), end.encode()) for start, end in ranges]
    compare = [] if revision is None else [cmp_range_unchanged(s, e, revision) for s, e in ranges]
    full = [_range_op(start, end) for start, end in spans]
    request = etcd_rpc.TxnRequest(
        compare=[c.build_message() for c in compare],
        success=full if revision is None else [_range_op(s, e, True) for s, e in spans],
        failure=full,
    )
    with translated("get_ranges_since"):
        response = client.get().txn_request(request)
    found = [r.response_range for r in response.responses]
    counts = tuple(int(f.count) for f in found)
    header = response.header
    if revision is not None and response.succeeded:
        return Ranges(None, counts, int(header.revision), int(header.cluster_id))
    items = [_items(f) for f in found]
    return Ranges(items, counts, int(header.revision), int(header.cluster_id))


def _range_op(start: bytes, end: bytes, count_only: bool = False, keys_only: bool = False) -> Any:
    request = etcd_rpc.RangeRequest(
        key=start, range_end=end, count_only=count_only, keys_only=keys_only
    )
    return etcd_rpc.RequestOp(request_range=request)


def _count_op(prefix: str) -> Any:
    """A count-only read of the keys under `prefix`, as a transaction op."""
    return _range_op(prefix.encode(), prefix_end(prefix).encode(), count_only=True)


def get_counting(
    wanted: Sequence[tuple[str, Sequence[str]]],
) -> dict[str, tuple[Item | None, list[int]]]:
    """Keys, each with how many keys its prefixes hold, read with them in one transaction
    (at one revision): one round trip per MAX_TXN_OPS reads, a key never split from its
    counts. {key: (item or None, counts)}."""
    answers: dict[str, tuple[Item | None, list[int]]] = {}
    for batch in _whole_groups(wanted, MAX_TXN_OPS):
        ops = []
        for key, prefixes in batch:
            ops.append(etcd_rpc.RequestOp(request_range=etcd_rpc.RangeRequest(key=key.encode())))
            ops += [_count_op(p) for p in prefixes]
        with translated("get_counting"):
            responses = iter(client.get().txn_request(etcd_rpc.TxnRequest(success=ops)).responses)
        for key, prefixes in batch:
            found = _items(next(responses).response_range)
            counts = [int(next(responses).response_range.count) for _ in prefixes]
            answers[key] = (found[0] if found else None, counts)
    return answers


def _whole_groups(
    wanted: Sequence[tuple[str, Sequence[str]]], most: int
) -> list[list[tuple[str, Sequence[str]]]]:
    """`wanted` cut into batches of at most `most` reads (a key and its prefixes each),
    never cutting one key's reads apart."""
    batches: list[list[tuple[str, Sequence[str]]]] = [[]]
    size = 0
    for key, prefixes in wanted:
        reads = 1 + len(prefixes)
        if batches[-1] and size + reads > most:
            batches.append([])
            size = 0
        batches[-1].append((key, prefixes))
        size += reads
    return [b for b in batches if b]


def count_prefixes(prefixes: Sequence[str]) -> list[int]:
    """How many keys each prefix holds: one round trip per MAX_TXN_OPS prefixes."""
    counts: list[int] = []
    for at in range(0, len(prefixes), MAX_TXN_OPS):
        ops = [_count_op(p) for p in prefixes[at : at + MAX_TXN_OPS]]
        with translated("count_prefixes"):
            response = client.get().txn_request(etcd_rpc.TxnRequest(success=ops))
        counts += [int(r.response_range.count) for r in response.responses]
    return counts


def count_prefix(prefix: str) -> int:
    with translated("count_prefix"):
        return int(client.get().get_prefix_response(prefix, count_only=True).count)


def put(key: str, value: bytes) -> None:
    with translated("put"):
        client.get().put(key, value)


def put_revision(key: str, value: bytes) -> int:
    """Put and return the store revision of that write: unique and increasing."""
    with translated("put"):
        response = client.get().put(key, value)
    return int(response.header.revision)


def delete_prefix(prefix: str) -> None:
    with translated("delete_prefix"):
        client.get().delete_prefix(prefix)


def status() -> dict[str, Any]:
    with translated("status"):
        st = client.get().status()
    return {"version": st.version, "db_size": st.db_size, "raft_index": st.raft_index}


def check() -> dict[str, Any]:
    """The readiness check of etcd (observability.health.ready_view): never raises.

    With shards, every shard is checked and `shards` holds each one's answer. The
    check fails only when no shard answers: a gateway that can serve some clusters
    stays ready (taking it out of its Service would stop those too); the shards that
    are down are named in `down`, and their clusters answer 503 naming them.
    """
    names = shards.names()
    if len(names) == 1:
        return _check_here()
    results = {}
    for name in names:
        with shards.use(name):
            results[name] = _check_here()
    down = [n for n, r in results.items() if not r["ok"]]
    out: dict[str, Any] = {"ok": len(down) < len(names), "shards": results}
    if down:
        out["down"] = down
        out["error"] = "; ".join(results[n]["error"] for n in down)
    return out


def _check_here() -> dict[str, Any]:
    try:
        return {"ok": True, "version": status()["version"]}
    except StoreUnavailable as exc:
        return {"ok": False, "error": str(exc)}


# Transaction building blocks; thin so that callers never import pyetcd.
def op_put(key: str, value: bytes) -> Any:
    return pyetcd.transactions.Put(key, value)


def put_cost(key: str, value: bytes) -> int:
    """What a put counts toward MAX_TXN_BYTES: its key and value, and a margin for framing."""
    return len(key) + len(value) + 16


def put_bytes(op: Any) -> int:
    """`put_cost` of a put made by `op_put` (0 for any other operation)."""
    if not isinstance(op, pyetcd.transactions.Put):
        return 0
    return put_cost(op.key, op.value)


def key_of(op_or_compare: Any) -> str:
    """The key an operation or a compare made here names (its first key: a range's end is
    not looked at, so this cannot tell whether two ranges overlap)."""
    key = op_or_compare.key
    return key.decode() if isinstance(key, bytes) else str(key)


def op_get(key: str) -> Any:
    return pyetcd.transactions.Get(key)


def op_delete(key: str) -> Any:
    return pyetcd.transactions.Delete(key)


def op_delete_prefix(prefix: str) -> Any:
    end = etcd_utils.prefix_range_end(prefix.encode())
    return pyetcd.transactions.Delete(prefix, range_end=end)


def cmp_absent(key: str) -> Any:
    return pyetcd.transactions.Version(key) == 0


def cmp_mod_revision(key: str, revision: int) -> Any:
    return pyetcd.transactions.Mod(key) == revision


def _txn(compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any] = ()) -> Any:
    """A transaction of pyetcd's compares and ops, sent as store/client.py sends ours (its
    revision noted: store/client.py::observed); etcd's answer as it is."""
    etcd = client.get()
    request = etcd_rpc.TxnRequest(
        compare=[c.build_message() for c in compare],
        success=etcd._ops_to_requests(list(success)),
        failure=etcd._ops_to_requests(list(failure)),
    )
    return etcd.txn_request(request)


def txn(compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any] = ()) -> bool:
    """Run one transaction; True when the comparisons held and `success` ran."""
    with translated("txn"):
        return bool(_txn(compare, success, failure).succeeded)


def guaranteed_update(
    attempt: Callable[[], R | None], *, attempts: int, conflict: Callable[[], str]
) -> R:
    """Optimistic read-modify-write, as Kubernetes' GuaranteedUpdate: the one retry loop.

    `attempt` reads what it needs, then writes in a transaction that compares the
    revisions it read; it returns its result, or None when a compare failed (another
    writer got there first). A lost attempt is run again, reading afresh, at most
    `attempts` times in all; then Conflict with the message `conflict()` gives.

    >>> tries = iter([None, None, "written"])
    >>> guaranteed_update(lambda: next(tries), attempts=3, conflict=lambda: "lost")
    'written'
    >>> guaranteed_update(lambda: None, attempts=2, conflict=lambda: "lost twice")
    Traceback (most recent call last):
    ...
    store.errors.Conflict: lost twice
    """
    for _ in range(attempts):
        result = attempt()
        if result is not None:
            return result
    raise Conflict(conflict())


def get_many(keys: Sequence[str]) -> dict[str, Item]:
    """Read several keys at one revision (one transaction per MAX_TXN_OPS keys)."""
    found: dict[str, Item] = {}
    for i in range(0, len(keys), MAX_TXN_OPS):
        batch = keys[i : i + MAX_TXN_OPS]
        with translated("get_many"):
            response = _txn([], [op_get(k) for k in batch])
        for answer in response.responses:
            for item in _items(answer.response_range):
                found[item.key] = item
    return found


def put_batches(items: Sequence[tuple[str, bytes]]) -> int:
    """Write key/values in as few transactions as etcd's op and byte limits allow.

    Each transaction is atomic; the batch as a whole is not, so callers write
    idempotent keys and put their commit marker in the last item. Returns the
    number of transactions used.
    """
    batches = 0
    ops: list[Any] = []
    size = 0
    for key, value in items:
        cost = put_cost(key, value)
        if ops and (len(ops) >= MAX_TXN_OPS or size + cost > MAX_TXN_BYTES):
            txn([], ops)
            batches += 1
            ops, size = [], 0
        ops.append(op_put(key, value))
        size += cost
    if ops:
        txn([], ops)
        batches += 1
    return batches


class KeyInfo(NamedTuple):
    """A key and its mod revision (a tuple: a fleet's plan makes thousands of them)."""

    key: str
    mod_revision: int


def _key_infos(kvs: Any) -> list[KeyInfo]:
    return [KeyInfo(kv.key.decode(), kv.mod_revision) for kv in kvs]


def keys_in_range(start: str, end: str, min_mod_revision: int | None = None) -> list[KeyInfo]:
    """Keys (no values) in [start, end), optionally only those changed at or after a revision."""
    with translated("keys_in_range"):
        response = client.get().get_range_response(
            start, end, keys_only=True, min_mod_revision=min_mod_revision
        )
    return _key_infos(response.kvs)


class Listing:
    """The keys (no values) of one range read, and a digest naming exactly those keys and
    their revisions. The keys are decoded only when asked for: a reader whose cache holds
    what the digest names never needs them (decoding 1,600 keys costs ~1 ms)."""

    def __init__(self, response: Any, revision: int) -> None:
        self._kvs = response.kvs
        self.revision = revision  # the store revision the keys were read at
        # the range's header carries the store revision, which moves on every write
        response.ClearField("header")
        self.digest = hashlib.blake2b(response.SerializeToString(), digest_size=16).hexdigest()

    @functools.cached_property
    def infos(self) -> list[KeyInfo]:
        return _key_infos(self._kvs)

    def first_key(self) -> str | None:
        """The first key in key order (etcd lists a range sorted by key), None when empty."""
        return self._kvs[0].key.decode() if len(self._kvs) else None

    def __len__(self) -> int:
        return len(self._kvs)


def keys_in_ranges(ranges: Sequence[tuple[str, str]]) -> list[Listing]:
    """The keys of several [start, end) ranges: one transaction per MAX_TXN_OPS ranges,
    each at one revision (a fleet's block plans in one round trip, not one each)."""
    out: list[Listing] = []
    for i in range(0, len(ranges), MAX_TXN_OPS):
        ops = [
            _range_op(start.encode(), end.encode(), keys_only=True)
            for start, end in ranges[i : i + MAX_TXN_OPS]
        ]
        with translated("keys_in_ranges"):
            response = client.get().txn_request(etcd_rpc.TxnRequest(success=ops))
        at = int(response.header.revision)
        out += [Listing(r.response_range, at) for r in response.responses]
    return out


def prefix_end(prefix: str) -> str:
    """The range end that covers every key starting with `prefix`."""
    return etcd_utils.prefix_range_end(prefix.encode()).decode()


def revision() -> int:
    """The store's current revision (a read; nothing is written)."""
    with translated("revision"):
        response = client.get().get_response("\0", count_only=True)
    return int(response.header.revision)


class Held:
    """A held lock: `refresh()` keeps it during long work (at most once every ttl/3 s)."""

    def __init__(self, lease: Any, ttl: int) -> None:
        self._lease = lease
        self._every = ttl / 3
        self._last = time.monotonic()

    def refresh(self) -> None:
        if time.monotonic() - self._last >= self._every:
            with translated("lock"):
                self._lease.refresh()
            self._last = time.monotonic()


@contextlib.contextmanager
def lock(key: str, ttl: int = 600) -> Iterator[Held | None]:
    """A lease-backed lock at `key`; yields None at once when someone holds it (never waits).

    The key vanishes with the lease, so a holder that dies frees the lock after
    `ttl` s; a long holder calls `refresh()` on what it got.
    """
    with translated("lock"):
        lease = client.get().lease(ttl)
    try:
        acquired = txn([cmp_absent(key)], [pyetcd.transactions.Put(key, b"held", lease=lease)])
        yield Held(lease, ttl) if acquired else None
    finally:
        # the lease may have expired or etcd be gone: the key then goes with the lease
        with contextlib.suppress(StoreUnavailable, *_UNAVAILABLE), translated("lock"):
            lease.revoke()


def get_range_rev(start: str, end: str) -> tuple[list[Item], int]:
    """Items in [start, end) and the store revision they were read at."""
    with translated("get_range_rev"):
        response = client.get().get_range_response(start, end)
    items = [Item(kv.key.decode(), kv.value, kv.mod_revision, kv.version) for kv in response.kvs]
    return items, int(response.header.revision)


def cmp_range_unchanged(start: str, end: str, revision: int) -> Any:
    """True while no key in [start, end) was created or changed after `revision`."""
    return pyetcd.transactions.Mod(start, range_end=end) < revision + 1


def delete_in_batches(keys: Sequence[str]) -> int:
    """Delete keys, MAX_TXN_OPS per transaction; returns how many were asked."""
    for i in range(0, len(keys), MAX_TXN_OPS):
        txn([], [op_delete(k) for k in keys[i : i + MAX_TXN_OPS]])
    return len(keys)


def defragment() -> None:
    """Defragment the etcd member this process talks to (it pauses that member briefly)."""
    with translated("defragment"):
        client.get().defragment()
