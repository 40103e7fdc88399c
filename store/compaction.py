"""Compaction, rollups and retention: the periodic upkeep of the block store.

One run (under a lease lock, so never two at once):

1. finds the raw blocks written since the last run (`min_mod_revision` range read
   of keys only, from the cursor),
2. merges each touched raw window's blocks into one,
3. per rollup tier, splits once the blocks written with an older, longer
   window (store/rollup_windows.py), then writes the rollup block of each window that is closed
   (store/closing.py) and was touched or closed since the last run; open
   windows are left to reads, so a run never rewrites a growing rollup block,
4. deletes what is older than each tier keeps, counted back from the newest
   sample in the store, and the workload periods that attributed only what is gone,
5. moves the cursor to the revision read at the start, unless a step lost a
   race with ingest (then the next run sees the same windows again).

Every write is one transaction guarded by "nothing in these key ranges changed
since I read them", so a block that ingest writes meanwhile is never lost nor
overtaken by older data: the step simply fails and is retried next run.

One GPU's failure (a block that cannot be decoded or encoded, a bug) never
stops the others: it is logged, counted (`telemetry_upkeep_failures_total`,
the report's `failures`) and the run goes on and saves its cursor. Only etcd
being unavailable stops a run (nothing can be done then).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from observability.metrics import UPKEEP_FAILURES
from store import closing, kv
from store.codec import block_digest, encode_block
from store.errors import StoreUnavailable
from store.keys import Keys, window_span
from store.order import by_upload, in_merge_order
from store.read import refreshed
from store.rollup import decode_rollup, encode_rollup
from store.rollup_windows import split_old_windows
from store.tiers import Tier
from store.workloads import trim_periods
from store.write import latest_values

log = logging.getLogger(__name__)


@dataclass
class Report:
    skipped: bool = False
    raw_windows_merged: int = 0
    blocks_removed: int = 0
    rollups_written: int = 0
    rollups_split: int = 0  # blocks of an older, longer rollup window split (upgrade)
    deleted_by_retention: int = 0
    periods_trimmed: int = 0  # workload periods older than anything retention keeps
    conflicts: int = 0
    cursor: int = 0
    notes: list[str] = field(default_factory=list)
    # one entry per GPU step that failed: {"uuid", "step", "error"}
    failures: list[dict[str, str]] = field(default_factory=list)


def _guarded(report: Report, step: str, uuid: str, work: Callable[[], Any]) -> None:
    """Run one GPU's step; a failure other than etcd being down is recorded, not raised."""
    try:
        work()
    except StoreUnavailable:
        raise
    except Exception as exc:  # one bad GPU must not stop upkeep for all
        log.exception("upkeep step %s failed for GPU %s", step, uuid)
        UPKEEP_FAILURES.labels(step).inc()
        error = f"{type(exc).__name__}: {exc}"[:500]
        report.failures.append({"uuid": uuid, "step": step, "error": error})


