"""GPU records and locators: created once, rewritten only when a GPU's facts change."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from store import kv, shards
from store.errors import NotFound
from store.keys import Keys

# Facts that identify where a GPU is and what it is; a change to any rewrites the record.
FACT_FIELDS = ("uuid", "cluster", "host", "gpu_index", "device", "model", "driver", "labels")
_CACHE_TTL_S = 300.0
_MAX_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class Registration:
    """What a chunk knows of one GPU: its facts and the earliest sample time it carries."""

    facts: dict[str, Any]
    first_seen: int

    @property
    def uuid(self) -> str:
        return str(self.facts["uuid"])


class _KnownCache:
    """Per-process memory of GPUs already registered with these facts (saves a read per chunk)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], tuple[str, int, float]] = {}

    def fresh(self, root: str, reg: Registration) -> bool:
        with self._lock:
            entry = self._entries.get((root, reg.uuid))
        if entry is None:
            return False
        digest, first_seen, expires = entry
        return (
            expires > time.monotonic()
            and digest == _digest(reg.facts)
            and first_seen <= reg.first_seen
        )

    def remember(self, root: str, record: dict[str, Any]) -> None:
        entry = (_digest(record), int(record["first_seen"]), time.monotonic() + _CACHE_TTL_S)
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
    """One attempt per GPU: the record written, None when already right, False on a lost race."""
    current = kv.get_many(keys_to_read(keys, regs))
    return [_register_one(keys, reg, current) for reg in regs]


@dataclass(frozen=True, slots=True)
class Plan:
    """What registering one GPU needs: the checks that make it safe, and the writes."""

    record: dict[str, Any]
    compare: list[Any]
    ops: list[Any]


def plan_registration(keys: Keys, reg: Registration, current: dict[str, kv.Item]) -> Plan | None:
    """None when the stored record is already right; else a compare-guarded write plan.

    `current` holds what was read of the locator and of the record at the GPU's
    present place. The plan compares the locator's revision, so a racing writer
    makes the transaction fail instead of leaving two records.
    """
    facts = reg.facts
    locator_key = keys.locator(reg.uuid)
    record_key = keys.record(facts["cluster"], facts["host"], reg.uuid)
    locator = current.get(locator_key)
    located = _decode(locator)
    old_key = record_key
    if located is not None:
        old_key = keys.record(located["cluster"], located["host"], reg.uuid)
    old = _decode(current.get(old_key)) if old_key == record_key else _read_record(old_key)
    first_seen = reg.first_seen if old is None else min(int(old["first_seen"]), reg.first_seen)
    record = {**{f: facts.get(f) for f in FACT_FIELDS}, "first_seen": first_seen}
    if old is not None and old_key == record_key and old == record:
        known.remember(keys.root, record)
        return None
    compare = [
        kv.cmp_absent(locator_key)
        if locator is None
        else kv.cmp_mod_revision(locator_key, locator.mod_revision)
    ]
    ops = [
        kv.op_put(record_key, _encode(record)),
        kv.op_put(locator_key, _encode(located_of(record))),
    ]
    if old_key != record_key:
        ops.append(kv.op_delete(old_key))
    return Plan(record, compare, ops)


def keys_to_read(keys: Keys, regs: Sequence[Registration]) -> list[str]:
    """Locator and record keys whose state `plan_registration` needs."""
    wanted = [keys.locator(r.uuid) for r in regs]
    return wanted + [keys.record(r.facts["cluster"], r.facts["host"], r.uuid) for r in regs]


def pending(keys: Keys, regs: Iterable[Registration]) -> list[Registration]:
    """The registrations this process does not know to be stored already."""
    return [r for r in regs if not known.fresh(keys.root, r)]


def _register_one(
    keys: Keys, reg: Registration, current: dict[str, kv.Item]
) -> dict[str, Any] | bool | None:
    plan = plan_registration(keys, reg, current)
    if plan is None:
        return None
    if not kv.txn(plan.compare, plan.ops):
        return False
    known.remember(keys.root, plan.record)
    return plan.record


def _read_record(key: str) -> dict[str, Any] | None:
    return _decode(kv.get(key))


def located_of(record: dict[str, Any]) -> dict[str, str]:
    return {"cluster": record["cluster"], "host": record["host"]}


def _encode(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


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


def get_record(keys: Keys, uuid: str) -> dict[str, Any]:
    """One GPU's record via its locator, in the current shard; raises NotFound."""
    located = _decode(kv.get(keys.locator(uuid)))
    if located is None:
        raise NotFound(f"no GPU with uuid {uuid!r}")
    record = _read_record(keys.record(located["cluster"], located["host"], uuid))
    if record is None:
        raise NotFound(f"no GPU with uuid {uuid!r}")
    return record
