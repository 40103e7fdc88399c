"""GPU records and locators: created once, rewritten only when a GPU's facts change.

Facts are decided by sample time, not by processing order: a record holds the
facts of the newest samples that registered it (`facts_at`), so an older file
processed later never moves a GPU to another host or cluster. Every placement
the GPU was seen at is kept in `placements` ([{"cluster", "host", "since"}],
oldest first). A MIG instance's record (`MIG-<parent>-<GPU_I_ID>`, the facts'
`UUID` label naming the parent) carries `parent`, and the parent's instances
are listed under `{root}/instances/{parent}/`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from store import kv, shards
from store.errors import NotFound
from store.keys import Keys

# Facts that identify where a GPU is and what it is; a change to any rewrites the record.
FACT_FIELDS = ("uuid", "cluster", "host", "gpu_index", "device", "model", "driver", "labels")
_CACHE_TTL_S = 300.0
_MAX_ATTEMPTS = 8
# `facts_at` is moved forward only in steps of at least this much sample time, so a
# stream of chunks with unchanged facts does not rewrite the record every time.
FACTS_AT_SLACK_MS = 3_600_000
MAX_PLACEMENTS = 100


@dataclass(frozen=True, slots=True)
class Registration:
    """What a chunk knows of one GPU: its facts, its earliest and newest sample times."""

    facts: dict[str, Any]
    first_seen: int
    last_seen: int | None = None  # None: the same as first_seen

    @property
    def newest(self) -> int:
        return self.first_seen if self.last_seen is None else self.last_seen

    @property
    def uuid(self) -> str:
        return str(self.facts["uuid"])


class _KnownCache:
    """Per-process memory of GPUs already registered with these facts (saves a read per chunk)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[str, int, int, float]] = {}

    def fresh(self, root: str, reg: Registration) -> bool:
        with self._lock:
            entry = self._entries.get((root, reg.uuid))
        if entry is None:
            return False
        digest, first_seen, facts_at, expires = entry
        return (
            expires > time.monotonic()
            and digest == _digest(reg.facts)
            and first_seen <= reg.first_seen
            and reg.newest < facts_at + FACTS_AT_SLACK_MS
        )

    def remember(self, root: str, record: dict[str, Any]) -> None:
        entry = (
            _digest(record),
            int(record["first_seen"]),
            _facts_at(record),
            time.monotonic() + _CACHE_TTL_S,
        )
        with self._lock:
            self._entries[(root, record["uuid"])] = entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


known = _KnownCache()


def _digest(facts: dict[str, Any]) -> str:
    return json.dumps([facts.get(f) for f in FACT_FIELDS], sort_keys=True)


def _decode(item: kv.Item | None) -> dict[str, Any] | None:
    return None if item is None else json.loads(item.value)


def ensure_registered(keys: Keys, regs: Iterable[Registration]) -> list[dict[str, Any]]:
    """Create or update the record and locator of each GPU; returns the records written.

    Optimistic: each GPU's write compares the locator's mod revision it read,
    and retries on a lost race, so two workers registering the same GPU end
    with one record. A GPU that moved host or cluster has its old record removed
    in the same transaction.
    """
    todo = pending(keys, regs)
    written: list[dict[str, Any]] = []

    def attempt() -> list[dict[str, Any]] | None:
        nonlocal todo
        lost = []
        for reg, outcome in zip(todo, _register_batch(keys, todo), strict=True):
            if outcome is False:
                lost.append(reg)
            elif outcome is not None:
                written.append(outcome)
        todo = lost
        return None if lost else written

    if not todo:
        return written
    return kv.guaranteed_update(
        attempt,
        attempts=_MAX_ATTEMPTS,
        conflict=lambda: f"could not register {len(todo)} GPU(s) after {_MAX_ATTEMPTS} attempts",
    )


def _register_batch(keys: Keys, regs: Sequence[Registration]) -> list[dict | bool | None]:
    """One attempt per GPU: the record written, None when already right, False on a lost race.

    The GPUs' plans go to etcd together, as many as one transaction takes (a fleet's first
    upload registers hundreds: one transaction each cost etcd three times the CPU of the
    rest of the upload's writes). Each plan keeps its own compare, so a transaction that
    fails lost a race on some GPU's locator: its GPUs are then tried one by one, and each
    wins or loses alone, as before."""
    current = kv.get_many(keys_to_read(keys, regs))
    plans = [plan_registration(keys, reg, current) for reg in regs]
    outcomes: list[dict | bool | None] = [None] * len(regs)
    for group in _plan_groups(plans):
        together = len(group) > 1 and kv.txn(
            [c for _, plan in group for c in plan.compare],
            [o for _, plan in group for o in plan.ops],
        )
        for i, plan in group:
            if not together and not kv.txn(plan.compare, plan.ops):
                outcomes[i] = False
                continue
            known.remember(keys.root, plan.record)
            outcomes[i] = plan.record
    return outcomes


