"""Workload attribution: which pod, namespace and container ran on a GPU, from when to when.

A GPU's periods are kept by the UTC day they start in, one key a day,
`{root}/workloads/{uuid}/{day_ms:013d}`, as compact JSON:

    [[start_ms, end_ms, {"pod": ..., "namespace": ..., "container": ...}], ...]

sorted by start. A period spans the first to the last sample seen with those
labels; samples without workload labels make periods too (empty labels), so the
periods of a GPU account for every sample ingested since they were recorded.
Merging is a union, so writing the same periods again (a retried chunk)
changes nothing, and chunks may arrive in any order: the union is re-sorted,
and a period joins the one before it when their labels are equal. Reading joins
a GPU's days the same way (a workload running past midnight continues in the next
day's key). Day keys keep each write small (a chunk rewrites today's key, not the
GPU's history), bound one key by what one day can hold, and let retention drop
whole days. Stores written before day keys (2026-12-03) hold one key per GPU,
`{root}/workloads/{uuid}`: it is read and trimmed with the days, never written.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

from store import kv, shards
from store.errors import Conflict, OverBound
from store.keys import Keys

WORKLOAD_LABELS = ("pod", "namespace", "container")
Period = tuple[int, int, dict[str, str]]
Slot = tuple[str, int]  # (uuid, the UTC day its periods start in, ms)
DAY_MS = 86_400_000
_MAX_CAS_ATTEMPTS = 16
# One day key, encoded, at most: just under etcd's 1.5 MiB request limit, with room for the
# key and the transaction's framing (~13,000 workload changes of Kubernetes-length names in
# one day). Past it a write fails whole, naming the GPU and the day, where etcd refused it
# and the chunk was retried as if etcd were down, forever (docs/STORAGE.md).
MAX_PERIODS_BYTES = 1_450_000


def workload_of(labels: dict[str, str]) -> dict[str, str]:
    """The non-empty workload labels among `labels`."""
    return {k: labels[k] for k in WORKLOAD_LABELS if labels.get(k)}


def merge_periods(old: Sequence[Period], new: Sequence[Period]) -> list[Period]:
    """Union of two period lists: sorted by start, a period joined to the one before it
    when their labels are equal (no other workload's period starts between them)."""
    out: list[Period] = []
    for start, end, labels in sorted([*old, *new], key=_order):
        if out and out[-1][2] == labels:
            out[-1] = (out[-1][0], max(out[-1][1], end), labels)
        else:
            out.append((start, end, labels))
    return out


def _order(period: Period) -> tuple:
    # the labels too: two workloads with the same span keep one order, so merging a list
    # with itself (a retried chunk) changes nothing
    return period[0], period[1], sorted(period[2].items())


def _decode(item: kv.Item | None) -> list[Period]:
    if item is None:
        return []
    return [(int(s), int(e), dict(lb)) for s, e, lb in json.loads(item.value)]


def _encode(periods: list[Period]) -> bytes:
    return json.dumps([[s, e, lb] for s, e, lb in periods], separators=(",", ":")).encode()


def _slots(periods: dict[str, list[Period]]) -> dict[Slot, list[Period]]:
    """Each GPU's periods by the day key their start falls in."""
    out: dict[Slot, list[Period]] = defaultdict(list)
    for uuid, some in periods.items():
        for period in some:
            out[(uuid, period[0] - period[0] % DAY_MS)].append(period)
    return out


def period_keys(keys: Keys, periods: dict[str, list[Period]]) -> list[str]:
    """The keys that merging `periods` ({uuid: [...]}) reads and may write."""
    return _keys_of(keys, _slots(periods))


def _changes(
    keys: Keys, slots: dict[Slot, list[Period]], current: dict[str, kv.Item]
) -> list[tuple[Slot, Any, Any]]:
    """(slot, compare, put) of each day key that `slots` would change. OverBound naming
    every GPU a key of which would pass MAX_PERIODS_BYTES (all at once: a chunk drops them
    in one pass)."""
    out = []
    over: dict[str, str] = {}
    for (uuid, day), new in slots.items():
        key = keys.workloads_day(uuid, day)
        item = current.get(key)
        old = _decode(item)
        merged = merge_periods(old, new)
        if merged == old:
            continue
        encoded = _encode(merged)
        if len(encoded) > MAX_PERIODS_BYTES:
            over.setdefault(
                uuid,
                f"GPU {uuid}: its workload periods starting on "
                f"{time.strftime('%Y-%m-%d', time.gmtime(day / 1000))} would take "
                f"{len(encoded):,} bytes ({len(merged):,} periods), over the bound of "
                f"{MAX_PERIODS_BYTES:,} bytes a GPU and day: its pod, namespace or container "
                "changes too often (docs/STORAGE.md); the write was refused",
            )
            continue
        compare = (
            kv.cmp_absent(key) if item is None else kv.cmp_mod_revision(key, item.mod_revision)
        )
        out.append(((uuid, day), compare, kv.op_put(key, encoded)))
    if over:
        raise OverBound(next(iter(over.values())), over)
    return out


def write_ops(
    keys: Keys, periods: dict[str, list[Period]], current: dict[str, kv.Item]
) -> tuple[list, list]:
    """(compares, puts) merging `periods` ({uuid: [...]}) into what `current` holds (read
    from `period_keys`)."""
    changes = _changes(keys, _slots(periods), current)
    return [c for _, c, _ in changes], [op for _, _, op in changes]


def update_workloads(keys: Keys, periods: dict[str, list[Period]]) -> None:
    """Merge each GPU's new periods into its day keys (compare-and-swap, retried), in
    transactions of at most MAX_TXN_OPS keys and MAX_TXN_BYTES. Every key is checked
    against MAX_PERIODS_BYTES before any is written, so an OverBound leaves every key as it
    was (unless another writer added periods between the check and the write); the check
    and the writes read MAX_TXN_OPS keys at a time, so memory follows one part."""
    todo = _slots({u: p for u, p in periods.items() if p})
    if len(todo) > kv.MAX_TXN_OPS:  # else the first round's read is the check
        over: dict[str, str] = {}
        for part in _parts(todo):
            try:
                _changes(keys, part, kv.get_many(_keys_of(keys, part)))
            except OverBound as exc:
                over.update(exc.each)  # every part's: a chunk drops them in one pass
        if over:
            raise OverBound(next(iter(over.values())), over)
    lost = 0  # rounds in a row without progress (each lost its compare-and-swaps)
    while todo:
        part = next(_parts(todo))
        current = kv.get_many(_keys_of(keys, part))
        changes = _changes(keys, part, current)
        done = set(part) - {slot for slot, _, _ in changes}  # nothing new for these
        for group in _within_bounds(changes):
            if kv.txn([c for _, c, _ in group], [op for _, _, op in group]):
                done |= {slot for slot, _, _ in group}
        for slot in done:
            del todo[slot]
        lost = 0 if done else lost + 1
        if lost >= _MAX_CAS_ATTEMPTS:
            raise Conflict(f"workload periods of {len(todo)} GPU day(s) kept changing; giving up")


def _keys_of(keys: Keys, slots: dict[Slot, list[Period]]) -> list[str]:
    return [keys.workloads_day(uuid, day) for uuid, day in slots]


def _parts(todo: dict[Slot, list[Period]]) -> Iterator[dict[Slot, list[Period]]]:
    """`todo` in parts of MAX_TXN_OPS keys."""
    slots = list(todo)
    for at in range(0, len(slots), kv.MAX_TXN_OPS):
        yield {slot: todo[slot] for slot in slots[at : at + kv.MAX_TXN_OPS]}


def _within_bounds(
    changes: list[tuple[Any, Any, Any]], most: int = kv.MAX_TXN_OPS
) -> list[list[tuple[Any, Any, Any]]]:
    """`changes` (_, compare, put) in groups of at most `most` whose puts fit MAX_TXN_BYTES
    (one alone may not: its own group)."""
    groups: list[list[tuple[Any, Any, Any]]] = []
    size = 0
    for change in changes:
        cost = kv.put_bytes(change[2])
        if not groups or size + cost > kv.MAX_TXN_BYTES or len(groups[-1]) >= most:
            groups.append([])
            size = 0
        groups[-1].append(change)
        size += cost
    return groups


def trim_periods(keys: Keys, uuid: str, before: int, guards: Sequence[Any] = ()) -> int:
    """Drop the periods of `uuid` that end before `before` (retention has deleted every sample
    and bucket they attributed), so its keys hold what retention keeps, not all history.
    Only the old single key and the days up to `before`'s can hold such periods (a day
    key's periods start that day). A compare-and-swap of the keys that change, in
    transactions within etcd's bounds, each also holding `guards` (no block written since
    the caller looked): a lost race with ingest is left to the next run. How many went."""
    first, _ = keys.workloads_days(uuid)
    last = keys.workloads_day(uuid, before - before % DAY_MS + DAY_MS)
    found, (days,), _ = kv.get_together([keys.workloads(uuid)], [(first, last)])
    changes = []
    for item in [*found.values(), *days]:
        old = _decode(item)
        kept = [p for p in old if p[1] >= before]
        if len(kept) < len(old):
            put = kv.op_put(item.key, _encode(kept)) if kept else kv.op_delete(item.key)
            compare = kv.cmp_mod_revision(item.key, item.mod_revision)
            changes.append((len(old) - len(kept), compare, put))
    gone = 0
    for group in _within_bounds(changes, kv.MAX_TXN_OPS - len(guards)):
        if kv.txn([*(c for _, c, _ in group), *guards], [op for _, _, op in group]):
            gone += sum(n for n, _, _ in group)
    return gone


def _names(item: kv.Item, uuid: str) -> bool:
    """Whether `item` is a key of `uuid`'s periods (not of a uuid it is a prefix of)."""
    rest = item.key.rsplit("/workloads/", 1)[-1]
    return rest == uuid or rest.startswith(uuid + "/")


def periods_in(items: Sequence[kv.Item]) -> list[Period]:
    """One GPU's periods from its keys (its day keys, and the one key of a store written
    before day keys, 2026-12-03), joined as one list."""
    return merge_periods([], [p for item in items for p in _decode(item)])


def periods_of(uuid: str, items: Sequence[kv.Item]) -> list[Period]:
    """`uuid`'s periods out of what a read of `Keys.workloads_of(uuid)` found."""
    return periods_in([i for i in items if _names(i, uuid)])


def read_workloads(keys: Keys, uuids: Sequence[str] | None = None) -> dict[str, list[Period]]:
    """{uuid: periods}: every GPU's (one range read) or the given ones'.

    In the current shard inside `shards.use()`, else in every shard at once.
    """

    def read() -> list[kv.Item]:
        if uuids is None:
            return kv.get_prefix(keys.workloads_prefix())
        out: list[kv.Item] = []
        for at in range(0, len(uuids), kv.MAX_TXN_OPS):
            some = uuids[at : at + kv.MAX_TXN_OPS]
            found = kv.get_together([], [keys.workloads_of(u) for u in some]).ranged
            out += [i for u, got in zip(some, found, strict=True) for i in got if _names(i, u)]
        return out

    items = [i for part in shards.fan_out(read).values() for i in part]
    prefix = len(keys.workloads_prefix())
    by_uuid: dict[str, list[kv.Item]] = defaultdict(list)
    for item in items:
        by_uuid[item.key[prefix:].partition("/")[0]].append(item)
    return {uuid: periods_in(some) for uuid, some in by_uuid.items()}


def in_window(periods: Sequence[Period], start: int, end: int) -> list[Period]:
    """The periods overlapping [start, end]."""
    return [p for p in periods if p[1] >= start and p[0] <= end]
