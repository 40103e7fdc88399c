"""The admin's GPU inventory (apps.read.models.Gpu): mirrored from etcd, never the other way.

Two writers: `mirror` (in workers, on store.events.chunk_stored, after a chunk registered
or changed GPUs) and `sync`
(`manage.py sync_inventory`, a full rebuild). etcd stays the system of record: a row
that is missing or stale here changes nothing anyone reads through the API.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, transaction

from apps.read.models import Gpu
from store.keys import Keys
from store.registry import list_records
from store.write import latest_values

log = logging.getLogger(__name__)


def ms_to_datetime(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# the model fields `mirror` writes (`_fields`); last_seen is `sync`'s
MIRRORED = ("cluster", "host", "gpu_index", "device", "model", "driver", "labels", "first_seen")


def _fields(record: dict[str, Any]) -> dict[str, Any]:
    """Model fields of one etcd GPU record (store.registry.FACT_FIELDS + first_seen)."""
    index = record.get("gpu_index")
    return {
        "cluster": record["cluster"],
        "host": record["host"],
        "gpu_index": int(index) if index not in (None, "") else None,
        "device": record.get("device") or "",
        "model": record.get("model") or "",
        "driver": record.get("driver") or "",
        "labels": record.get("labels") or {},
        "first_seen": ms_to_datetime(int(record["first_seen"])),
    }


def mirror(records: Iterable[dict[str, Any]]) -> int:
    """Upsert one row per GPU record (by uuid); returns the rows written.

    Never raises: the caller is a worker whose chunk is already safely in etcd, and
    a database problem (locked SQLite, missing migration) must not fail or retry it.
    The failure is logged; `sync_inventory` repairs the table later.
    """
    records = list(records)
    try:
        # one upsert for all (two queries per GPU before: a fresh fleet's first chunk
        # registers hundreds); the last record of a uuid wins, as one update each would
        rows = {r["uuid"]: Gpu(uuid=r["uuid"], **_fields(r)) for r in records}
        Gpu.objects.bulk_create(
            [rows[uuid] for uuid in sorted(rows)],  # one order for every worker: no deadlock
            update_conflicts=True,
            unique_fields=["uuid"],
            update_fields=[*MIRRORED, "mirrored_at"],
        )
    except DatabaseError as exc:
        log.warning(
            "inventory mirror of %d GPU(s) failed (%s); run `manage.py sync_inventory`",
            len(records),
            exc,
        )
        return 0
    except Exception:
        log.exception("inventory mirror of %d GPU(s) failed", len(records))
        return 0
    return len(records)


def on_chunk_stored(*, records: list[dict[str, Any]], **_: Any) -> None:
    """store.events.chunk_stored receiver: mirror the GPUs a chunk registered or changed."""
    if records:
        mirror(records)


def sync(keys: Keys) -> dict[str, int]:
    """Rebuild the table from etcd: upsert every GPU, delete rows of GPUs etcd no longer has.

    Two range reads (records, latest values), then one database transaction.
    Returns {"gpus", "created", "updated", "deleted"}. Raises StoreUnavailable
    when etcd does not answer (the table is left as it was).
    """
    records = list_records(keys)
    latest = latest_values(keys)
    existing = {g.uuid: g for g in Gpu.objects.all()}
    created = updated = 0
    with transaction.atomic():
        for record in records:
            fields = _fields(record)
            times = [ts for ts, _ in latest.get(record["uuid"], {}).values()]
            fields["last_seen"] = ms_to_datetime(max(times)) if times else None
            row = existing.get(record["uuid"])
            if row is None:
                Gpu.objects.create(uuid=record["uuid"], **fields)
                created += 1
            elif any(getattr(row, name) != value for name, value in fields.items()):
                for name, value in fields.items():
                    setattr(row, name, value)
                row.save()
                updated += 1
        gone = set(existing) - {r["uuid"] for r in records}
        deleted, _ = Gpu.objects.filter(uuid__in=gone).delete()
    return {"gpus": len(records), "created": created, "updated": updated, "deleted": deleted}
