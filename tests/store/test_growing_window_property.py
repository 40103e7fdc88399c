"""Property: a live window's columns, grown block by block, equal a read of the whole window.

`read_series` keeps the newest window's merged samples and merges only the blocks written
since (store/read.py::_Grown), when that is exact. Writes arrive in any time order, from
older and newer uploads, with compactions in between; after each one the columns must equal
the merge of every stored block (store/order.py, read without the cache). Real etcd.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store import kv
from store.codec import samples_from_rows
from store.compaction import compact
from store.jobs import new_upload_seq
from store.keys import Keys
from store.order import merge_blocks
from store.read import read_series
from store.tiers import Tier
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10**12, HOUR)
T0 = 1_752_871_200_000  # an hour boundary: the newest window starts here
SPAN = (T0 - HOUR, T0 + HOUR - 1)
TIMES = [T0 - 30_000, *(T0 + n * 30_000 for n in range(12))]
_roots = itertools.count()

chunk = st.tuples(
    st.integers(0, 2),  # which upload (taken in order: 2 is the newest)
    st.dictionaries(
        st.tuples(st.sampled_from(TIMES), st.sampled_from("ab")),
        st.integers(0, 9).map(float),
        min_size=1,
        max_size=4,
    ),
)
event = st.one_of(chunk, st.just("compact"))


def _facts() -> dict:
    return {"uuid": "GPU-1", "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


def _truth(keys: Keys, metric: str) -> list[tuple[int, float]]:
    """Every stored block merged by the ordering rule, read from etcd (no cache)."""
    merged = merge_blocks(kv.get_prefix(keys.blocks_prefix("GPU-1")))
    if metric not in merged.names:
        return []
    sel = merged.metric == merged.names.index(metric)
    pairs = zip(merged.ts[sel].tolist(), merged.value[sel].tolist(), strict=True)
    return [(t, v) for t, v in pairs if SPAN[0] <= t <= SPAN[1]]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(event, min_size=1, max_size=8))
def test_a_window_grown_block_by_block_reads_as_the_whole_window(cached_keys, events):
    keys = Keys(f"{cached_keys.root}/ex{next(_roots)}")
    seqs = [new_upload_seq(keys, "c") for _ in range(3)]
    for n, step in enumerate(events):
        if step == "compact":
            compact(keys, [RAW], retention=False)
        else:
            upload, samples = step
            rows = [(ts, metric, value) for (ts, metric), value in sorted(samples.items())]
            batch = GpuBatch(_facts(), samples_from_rows(rows))
            write_chunk(keys, f"job{upload}", n, [batch], RAW.window_ms, upload=seqs[upload])
        got = read_series(keys, "GPU-1", *SPAN, RAW.window_ms, ["a", "b"])
        for metric, (ts, values) in got.items():
            assert list(zip(ts.tolist(), values.tolist(), strict=True)) == _truth(keys, metric)
