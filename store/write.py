"""Samples in and out: blocks, latest values and chunk markers.

A chunk is usually one read and one transaction: its GPUs' workload periods, GPU
records, latest values, blocks and chunk marker together (see docs/STORAGE.md). A chunk
too large for that merges its workload periods first, then registers its new GPUs
(batched) when their records would not fit, and stores the rest in one transaction; a
chunk still too large takes steps: GPU records, latest values (compare-and-swap), then
blocks with the chunk marker in the last transaction.
Every step is idempotent, so a chunk retried after a crash at any point ends in the
same state: block keys carry a digest of their content, latest values only move
forward in time and periods merge as a union.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store import kv, shards
from store.codec import Samples, block_digest, encode_blocks
from store.errors import Conflict, OverBound
from store.jobs import failure_record
from store.keys import Keys
from store.registry import (
    Registration,
    ensure_registered,
    keys_to_read,
    known,
    pending,
    plan_registration,
)
from store.workloads import period_keys, update_workloads
from store.workloads import write_ops as workload_ops

_MAX_CAS_ATTEMPTS = 16
_ONE_TXN_ATTEMPTS = 3


@dataclass(frozen=True, slots=True)
class GpuBatch:
    """One GPU's part of a chunk: its facts and its samples."""

    facts: dict
    samples: Samples
    workloads: tuple = ()  # workload periods (start_ms, end_ms, labels), store/workloads.py

    @property
    def uuid(self) -> str:
        return str(self.facts["uuid"])


@dataclass(frozen=True, slots=True)
class ChunkResult:
    samples: int
    blocks: int
    gpus_registered: int
    already_done: bool
    # GPU records this call created or changed (for mirrors such as the admin inventory)
    records: tuple[dict, ...] = ()
    # GPUs of the chunk refused (OverBound) while the others were stored
    refused: tuple[str, ...] = ()
    # already_done, and the earlier delivery recorded the chunk failed (not stored)
    recorded_failed: bool = False


def write_chunk(
    keys: Keys,
    job_id: str,
    seq: int,
    batches: Sequence[GpuBatch],
    window_ms: int,
    upload: int = 0,
) -> ChunkResult:
    """Persist one chunk (`_write_chunk`). A GPU past a stored bound (OverBound) is refused
    and the chunk's other GPUs are stored: a scrape or a stream chunk holds a fleet, which
    one GPU must not stop. The chunk then records, in its last transaction and instead of
    its marker, a failure naming what was refused, so its job ends failed and counts it
    once; a redelivery finds it as it would the marker. OverBound when every GPU is."""
    batches = [b for b in batches if len(b.samples)]
    refused: dict[str, str] = {}
    while True:
        try:
            result = _write_chunk(keys, job_id, seq, batches, window_ms, upload, refused)
        except OverBound as exc:
            kept = [b for b in batches if b.uuid not in exc.each]
            if not exc.each or exc.each.keys() & refused.keys():
                raise
            refused.update(exc.each)  # every GPU past its bound, found in one pass
            if not kept:  # the chunk fails whole, naming every GPU refused
                raise OverBound(_refused_text(refused), refused) from exc
            batches = kept
            continue
        if result.already_done:  # an earlier delivery's record stands: say which it was
            failed = kv.get(keys.failure(job_id, seq)) is not None
            return dataclasses.replace(result, recorded_failed=failed)
        return dataclasses.replace(result, refused=tuple(refused))


