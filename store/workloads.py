"""Workload attribution: which pod, namespace and container ran on a GPU, from when to when.

One key per GPU, `{root}/workloads/{uuid}`, holds its periods as compact JSON:

    [[start_ms, end_ms, {"pod": ..., "namespace": ..., "container": ...}], ...]

sorted by start. A period spans the first to the last sample seen with those
labels; samples without workload labels make periods too (empty labels), so the
periods of a GPU account for every sample ingested since they were recorded.
Merging is a union, so writing the same periods again (a retried chunk)
changes nothing, and chunks may arrive in any order: the union is re-sorted,
and a period joins the one before it when their labels are equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from store import kv, shards
from store.errors import Conflict, OverBound
from store.keys import Keys

WORKLOAD_LABELS = ("pod", "namespace", "container")
Period = tuple[int, int, dict[str, str]]
_MAX_CAS_ATTEMPTS = 16
# One GPU's periods, encoded, at most: just under etcd's 1.5 MiB request limit, with room
# for the key and the transaction's framing (~13,000 workload changes of Kubernetes-length
# names kept over the retention). Past it a write fails whole, naming the GPU, where etcd
# refused it and the chunk was retried as if etcd were down, forever. Only a key split by
# time would lift it (docs/STORAGE.md).
MAX_PERIODS_BYTES = 1_450_000


def workload_of(labels: dict[str, str]) -> dict[str, str]:
    """The non-empty workload labels among `labels`."""
    return {k: labels[k] for k in WORKLOAD_LABELS if labels.get(k)}


def merge_periods(old: Sequence[Period], new: Sequence[Period]) -> list[Period]:
    """Union of two period lists: sorted by start, a period joined to the one before it
    when their labels are equal (no other workload's period starts between them)."""
    out: list[Period] = []
    for start, end, labels in sorted([*old, *new], key=lambda p: (p[0], p[1])):
        if out and out[-1][2] == labels:
            out[-1] = (out[-1][0], max(out[-1][1], end), labels)
        else:
            out.append((start, end, labels))
    return out


def _decode(item: kv.Item | None) -> list[Period]:
    if item is None:
        return []
    return [(int(s), int(e), dict(lb)) for s, e, lb in json.loads(item.value)]


def periods_of(item: kv.Item | None) -> list[Period]:
    """The periods stored in one GPU's workloads key (as read by someone else)."""
    return _decode(item)


def _encode(periods: list[Period]) -> bytes:
    return json.dumps([[s, e, lb] for s, e, lb in periods], separators=(",", ":")).encode()


def _changes(
    keys: Keys, periods: dict[str, list[Period]], current: dict[str, kv.Item]
) -> list[tuple[str, Any, Any]]:
    """(uuid, compare, put) of each GPU whose key `periods` would change."""
    out = []
    for uuid, new in periods.items():
        key = keys.workloads(uuid)
        item = current.get(key)
        old = _decode(item)
        merged = merge_periods(old, new)
        if merged == old:
            continue
        encoded = _encode(merged)
        if len(encoded) > MAX_PERIODS_BYTES:
            raise OverBound(
                f"GPU {uuid}: its workload periods would take {len(encoded):,} bytes "
                f"({len(merged):,} periods), over the bound of {MAX_PERIODS_BYTES:,} bytes a "
                "GPU: its pod, namespace or container changes too often within the "
                "retention (docs/STORAGE.md); the write was refused"
            )
        compare = (
            kv.cmp_absent(key) if item is None else kv.cmp_mod_revision(key, item.mod_revision)
        )
        out.append((uuid, compare, kv.op_put(key, encoded)))
    return out


def write_ops(
    keys: Keys, periods: dict[str, list[Period]], current: dict[str, kv.Item]
) -> tuple[list, list]:
    """(compares, puts) merging `periods` ({uuid: [...]}) into what `current` holds."""
    changes = _changes(keys, periods, current)
    return [c for _, c, _ in changes], [op for _, _, op in changes]


def update_workloads(keys: Keys, periods: dict[str, list[Period]]) -> None:
    """Merge each GPU's new periods into its key (compare-and-swap, retried), in
    transactions of at most MAX_TXN_OPS keys and MAX_TXN_BYTES (a GPU's periods can be
    long: docs/STORAGE.md). Every GPU is checked against MAX_PERIODS_BYTES before any is
    written, so an OverBound leaves every key as it was (unless another writer added
    periods between the check and the write); the check and the writes read MAX_TXN_OPS
    GPUs at a time, so memory follows one part, not the chunk."""
    todo = {u: p for u, p in periods.items() if p}
    if len(todo) > kv.MAX_TXN_OPS:  # else the first round's read is the check
        for part in _parts(todo):
            _changes(keys, part, kv.get_many([keys.workloads(u) for u in part]))
    lost = 0  # rounds in a row without progress (each lost its compare-and-swaps)
    while todo:
        part = next(_parts(todo))
        current = kv.get_many([keys.workloads(u) for u in part])
        changes = _changes(keys, part, current)
        done = set(part) - {u for u, _, _ in changes}  # nothing new for these
        for group in _within_bounds(changes):
            if kv.txn([c for _, c, _ in group], [op for _, _, op in group]):
                done |= {u for u, _, _ in group}
        for u in done:
            del todo[u]
        lost = 0 if done else lost + 1
        if lost >= _MAX_CAS_ATTEMPTS:
            raise Conflict(f"workload periods of {len(todo)} GPU(s) kept changing; giving up")


def _parts(todo: dict[str, list[Period]]) -> Iterator[dict[str, list[Period]]]:
    """`todo` in parts of MAX_TXN_OPS GPUs."""
    uuids = list(todo)
    for at in range(0, len(uuids), kv.MAX_TXN_OPS):
        yield {u: todo[u] for u in uuids[at : at + kv.MAX_TXN_OPS]}


def _within_bounds(changes: list[tuple[str, Any, Any]]) -> list[list[tuple[str, Any, Any]]]:
    """`changes` in groups of at most MAX_TXN_OPS whose puts fit MAX_TXN_BYTES (one alone
    may not: its own group)."""
    groups: list[list[tuple[str, Any, Any]]] = []
    size = 0
    for change in changes:
        cost = kv.put_bytes(change[2])
        if not groups or size + cost > kv.MAX_TXN_BYTES or len(groups[-1]) >= kv.MAX_TXN_OPS:
            groups.append([])
            size = 0
        groups[-1].append(change)
        size += cost
    return groups


def trim_periods(keys: Keys, uuid: str, before: int, guards: Sequence[Any] = ()) -> int:
    """Drop the periods of `uuid` that end before `before` (retention has deleted every sample
    and bucket they attributed), so the key holds what retention keeps, not all history.
    One compare-and-swap, also holding `guards` (no block written since the caller looked):
    a lost race with ingest is left to the next run. How many went."""
    key = keys.workloads(uuid)
    item = kv.get(key)
    old = _decode(item)
    kept = [p for p in old if p[1] >= before]
    if item is None or len(kept) == len(old):
        return 0
    put = kv.op_put(key, _encode(kept)) if kept else kv.op_delete(key)
    compare = [kv.cmp_mod_revision(key, item.mod_revision), *guards]
    return len(old) - len(kept) if kv.txn(compare, [put]) else 0


def read_workloads(keys: Keys, uuids: Sequence[str] | None = None) -> dict[str, list[Period]]:
    """{uuid: periods}: every GPU's (one range read) or the given ones'.

    In the current shard inside `shards.use()`, else in every shard at once.
    """

    def read() -> list[kv.Item]:
        if uuids is None:
            return kv.get_prefix(keys.workloads_prefix())
        return list(kv.get_many([keys.workloads(u) for u in uuids]).values())

    items = [i for part in shards.fan_out(read).values() for i in part]
    return {item.key.rsplit("/", 1)[-1]: _decode(item) for item in items}


def in_window(periods: Sequence[Period], start: int, end: int) -> list[Period]:
    """The periods overlapping [start, end]."""
    return [p for p in periods if p[1] >= start and p[0] <= end]