def _plan_groups(plans: Sequence[Plan | None]) -> list[list[tuple[int, Plan]]]:
    """The plans to write, with their indexes, cut into groups that fit one transaction
    (etcd's operation and byte limits) and never name a key twice (etcd refuses that)."""
    groups: list[list[tuple[int, Plan]]] = []
    group: list[tuple[int, Plan]] = []
    seen: set[str] = set()
    compares = ops = size = 0
    for i, plan in enumerate(plans):
        if plan is None:
            continue
        names = {kv.key_of(x) for x in (*plan.ops, *plan.compare)}
        cost = sum(kv.put_bytes(o) for o in plan.ops)
        full = (
            compares + len(plan.compare) > kv.MAX_TXN_OPS
            or ops + len(plan.ops) > kv.MAX_TXN_OPS
            or size + cost > kv.MAX_TXN_BYTES
            or not seen.isdisjoint(names)
        )
        if group and full:
            groups.append(group)
            group, seen, compares, ops, size = [], set(), 0, 0, 0
        group.append((i, plan))
        seen |= names
        compares, ops, size = compares + len(plan.compare), ops + len(plan.ops), size + cost
    if group:
        groups.append(group)
    return groups


@dataclass(frozen=True, slots=True)
class Plan:
    """What registering one GPU needs: the checks that make it safe, and the writes."""

    record: dict[str, Any]
    compare: list[Any]
    ops: list[Any]


def plan_registration(keys: Keys, reg: Registration, current: dict[str, kv.Item]) -> Plan | None:
    """None when the stored record is already right; else a compare-guarded write plan.

    `current` holds what was read of the locator and of the record at the
    registration's place. The plan compares the locator's revision, so a racing
    writer makes the transaction fail instead of leaving two records.
    """
    facts = reg.facts
    locator_key = keys.locator(reg.uuid)
    reg_key = keys.record(facts["cluster"], facts["host"], reg.uuid)
    locator = current.get(locator_key)
    located = _decode(locator)
    old_key = reg_key
    if located is not None:
        old_key = keys.record(located["cluster"], located["host"], reg.uuid)
    old = _decode(current.get(old_key)) if old_key == reg_key else _read_record(old_key)
    record = decide(old, reg)
    if old is not None and old == record:
        known.remember(keys.root, record)
        return None
    record_key = keys.record(record["cluster"], record["host"], reg.uuid)
    compare = [
        kv.cmp_absent(locator_key)
        if locator is None
        else kv.cmp_mod_revision(locator_key, locator.mod_revision)
    ]
    ops = [
        kv.op_put(record_key, _encode(record)),
        kv.op_put(locator_key, _encode(located_of(record))),
    ]
    if old is not None and old_key != record_key:
        ops.append(kv.op_delete(old_key))
    if record.get("parent"):
        ops.append(kv.op_put(keys.instance(record["parent"], reg.uuid), b""))
    return Plan(record, compare, ops)


def decide(old: dict[str, Any] | None, reg: Registration) -> dict[str, Any]:
    """The record after `reg`: the facts of whichever is newer by sample time.

    A registration whose newest sample is at least as new as the record's
    `facts_at` brings its facts (host, cluster, index, model, driver, labels);
    an older one only adds to `first_seen` and to the placement history.
    """
    facts = {f: reg.facts.get(f) for f in FACT_FIELDS}
    parent = _parent(facts)
    if old is None:
        placements = _placed([], reg.first_seen, facts)
        return _record(facts, reg.first_seen, reg.newest, placements, parent)
    old_at = _facts_at(old)
    first_seen = min(int(old["first_seen"]), reg.first_seen)
    history = old.get("placements") or _placed([], int(old["first_seen"]), old)
    placements = _placed(history, reg.first_seen, facts)
    if reg.newest >= old_at and (
        _digest(facts) != _digest(old) or reg.newest >= old_at + FACTS_AT_SLACK_MS
    ):
        return _record(facts, first_seen, reg.newest, placements, parent)
    kept = {f: old.get(f) for f in FACT_FIELDS}
    return _record(kept, first_seen, old_at, placements, old.get("parent") or parent)


def _record(
    facts: dict[str, Any], first_seen: int, facts_at: int, placements: list, parent: str | None
) -> dict[str, Any]:
    record = {**facts, "first_seen": first_seen, "facts_at": facts_at, "placements": placements}
    if parent:
        record["parent"] = parent
    return record