def _write_chunk(
    keys: Keys,
    job_id: str,
    seq: int,
    batches: list[GpuBatch],
    window_ms: int,
    upload: int,
    refused: dict[str, str],
) -> ChunkResult:
    """Persist one chunk; safe to call again with the same arguments (retries, redelivery).

    `upload` is the job's upload sequence (store/jobs.py::new_upload_seq): it
    goes into each block's key and each latest value, so the newest upload of a
    sample wins whatever order chunks arrive in (store/order.py).

    The usual case is one read and one transaction: workload periods, GPU records
    (when new or changed), latest values, blocks and the chunk marker, all guarded by
    compares on what was read. When all of that cannot fit one transaction, the periods
    are merged first, on their own, and the GPUs registered (when their records would not
    fit), and the rest may still fit. A chunk still too large,
    or one that keeps losing races, takes the step-by-step path (periods, records,
    latest, then blocks with the marker last), each step idempotent.
    """
    periods = {b.uuid: list(b.workloads) for b in batches if b.workloads}
    total = sum(len(b.samples) for b in batches)
    order = (upload, seq)
    blocks = _blocks(keys, batches, window_ms, order)
    marker = (keys.chunk(job_id, seq), _encode({"samples": total, "blocks": len(blocks)}))
    if refused:
        marker = _refusal(keys, job_id, seq, refused)
    # either one says a delivery already stored what it could: a chunk counts once
    done = (keys.chunk(job_id, seq), keys.failure(job_id, seq))
    regs = [
        Registration(b.facts, int(b.samples.ts.min()), int(b.samples.ts.max())) for b in batches
    ]
    newest = {b.uuid: _newest_per_metric(b.samples, upload, seq) for b in batches}
    chunk = _Writes(keys, regs, newest, blocks, marker, done, total)
    days = len(period_keys(keys, periods))
    if _ops_bound(pending(keys, regs), newest, days, blocks) <= kv.MAX_TXN_OPS:
        try:
            return _in_one_txn(chunk, periods)
        except Conflict:
            return _step_by_step(chunk, periods)
        except _TooBig:
            pass  # too many bytes with the periods (long period lists): without them
    if kv.get_many(list(done)):  # a redelivery: merge nothing again
        return ChunkResult(total, 0, 0, already_done=True)
    update_workloads(keys, periods)  # a step of their own: the rest may fit one txn
    # new GPUs too (their records and locators, batched): a fleet's first upload then
    # stores each chunk in one more transaction, not the step-by-step path's four
    early: list[dict] = []
    if _ops_bound(pending(keys, regs), newest, 0, blocks, per_registration=2) > kv.MAX_TXN_OPS:
        early = ensure_registered(keys, regs)
    try:
        result = _in_one_txn(chunk, {})
    except (Conflict, _TooBig):
        result = _step_by_step(chunk, {})
    if not early:
        return result
    records = (*early, *result.records)
    return dataclasses.replace(result, gpus_registered=len(records), records=records)


def _refusal(keys: Keys, job_id: str, seq: int, refused: dict[str, str]) -> tuple[str, bytes]:
    """The failure a partly stored chunk records in place of its marker (as
    store.jobs.mark_chunk_failed writes one)."""
    error = f"{_refused_text(refused)}; the chunk's other GPUs were stored"
    return keys.failure(job_id, seq), failure_record(seq, error)


def _refused_text(refused: dict[str, str]) -> str:
    """The first refusal's message, naming the other GPUs refused (at most ~480 chars)."""
    first = next(iter(refused.values()))
    others = list(refused)[1:]
    error = first if not others else f"{first}; also refused: {', '.join(others)}"
    return error if len(error) <= 480 else f"{error[:440]}... ({len(refused)} GPUs)"


@dataclass(frozen=True, slots=True)
class _Writes:
    """What storing one chunk writes, but its workload periods."""

    keys: Keys
    regs: list[Registration]
    newest: dict[str, dict[str, list]]
    blocks: list[tuple[str, bytes]]
    marker: tuple[str, bytes]
    done: tuple[str, str]  # the marker's key and the failure's: either means stored
    total: int


def _in_one_txn(c: _Writes, periods: dict[str, list]) -> ChunkResult:
    """The chunk in one read and one transaction; Conflict after losing every race,
    _TooBig when it cannot fit."""
    done, records = kv.guaranteed_update(
        lambda: _write_in_one_txn(c.keys, c.regs, c.newest, periods, c.blocks, c.marker, c.done),
        attempts=_ONE_TXN_ATTEMPTS,
        conflict=lambda: "the chunk kept losing races",
    )
    return ChunkResult(c.total, 0 if done else len(c.blocks), len(records), done, tuple(records))


