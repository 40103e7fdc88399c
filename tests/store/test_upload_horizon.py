"""store/horizon.py: what an upload's rows keep, decided row by row as it is parsed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from store.codec import samples_from_rows
from store.horizon import Horizon
from store.keys import Keys
from store.registry import known
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
DAY = 24 * HOUR
TIERS = [Tier("raw", 0, 7 * DAY, HOUR), Tier("1m", 60_000, 30 * DAY, DAY)]
JULY = 1_752_871_200_000  # 2025-07-18T20:40:00Z


@dataclass
class Where:
    line: int


def feed(horizon: Horizon, rows: list[tuple[str, int]]) -> list[str | None]:
    """Rows (uuid, ts) at lines 2, 3, ...; kept rows observed as one chunk per GPU."""
    out, kept = [], {}
    for line, (uuid, ts) in enumerate(rows, start=2):
        verdict = horizon.check(uuid, ts, Where(line))
        out.append(verdict)
        if verdict is None:
            kept.setdefault(uuid, []).append(ts)
    for uuid, stamps in kept.items():
        horizon.observe(uuid, np.array(stamps, dtype=np.int64))
    return out


@pytest.fixture
def keys(etcd_root: str) -> Keys:
    known.clear()
    return Keys(etcd_root)


def test_rows_older_than_every_tier_are_refused_counted_from_the_stored_newest(keys):
    facts = {"uuid": "GPU-1", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    write_chunk(keys, "j", 0, [GpuBatch(facts, samples_from_rows([(JULY, "m", 1.0)]))], HOUR)
    horizon = Horizon(keys, TIERS)
    verdicts = feed(horizon, [("GPU-1", JULY - 31 * DAY), ("GPU-1", JULY - 8 * DAY), ("GPU-2", 5)])
    assert verdicts[0] is not None and "older than every storage tier keeps" in verdicts[0]
    assert verdicts[1:] == [None, None]  # GPU-2 has no stored data: its first row is its newest
    summary = horizon.summary()
    assert summary["refused_as_too_old"] == 1
    [raw] = summary["outside"]
    assert (raw["tier"], raw["rows"], raw["lines"], raw["kept_in"]) == ("raw", 1, [3], ["1m"])


def test_rows_a_later_row_made_too_old_are_announced_as_not_kept(keys):
    horizon = Horizon(keys, TIERS)
    rows = [("GPU-1", JULY), ("GPU-1", JULY + 10), ("GPU-1", JULY + 40 * DAY)]
    assert feed(horizon, rows) == [None, None, None]
    by_tier = {entry["tier"]: entry for entry in horizon.summary()["outside"]}
    assert by_tier["raw"]["rows"] == by_tier["1m"]["rows"] == 2
    assert (
        by_tier["1m"]["kept_in"] == [] and "deleted by the next compaction" in by_tier["1m"]["note"]
    )
    assert by_tier["raw"]["lines"] == [2]


def test_a_stored_far_future_sample_counts_as_now(keys):
    """Stored before the future was refused: it must not make today's rows "too old"."""
    facts = {"uuid": "GPU-F", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
             "model": "", "driver": "", "labels": {}}  # fmt: skip
    year_2100 = 4_102_444_800_000
    write_chunk(keys, "j", 0, [GpuBatch(facts, samples_from_rows([(year_2100, "m", 1.0)]))], HOUR)
    horizon = Horizon(keys, TIERS, now_ms=JULY + DAY)
    assert feed(horizon, [("GPU-F", JULY)]) == [None]
    assert horizon.summary()["outside"] == []
