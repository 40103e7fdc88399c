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