def _step_by_step(c: _Writes, periods: dict[str, list]) -> ChunkResult:
    """The chunk in idempotent steps, the marker last (too large for one transaction, or
    losing races): a crash at any point is repaired by doing it again."""
    if kv.get_many(list(c.done)):
        return ChunkResult(c.total, 0, 0, already_done=True)
    # periods first: idempotent, so a crash before the blocks only repeats them
    update_workloads(c.keys, periods)
    records = ensure_registered(c.keys, c.regs)
    update_latest(c.keys, c.newest)
    kv.put_batches(c.blocks)
    # The marker alone, only while neither key is there: another delivery running at the
    # same time may have recorded the chunk the other way (a GPU refused by one, stored by
    # the other after a trim), and a chunk must count once.
    if not kv.txn([kv.cmp_absent(key) for key in c.done], [kv.op_put(*c.marker)]):
        return ChunkResult(c.total, len(c.blocks), len(records), True, tuple(records))
    return ChunkResult(c.total, len(c.blocks), len(records), False, tuple(records))


class _TooBig(Exception):
    """The chunk's writes do not fit one etcd transaction: no use reading again."""


# etcd operations a pending GPU registration may take: record, locator, the old record's
# delete (moved host), the MIG instance key (store/registry.py::plan_registration)
_REGISTRATION_OPS = 4


def _ops_bound(
    todo: Sequence[Registration],
    newest: dict[str, dict[str, list]],
    period_days: int,
    blocks: list[tuple[str, bytes]],
    per_registration: int = _REGISTRATION_OPS,
) -> int:
    """The most operations (or compares) the chunk's one transaction can take; with
    `per_registration=2`, what it takes when no GPU moved or is a MIG instance (a record
    and a locator each)."""
    return 2 + len(blocks) + len(newest) + period_days + per_registration * len(todo)


def _write_in_one_txn(
    keys: Keys,
    regs: list[Registration],
    newest: dict[str, dict[str, list]],
    periods: dict[str, list],
    blocks: list[tuple[str, bytes]],
    marker: tuple[str, bytes],
    done: tuple[str, str],
) -> tuple[bool, list[dict]] | None:
    """(already_done, records written) on success; None when it lost a race; _TooBig
    when it does not fit. The workload periods go in the same transaction: a chunk is
    stored whole or not at all, in one read and one write."""
    todo = pending(keys, regs)
    read = [
        *done,
        *(keys.latest(u) for u in newest),
        *period_keys(keys, periods),
        *keys_to_read(keys, todo),
    ]
    if len(read) > kv.MAX_TXN_OPS:
        raise _TooBig
    current = kv.get_many(read)
    if any(key in current for key in done):
        return True, []
    plans = [p for p in (plan_registration(keys, r, current) for r in todo) if p is not None]
    compare, ops = workload_ops(keys, periods, current)
    compare += [kv.cmp_absent(key) for key in done]
    for plan in plans:
        compare += plan.compare
        ops += plan.ops
    for uuid, values in newest.items():
        guarded = _latest_write(keys.latest(uuid), values, current.get(keys.latest(uuid)))
        if guarded is not None:
            compare.append(guarded[0])
            ops.append(guarded[1])
    ops += [kv.op_put(k, v) for k, v in (*blocks, marker)]
    size = sum(kv.put_bytes(op) for op in ops)  # a GPU's periods can be long: all counted
    if len(ops) > kv.MAX_TXN_OPS or len(compare) > kv.MAX_TXN_OPS or size > kv.MAX_TXN_BYTES:
        raise _TooBig
    if not kv.txn(compare, ops):
        return None
    for plan in plans:
        known.remember(keys.root, plan.record)
    return False, [plan.record for plan in plans]


