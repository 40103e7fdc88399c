"""Ingest jobs: the job document (one writer: the ingesting process) and chunk progress.

This is the job's one read model: `load_job` (the API, the ingest command) and `list_jobs`
(the admin) answer the same shape, the saved document plus the workers' progress
(`chunks_done`, `chunks_failed`) and the public `state` (running, done or failed).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from django.conf import settings

from store import kv, shards
from store.errors import InvalidSegment, NotFound, StoreUnavailable
from store.keys import Keys, check_segment


def new_job_id() -> str:
    """Time-sortable and unguessable: 13-digit epoch ms, a dash, 8 hex digits."""
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


def new_upload_seq(keys: Keys, cluster: str) -> int:
    """A number greater than every earlier upload's into the same shard (the etcd revision
    of a put in the shard of `cluster`, where the job's chunks are stored).

    Taken once per job, before its first chunk is queued; every chunk carries it
    and the newest upload of a sample wins (store/order.py).
    """
    with shards.in_cluster(cluster):
        return kv.put_revision(keys.upload_counter(), b"")


def save_job(keys: Keys, job: dict[str, Any]) -> None:
    """Write the job document in the shard of its cluster (where its chunks go)."""
    with shards.in_cluster(str(job.get("cluster", ""))):
        kv.put(keys.job(job["id"]), json.dumps(job, separators=(",", ":")).encode())


def job_shard(keys: Keys, job_id: str) -> str:
    """The shard holding a job; raises NotFound, or StoreUnavailable when it may be in one
    that does not answer. With one shard, that one, unread (the job's read says NotFound)."""
    if len(every := shards.names()) == 1:
        return every[0]
    with shards.collecting() as partial:
        found = [
            s
            for s, yes in shards.fan_out(lambda: kv.get(keys.job(job_id)) is not None).items()
            if yes
        ]
    if found:
        return found[0]
    if partial.missing:
        names = ", ".join(sorted(partial.missing))
        raise StoreUnavailable(f"etcd shard {names} is unavailable: job {job_id!r} may be there")
    raise NotFound(f"no ingest job {job_id!r}")


def load_job(keys: Keys, job_id: str) -> dict[str, Any]:
    """The job as answers show it; with `chunk_errors` (the first 20) when chunks failed.

    Raises NotFound, StoreUnavailable.
    """
    with shards.use(job_shard(keys, job_id)):
        return _load_job(keys, job_id)


def _load_job(keys: Keys, job_id: str) -> dict[str, Any]:
    # the document and its chunk counts in one round trip (a polled job is read often)
    key = keys.job(job_id)
    item, (done, failed) = kv.get_counting([(key, _progress_prefixes(keys, job_id))])[key]
    if item is None:
        raise NotFound(f"no ingest job {job_id!r}")
    job = _with_progress(json.loads(item.value), (done, failed))
    if job["chunks_failed"]:
        failures = kv.get_prefix(keys.failures_prefix(job_id))
        job["chunk_errors"] = [json.loads(f.value) for f in failures[:20]]
    return job


def list_jobs(keys: Keys, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
    """`limit` jobs after the `offset` newest, newest first, shaped as `load_job` shapes one.

    Job ids start with their creation time in zero-padded epoch milliseconds
    (new_job_id), so sorting ids sorts jobs by age. The keys of every job are read
    without their documents, then the page's documents with their chunk counts: a page
    costs what it shows, not what JOB_RETENTION keeps. Raises StoreUnavailable.
    Documents that are not valid JSON (or gone meanwhile) are skipped rather than hiding
    every other job; `offset` counts documents (as count_jobs does), a skipped one makes
    room for the next.
    """
    prefix = keys.jobs_prefix()
    listed = shards.fan_out(lambda: kv.keys_in_range(prefix, kv.prefix_end(prefix)))
    newest = sorted(
        ((info.key, shard) for shard, part in listed.items() for info in part), reverse=True
    )[offset:]
    page: list[dict[str, Any]] = []
    while newest and len(page) < limit:
        wanted, newest = newest[: limit - len(page)], newest[limit - len(page) :]
        page += _jobs_at(keys, wanted)
    return page


def _jobs_at(keys: Keys, wanted: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """The jobs of (key, shard) pairs, in their order, each with its chunk counts read in
    the same transaction as its document; a document that is not a job is left out."""
    read: dict[str, tuple[kv.Item | None, list[int]]] = {}
    for shard in {s for _, s in wanted}:
        ids = {k: i for k, s in wanted if s == shard and (i := _job_id(keys, k))}
        with shards.use(shard):
            read.update(kv.get_counting([(k, _progress_prefixes(keys, i)) for k, i in ids.items()]))
    page = []
    for key, _ in wanted:
        item, counts = read.get(key, (None, [0, 0]))
        try:
            job = json.loads(item.value) if item is not None else None
        except ValueError:
            continue
        if isinstance(job, dict) and "id" in job:
            page.append(_with_progress(job, (counts[0], counts[1])))
    return page


def _job_id(keys: Keys, key: str) -> str:
    """The job id a job key names; empty for a key no job is saved under."""
    try:
        return check_segment(key[len(keys.jobs_prefix()) :], "job id")
    except InvalidSegment:
        return ""


def _progress_prefixes(keys: Keys, job_id: str) -> list[str]:
    """Where a job's stored chunks and failed chunks are counted."""
    return [keys.chunks_prefix(job_id), keys.failures_prefix(job_id)]


def count_jobs(keys: Keys) -> int:
    """How many job documents are kept (JOB_RETENTION), in every shard."""
    return sum(shards.fan_out(lambda: kv.count_prefix(keys.jobs_prefix())).values())


def _with_progress(job: dict[str, Any], counts: tuple[int, int]) -> dict[str, Any]:
    """The job with its chunk counts (done, failed) and its state."""
    job["chunks_done"], job["chunks_failed"] = counts
    stale_ms = int(settings.INGEST_JOB_STALE * 1000)
    if is_stale(job, int(time.time() * 1000), stale_ms):
        job["state"] = "failed"
        job["error"] = _stale_error(job, stale_ms)
    job["state"] = public_state(job)
    return job


def is_stale(job: dict[str, Any], now_ms: int, stale_ms: int) -> bool:
    """Still "parsing" and its document not saved for `stale_ms`: its process died.

    A parsing process saves the document at least every INGEST_JOB_HEARTBEAT
    while rows come in (apps/ingest/jobs.py), so silence this long means it is gone.

    >>> is_stale({"state": "parsing", "updated_at": 1_000}, 700_000, 600_000)
    True
    >>> is_stale({"state": "parsing", "updated_at": 1_000}, 500_000, 600_000)
    False
    >>> is_stale({"state": "parsed", "updated_at": 1_000}, 700_000, 600_000)
    False
    """
    if job.get("state") != "parsing":
        return False
    seen = job.get("updated_at", job.get("created_at"))
    return seen is not None and now_ms - int(seen) > stale_ms


def _stale_error(job: dict[str, Any], stale_ms: int) -> str:
    seen = int(job.get("updated_at", job.get("created_at", 0))) // 1000
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seen))
    return (
        f"the process parsing this upload stopped reporting at {stamp} (nothing saved for "
        f"INGEST_JOB_STALE={stale_ms / 1000:g}s): it died. The counts are those it reached; "
        "the chunks it queued are still stored. Upload the file again to complete it"
    )


def public_state(job: dict[str, Any]) -> str:
    """running, done or failed, from the saved state and the workers' markers.

    >>> public_state({"state": "parsed", "chunks_expected": 2, "chunks_done": 2})
    'done'
    >>> public_state({"state": "parsed", "chunks_expected": 2, "chunks_done": 1})
    'running'
    >>> public_state({"state": "parsed", "chunks_expected": 1, "chunks_failed": 1})
    'failed'
    """
    finished = job.get("chunks_done", 0) + job.get("chunks_failed", 0)
    if job["state"] == "failed":
        return "failed"
    if job["state"] == "parsing" or finished < job.get("chunks_expected", 0):
        return "running"  # still reading the file, or chunks still queued
    return "failed" if job.get("chunks_failed") else "done"


def failure_record(seq: int, error: str) -> bytes:
    """What a chunk's failure key holds (`chunk_errors` shows it)."""
    return json.dumps({"seq": seq, "error": error[:500]}).encode()


def mark_chunk_failed(keys: Keys, job_id: str, seq: int, error: str) -> None:
    """Record that a chunk can never be stored (a bug or a corrupt payload, not an outage).
    Not when its marker is there: a chunk stored by an earlier delivery would be counted
    twice (done and failed)."""
    try:
        shard = job_shard(keys, job_id)
    except NotFound:
        shard = shards.current()
    failure = failure_record(seq, error)
    with shards.use(shard):
        marker = keys.chunk(job_id, seq)
        kv.txn([kv.cmp_absent(marker)], [kv.op_put(keys.failure(job_id, seq), failure)])