def _facts_at(record: dict[str, Any]) -> int:
    """Sample time of a record's facts; records from before it existed: first_seen."""
    return int(record.get("facts_at", record["first_seen"]))


def _parent(facts: dict[str, Any]) -> str | None:
    """The parent GPU's uuid of a MIG instance record (its `UUID` label), else None."""
    labels = facts.get("labels") or {}
    parent = labels.get("UUID") if isinstance(labels, dict) else None
    uuid = str(facts.get("uuid", ""))
    if not parent or not uuid.startswith("MIG-") or parent == uuid:
        return None
    return str(parent)


def _placed(history: list[dict], since: int, facts: dict[str, Any]) -> list[dict]:
    """`history` with "at `facts`' place from `since`" added; consecutive repeats merged."""
    entry = {"cluster": facts["cluster"], "host": facts["host"], "since": since}
    ordered = sorted([*history, entry], key=lambda e: int(e["since"]))
    out: list[dict] = []
    for e in ordered:
        if out and (out[-1]["cluster"], out[-1]["host"]) == (e["cluster"], e["host"]):
            continue  # still at the same place: the earlier `since` stands
        out.append({"cluster": e["cluster"], "host": e["host"], "since": int(e["since"])})
    return out[-MAX_PLACEMENTS:]


def keys_to_read(keys: Keys, regs: Sequence[Registration]) -> list[str]:
    """Locator and record keys whose state `plan_registration` needs."""
    wanted = [keys.locator(r.uuid) for r in regs]
    return wanted + [keys.record(r.facts["cluster"], r.facts["host"], r.uuid) for r in regs]


def pending(keys: Keys, regs: Iterable[Registration]) -> list[Registration]:
    """The registrations this process does not know to be stored already."""
    return [r for r in regs if not known.fresh(keys.root, r)]


def _read_record(key: str) -> dict[str, Any] | None:
    return _decode(kv.get(key))


def located_of(record: dict[str, Any]) -> dict[str, str]:
    return {"cluster": record["cluster"], "host": record["host"]}


def _encode(obj: Any) -> bytes:
    # orjson: a fleet's first upload encodes two documents a GPU (~7 % of storing it with
    # the standard json); compact, keys sorted, as before (text beyond ASCII stays UTF-8)
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)


def list_records(keys: Keys, cluster: str | None = None, host: str | None = None) -> list[dict]:
    """GPU records sorted by key (cluster, host, uuid); one range read per shard.

    A cluster's records come from its shard (StoreUnavailable naming it when it
    is down); the whole fleet from every shard at once (store/shards.py: the
    shards that do not answer are left out and the answer is marked partial).
    """
    prefix = keys.records_prefix(cluster, host)

    def read() -> list[kv.Item]:
        return kv.get_prefix(prefix)

    if cluster is not None and not shards.pinned():
        with shards.in_cluster(cluster):
            items = read()
    else:
        items = sorted(
            (i for part in shards.fan_out(read).values() for i in part), key=lambda i: i.key
        )
    return [json.loads(item.value) for item in items]


def gpu_shard(keys: Keys, uuid: str) -> str:
    """The shard that holds the GPU (its locator); raises NotFound or StoreUnavailable."""
    return shards.of_gpu(uuid, lambda: kv.get(keys.locator(uuid)) is not None)


def instances_of(keys: Keys, uuid: str) -> list[str]:
    """The uuids of the MIG instances registered under GPU `uuid`, sorted."""
    prefix = keys.instances_prefix(uuid)
    end = kv.prefix_end(prefix)
    return [info.key[len(prefix) :] for info in kv.keys_in_range(prefix, end)]


def all_instances(keys: Keys) -> dict[str, list[str]]:
    """{parent uuid: [instance uuids]} of every MIG instance: one keys-only range read."""
    prefix = keys.all_instances()
    out: dict[str, list[str]] = {}
    for info in kv.keys_in_range(prefix, kv.prefix_end(prefix)):
        parent, _, uuid = info.key[len(prefix) :].partition("/")
        out.setdefault(parent, []).append(uuid)
    return out


def get_record(keys: Keys, uuid: str) -> dict[str, Any]:
    """One GPU's record via its locator, in the current shard; raises NotFound."""
    located = _decode(kv.get(keys.locator(uuid)))
    if located is None:
        raise NotFound(f"no GPU with uuid {uuid!r}")
    record = _read_record(keys.record(located["cluster"], located["host"], uuid))
    if record is None:
        raise NotFound(f"no GPU with uuid {uuid!r}")
    return record