def compact(
    keys: Keys, tiers: list[Tier], retention: bool = True, now_ms: int | None = None
) -> Report:
    """One compaction run; returns what it did. Safe to run while ingest goes on.

    `now_ms` bounds the retention reference from above (see `apply_retention`).
    """
    report = Report()
    with kv.lock(keys.compaction_lock()) as held:
        if not held:
            report.skipped = True
            return report
        start_rev = kv.revision()
        cursor_item = kv.get(keys.compaction_cursor())
        cursor = int(cursor_item.value) if cursor_item else 0
        raw, rollup_tiers = tiers[0], tiers[1:]
        dirty = kv.keys_in_range(
            keys.all_blocks(), kv.prefix_end(keys.all_blocks()), min_mod_revision=cursor + 1
        )
        windows = {
            (Keys.uuid_of(k.key), Keys.parse_block(k.key).t_first // raw.window_ms) for k in dirty
        }
        for uuid, w in sorted(windows):
            held.refresh()
            first = w * raw.window_ms
            _guarded(
                report,
                "merge",
                uuid,
                lambda u=uuid, f=first: _merge_raw_window(keys, u, f, raw.window_ms, report),
            )
        latest = latest_values(keys) if rollup_tiers else {}
        newest = max((ts for v in latest.values() for ts, _ in v.values()), default=0)
        if now_ms is not None:
            newest = min(newest, now_ms)  # a far-future sample closes no window early
        for tier in rollup_tiers:
            held.refresh()
            split, lost = split_old_windows(keys, tier, raw)
            report.rollups_split += split
            report.conflicts += lost
            until = closing.closed_until(tier, raw, newest)
            since = closing.rolled_until(keys, tier)
            touched = {(u, (w * raw.window_ms) // tier.window_ms) for u, w in windows}
            touched = {(u, tw) for u, tw in touched if closing.is_closed(tier, tw, until)}
            touched |= closing.newly_closed(keys, tier, sorted(latest), since, until)
            for uuid, tw in sorted(touched):
                held.refresh()
                first = tw * tier.window_ms
                _guarded(
                    report,
                    f"rollup-{tier.name}",
                    uuid,
                    lambda u=uuid, f=first, t=tier: _rebuild_rollup(keys, t, raw, u, f, report),
                )
            # a lost race leaves its raw keys dirty (cursor kept): the next run redoes it
            if until > since:
                closing.save_rolled_until(keys, tier, until)
        if retention:
            apply_retention(keys, tiers, report, now_ms)
        report.cursor = start_rev if not report.conflicts else cursor
        kv.put(keys.compaction_cursor(), str(report.cursor).encode())
    return report


def _merge_raw_window(keys: Keys, uuid: str, first: int, window: int, report: Report) -> None:
    """Merge a window's raw blocks into one block per upload that still owns samples.

    Samples keep the order of the upload that wrote them (store/order.py), so a
    chunk of an older upload delivered after this merge still loses to newer
    uploads. Usually one upload owns a window, or a re-upload overrides all of
    an older one: one block is left.
    """
    start, end = window_span(keys.blocks_prefix(uuid), first, first + window - 1)
    items, rev = kv.get_range_rev(start, end)
    if len(items) <= 1:
        return
    parts = by_upload(items)
    outputs = []
    for upload, chunk, samples in parts:
        data = encode_block(samples)
        if len(data) > kv.MAX_TXN_BYTES:
            report.notes.append(f"{uuid}: window at {first} too large to merge; left as is")
            return
        ts = samples.ts
        key = keys.block(uuid, int(ts.min()), int(ts.max()), block_digest(data), upload, chunk)
        outputs.append((key, data))
    new_keys = {k for k, _ in outputs}
    if new_keys == {it.key for it in items}:
        return  # already one block per upload: nothing to merge
    # The deletes, at most one transaction's worth, take the oldest in merge order. A
    # window with more blocks than that is finished by the next runs; the outputs
    # already hold the winning values of the blocks left.
    room = max(kv.MAX_TXN_OPS - 2 - len(outputs), 1)
    group = [it for it in in_merge_order(items) if it.key not in new_keys][:room]
    ops = [kv.op_delete(it.key) for it in group] + [kv.op_put(k, v) for k, v in outputs]
    if not kv.txn([kv.cmp_range_unchanged(start, end, rev)], ops):
        report.conflicts += 1
        return
    kept = new_keys & {it.key for it in items}
    report.raw_windows_merged += 1
    report.blocks_removed += len(group) - (len(outputs) - len(kept))
    if len(items) - len(kept) > len(group):
        report.conflicts += 1  # not a race, but the cursor must not pass this window yet


def _rebuild_rollup(
    keys: Keys, tier: Tier, raw: Tier, uuid: str, first: int, report: Report
) -> None:
    last = first + tier.window_ms - 1
    raw_start, raw_end = window_span(keys.blocks_prefix(uuid), first, last)
    roll_start, roll_end = window_span(keys.rollups_prefix(tier.name, uuid), first, last)
    rev = kv.revision()  # before reading: anything written after it fails the compare
    raw_items = kv.get_range(raw_start, raw_end)
    old_items = kv.get_range(roll_start, roll_end)
    old = [decode_rollup(it.value) for it in old_items]
    buckets = refreshed(old, raw_items, raw.window_ms, tier.resolution_ms)
    if not len(buckets):
        return
    data = encode_rollup(buckets)
    key = keys.rollup(
        tier.name, uuid, int(buckets.ts.min()), int(buckets.ts.max()), block_digest(data)
    )
    newest_raw = max((it.mod_revision for it in raw_items), default=0)
    if [it.key for it in old_items] == [key] and old_items[0].mod_revision > newest_raw:
        return  # same content, and readers see it as up to date (newer than its raw blocks)
    ops = [kv.op_delete(it.key) for it in old_items if it.key != key] + [kv.op_put(key, data)]
    compare = [
        kv.cmp_range_unchanged(raw_start, raw_end, rev),
        kv.cmp_range_unchanged(roll_start, roll_end, rev),
    ]
    if kv.txn(compare, ops):
        report.rollups_written += 1
    else:
        report.conflicts += 1


def apply_retention(
    keys: Keys, tiers: list[Tier], report: Report, now_ms: int | None = None
) -> None:
    """Delete blocks of each tier that end before (reference - that tier's retention).

    The reference is each GPU's own newest sample (its latest values), capped at
    `now_ms` when given: a sample stamped in the far future can only age its
    own GPU's data, and only up to the clock; loading last year's file keeps it
    (its GPUs' newest samples are last year's). A GPU that went silent keeps its
    last `retention` of data. One keys-only range read per GPU and tier, bounded
    to blocks that start before the cutoff.
    """
    since = kv.revision()  # a GPU's periods are trimmed only if no old block arrived since
    for uuid, values in latest_values(keys).items():
        stamps = [ts for ts, _ in values.values()]
        if not stamps:
            continue
        reference = max(stamps) if now_ms is None else min(max(stamps), now_ms)
        _guarded(
            report,
            "retention",
            uuid,
            lambda u=uuid, r=reference: _retain_gpu(keys, tiers, u, r, since, report),
        )


def _retain_gpu(
    keys: Keys, tiers: list[Tier], uuid: str, reference: int, since: int, report: Report
) -> None:
    horizon = reference  # no kept block of any tier holds a sample older than this
    scanned = []
    for tier in tiers:
        cutoff = reference - tier.retention_ms
        if cutoff <= 0:
            horizon = 0  # this tier keeps everything
            continue
        prefix = keys.blocks_prefix(uuid) if tier.is_raw else keys.rollups_prefix(tier.name, uuid)
        start, end = window_span(prefix, 0, cutoff - 1)
        scanned.append((start, end))
        spans = [(k.key, Keys.parse_block(k.key)) for k in kv.keys_in_range(start, end)]
        old = [key for key, block in spans if block.t_last < cutoff]
        # a kept block may start before the cutoff (by more than a window when it was
        # written with an older, longer window), and one written later may start a
        # window before it
        kept = [block.t_first for _, block in spans if block.t_last >= cutoff]
        horizon = min(horizon, cutoff - tier.window_ms, *kept)
        report.deleted_by_retention += kv.delete_in_batches(old)
    if horizon > 0:
        guards = [kv.cmp_range_unchanged(start, end, since) for start, end in scanned]
        report.periods_trimmed += trim_periods(keys, uuid, horizon, guards)


def expire_jobs(keys: Keys, max_age_ms: int, now_ms: int) -> int:
    """Delete job documents and chunk markers of jobs created more than `max_age_ms` ago."""
    removed = 0
    for item in kv.get_prefix(keys.jobs_prefix()):
        job = json.loads(item.value)
        if now_ms - int(job.get("created_at", now_ms)) > max_age_ms:
            kv.txn(
                [],
                [
                    kv.op_delete(item.key),
                    kv.op_delete_prefix(keys.chunks_prefix(job["id"])),
                    kv.op_delete_prefix(keys.failures_prefix(job["id"])),
                ],
            )
            removed += 1
    return removed
