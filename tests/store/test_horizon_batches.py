"""Horizon.check_rows (a columnar batch, a GPU's rows at once) answers as `check` row by row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import default_keys
from store.horizon import Horizon
from store.tiers import tiers

DAY = 86_400_000
BASE = 1_752_871_354_000


@dataclass
class At:
    line: int


def one_by_one(horizon: Horizon, uuid: str, ts: list[int], lines: list[int]) -> list:
    out = []
    for t, line in zip(ts, lines, strict=True):
        out.append(horizon.check(uuid, t, At(line)))
    return out


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.lists(st.integers(-800, 40), min_size=1, max_size=30), min_size=1, max_size=4))
def test_check_rows_refuses_the_same_rows_with_the_same_reasons(etcd_root, batches):
    # (the etcd root is shared by the examples: no sample is ever stored, so it stays empty)
    keys = default_keys()
    rows_h, cols_h = Horizon(keys, tiers()), Horizon(keys, tiers())
    line = 1
    for days in batches:
        ts = [BASE + d * DAY for d in days]
        lines = list(range(line + 1, line + 1 + len(ts)))
        line += len(ts)
        expected = one_by_one(rows_h, "GPU-h", ts, lines)
        refused, reasons = cols_h.check_rows("GPU-h", np.array(ts), np.array(lines))
        assert refused.tolist() == [r is not None for r in expected]
        assert reasons == [(n, r) for n, r in zip(lines, expected, strict=True) if r is not None]
    assert cols_h.refused == rows_h.refused
    assert cols_h.summary() == rows_h.summary()


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(-800, 40)), min_size=1, max_size=30),
        min_size=1,
        max_size=4,
    )
)
def test_check_spans_then_rows_of_the_unsure_gpus_refuse_what_check_refuses(etcd_root, sends):
    """What JobSeries does per send (apps/ingest/jobs.py): `check_spans` for every GPU, then
    `check_rows` for the GPUs it is unsure of, refuses the rows `check` refuses one by one."""
    from apps.ingest.jobs import _within_horizon
    from apps.ingest.parsing import Row

    keys = default_keys()
    rows_h, spans_h = Horizon(keys, tiers()), Horizon(keys, tiers())
    for send in sends:
        rows = [Row(f"GPU-{g}", "h", BASE + d * DAY, [("m", 1.0)], []) for g, d in send]
        expected = [rows_h.check(r.uuid, r.ts, At(0)) for r in rows]
        kept, refused = _within_horizon(rows, spans_h)
        assert kept == [r for r, why in zip(rows, expected, strict=True) if why is None]
        assert [why for _, why in refused] == [why for why in expected if why is not None]
    assert spans_h.refused == rows_h.refused


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 3), st.integers(-800, 40)), min_size=1, max_size=30),
        min_size=1,
        max_size=4,
    )
)
def test_check_batch_answers_and_notes_as_check_row_by_row(etcd_root, batches):
    """An upload's columnar batches (apps/ingest/service.py): every GPU at once refuses the
    rows `check` refuses one by one, with the same reasons, counts and summary lines."""
    keys = default_keys()
    rows_h, batch_h = Horizon(keys, tiers()), Horizon(keys, tiers())
    uuids = [f"GPU-{g}" for g in range(4)]
    line = 1
    for batch in batches:
        gpu = np.array([g for g, _ in batch], dtype=np.int32)
        ts = np.array([BASE + d * DAY for _, d in batch], dtype=np.int64)
        lines = np.arange(line + 1, line + 1 + len(batch))
        line += len(batch)
        expected = [
            rows_h.check(uuids[g], int(t), At(int(n)))
            for g, t, n in zip(gpu.tolist(), ts.tolist(), lines.tolist(), strict=True)
        ]
        refused, reasons = batch_h.check_batch(uuids, gpu, ts, lines)
        assert refused.tolist() == [r is not None for r in expected]
        want = [(int(n), r) for n, r in zip(lines, expected, strict=True) if r is not None]
        assert sorted(reasons) == want
        for g, uuid in enumerate(uuids):  # the summary's counts and first lines
            kept = ts[(gpu == g) & ~refused]
            rows_h.observe(uuid, kept)
            batch_h.observe(uuid, kept)
    assert batch_h.refused == rows_h.refused
    assert batch_h.summary() == rows_h.summary()