def _encode(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _blocks(
    keys: Keys, batches: Sequence[GpuBatch], window_ms: int, order: tuple[int, int]
) -> list[tuple[str, bytes]]:
    """One block per GPU and time window its samples touch, keyed by its content digest;
    encoded together (store.codec.encode_blocks: the same bytes as one by one)."""
    parts: list[tuple[str, Samples]] = []
    for batch in batches:
        s = batch.samples
        windows = s.ts // window_ms
        if windows.min() == windows.max():  # the usual chunk: one window a GPU
            parts.append((batch.uuid, s))
            continue
        for w in np.unique(windows):
            sel = windows == w
            parts.append((batch.uuid, Samples(s.ts[sel], s.metric[sel], s.value[sel], s.names)))
    encoded = encode_blocks([part for _, part in parts])
    return [
        (keys.block(uuid, int(p.ts.min()), int(p.ts.max()), block_digest(data), *order), data)
        for (uuid, p), data in zip(parts, encoded, strict=True)
    ]


# Latest values ---------------------------------------------------------------------
def _newest_per_metric(samples: Samples, upload: int = 0, chunk: int = 0) -> dict[str, list]:
    """{metric: [ts, value, upload, chunk]} of the newest sample of each metric (last wins on
    equal ts)."""
    if not len(samples):
        return {}
    # sort by (metric, ts, position): the last row of each metric run is its newest sample
    order = np.lexsort((np.arange(len(samples)), samples.ts, samples.metric))
    metric = samples.metric[order]
    last = order[np.flatnonzero(np.r_[metric[1:] != metric[:-1], True])]
    return {
        samples.names[int(samples.metric[i])]: [
            int(samples.ts[i]),
            float(samples.value[i]),
            upload,
            chunk,
        ]
        for i in last.tolist()
    }


def _latest_order(entry: list) -> tuple[int, int, int]:
    """(ts, upload, chunk): a newer sample wins; at equal ts the newer upload, then the later
    chunk of one upload, as blocks are ordered (store/order.py). Entries written before
    chunks were kept count as chunk 0, before upload order as upload 0."""
    return entry[0], entry[2] if len(entry) > 2 else 0, entry[3] if len(entry) > 3 else 0


def _merge_latest(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    merged = dict(old)
    for name, entry in new.items():
        current = merged.get(name)
        if current is None or _latest_order(entry) >= _latest_order(current):
            merged[name] = list(entry)
    return merged


def update_latest(keys: Keys, newest: dict[str, dict[str, list]]) -> None:
    """Move each GPU's latest values ({uuid: {metric: [ts, value, upload, chunk]}}) forward.

    Compare-and-swap on mod revision, retried; a value only replaces one with an older
    timestamp, or an equal one from an older upload or an earlier or the same chunk.
    """
    todo = dict(newest)

    def attempt() -> bool | None:
        nonlocal todo
        lost: dict[str, dict[str, list]] = {}
        uuids = list(todo)
        for i in range(0, len(uuids), kv.MAX_TXN_OPS):
            part = {u: todo[u] for u in uuids[i : i + kv.MAX_TXN_OPS]}
            if not _cas_latest(keys, part):
                lost.update(part)
        todo = lost
        return None if lost else True

    if todo:
        kv.guaranteed_update(
            attempt,
            attempts=_MAX_CAS_ATTEMPTS,
            conflict=lambda: f"latest values of {len(todo)} GPU(s) kept changing; giving up",
        )


def _latest_write(key: str, values: dict[str, list], item: kv.Item | None) -> tuple | None:
    """(compare, put) moving one GPU's latest values forward, or None when nothing is newer."""
    old = json.loads(item.value) if item else {}
    merged = _merge_latest(old, values)
    if merged == old:
        return None
    compare = kv.cmp_absent(key) if item is None else kv.cmp_mod_revision(key, item.mod_revision)
    return compare, kv.op_put(key, _encode(merged))


def _cas_latest(keys: Keys, newest: dict[str, dict[str, list]]) -> bool:
    current = kv.get_many([keys.latest(u) for u in newest])
    compare, ops = [], []
    for uuid, values in newest.items():
        guarded = _latest_write(keys.latest(uuid), values, current.get(keys.latest(uuid)))
        if guarded is not None:
            compare.append(guarded[0])
            ops.append(guarded[1])
    return not ops or kv.txn(compare, ops)


def latest_values(keys: Keys, uuids: Sequence[str] | None = None) -> dict[str, dict[str, list]]:
    """{uuid: {metric: [ts, value]}}: all GPUs (one range read) or the given ones.

    In the current shard inside `shards.use()`, else in every shard at once. The upload
    order stored with each value (for the merge) is left out.
    """

    def read() -> list[kv.Item]:
        if uuids is None:
            return kv.get_prefix(keys.latest_prefix())
        return list(kv.get_many([keys.latest(u) for u in uuids]).values())

    items = [i for part in shards.fan_out(read).values() for i in part]
    return {
        item.key.rsplit("/", 1)[-1]: {m: e[:2] for m, e in json.loads(item.value).items()}
        for item in items
    }
