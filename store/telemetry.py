"""Samples in and out: blocks, latest values and chunk markers.

Write order for one chunk (see docs/STORAGE.md): GPU records, then latest
values (compare-and-swap), then blocks with the chunk marker in the last
transaction. Every step is idempotent, so a chunk retried after a crash at any
point ends in the same state: block keys carry a digest of their content and
latest values only move forward in time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from store import kv
from store.codec import Samples, decode_block, encode_block, merge
from store.errors import Conflict
from store.keys import Keys
from store.registry import Registration, ensure_registered

_MAX_CAS_ATTEMPTS = 16


@dataclass(frozen=True, slots=True)
class GpuBatch:
    """One GPU's part of a chunk: its facts and its samples."""

    facts: dict
    samples: Samples

    @property
    def uuid(self) -> str:
        return str(self.facts["uuid"])


@dataclass(frozen=True, slots=True)
class ChunkResult:
    samples: int
    blocks: int
    gpus_registered: int
    already_done: bool


def write_chunk(
    keys: Keys, job_id: str, seq: int, batches: Sequence[GpuBatch], window_ms: int
) -> ChunkResult:
    """Persist one chunk; safe to call again with the same arguments (retries, redelivery)."""
    marker = keys.chunk(job_id, seq)
    if kv.get(marker) is not None:
        total = sum(len(b.samples) for b in batches)
        return ChunkResult(total, 0, 0, already_done=True)
    batches = [b for b in batches if len(b.samples)]
    regs = [Registration(b.facts, int(b.samples.ts.min())) for b in batches]
    registered = ensure_registered(keys, regs)
    update_latest(keys, {b.uuid: b.samples for b in batches})
    items: list[tuple[str, bytes]] = []
    for batch in batches:
        items.extend(_blocks(keys, batch, window_ms))
    total = sum(len(b.samples) for b in batches)
    items.append((marker, json.dumps({"samples": total, "blocks": len(items)}).encode()))
    kv.put_batches(items)
    return ChunkResult(total, len(items) - 1, registered, already_done=False)


def _blocks(keys: Keys, batch: GpuBatch, window_ms: int) -> list[tuple[str, bytes]]:
    """One block per time window the batch touches, keyed by its content digest."""
    s = batch.samples
    windows = s.ts // window_ms
    out = []
    for w in np.unique(windows):
        sel = windows == w
        part = Samples(s.ts[sel], s.metric[sel], s.value[sel], s.names)
        data = encode_block(part)
        digest = hashlib.blake2b(data, digest_size=8).hexdigest()
        key = keys.block(batch.uuid, int(part.ts.min()), int(part.ts.max()), digest)
        out.append((key, data))
    return out


# Latest values ---------------------------------------------------------------------
def _newest_per_metric(samples: Samples) -> dict[str, list]:
    """{metric: [ts, value]} of the newest sample of each metric (last wins on equal ts)."""
    out: dict[str, list] = {}
    for ts, name, value in samples.rows():
        current = out.get(name)
        if current is None or ts >= current[0]:
            out[name] = [ts, value]
    return out


def _merge_latest(old: dict[str, list], new: dict[str, list]) -> dict[str, list]:
    merged = dict(old)
    for name, (ts, value) in new.items():
        current = merged.get(name)
        if current is None or ts >= current[0]:
            merged[name] = [ts, value]
    return merged


def update_latest(keys: Keys, per_gpu: dict[str, Samples]) -> None:
    """Move each GPU's latest values forward; compare-and-swap on mod revision, retried."""
    pending = {uuid: _newest_per_metric(s) for uuid, s in per_gpu.items()}
    for _ in range(_MAX_CAS_ATTEMPTS):
        if not pending:
            return
        lost: dict[str, dict[str, list]] = {}
        uuids = list(pending)
        for i in range(0, len(uuids), kv.MAX_TXN_OPS):
            part = uuids[i : i + kv.MAX_TXN_OPS]
            if not _cas_latest(keys, {u: pending[u] for u in part}):
                lost.update({u: pending[u] for u in part})
        pending = lost
    raise Conflict(f"latest values of {len(pending)} GPU(s) kept changing; giving up")


def _cas_latest(keys: Keys, newest: dict[str, dict[str, list]]) -> bool:
    current = kv.get_many([keys.latest(u) for u in newest])
    compare, ops = [], []
    for uuid, values in newest.items():
        key = keys.latest(uuid)
        item = current.get(key)
        old = json.loads(item.value) if item else {}
        merged = _merge_latest(old, values)
        if merged == old:
            continue
        compare.append(
            kv.cmp_absent(key) if item is None else kv.cmp_mod_revision(key, item.mod_revision)
        )
        ops.append(kv.op_put(key, json.dumps(merged, separators=(",", ":")).encode()))
    return not ops or kv.txn(compare, ops)


def latest_values(keys: Keys, uuids: Sequence[str] | None = None) -> dict[str, dict[str, list]]:
    """{uuid: {metric: [ts, value]}}: all GPUs (one range read) or the given ones."""
    if uuids is None:
        items = kv.get_prefix(keys.latest_prefix())
    else:
        items = list(kv.get_many([keys.latest(u) for u in uuids]).values())
    return {item.key.rsplit("/", 1)[-1]: json.loads(item.value) for item in items}


# Reads ---------------------------------------------------------------------------------
def read_samples(keys: Keys, uuid: str, start: int, end: int, window_ms: int) -> Samples:
    """Every sample of `uuid` with start <= ts <= end, one per (ts, metric), sorted.

    One range read; overlapping blocks are merged with the most recently written
    block (highest etcd mod revision) winning.
    """
    low, high = keys.block_range(uuid, start, end, window_ms)
    items = kv.get_range(low, high)
    chosen = []
    for item in items:
        name = Keys.parse_block(item.key)
        if name.t_last >= start and name.t_first <= end:
            chosen.append(item)
    chosen.sort(key=lambda it: it.mod_revision)
    merged = merge([decode_block(it.value) for it in chosen])
    sel = (merged.ts >= start) & (merged.ts <= end)
    if sel.all():
        return merged
    return Samples(merged.ts[sel], merged.metric[sel], merged.value[sel], merged.names)
