"""Property: any delivery of overlapping uploads stores what applying them in order gives.

Chunks arrive in any order, some twice (redelivery), with compaction runs in
between; the stored samples and latest values must equal a plain dict updated
upload by upload, in upload order. Real etcd; a fresh root per example.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from store.codec import samples_from_rows
from store.compaction import compact
from store.jobs import new_upload_seq
from store.keys import Keys
from store.read import read_samples
from store.registry import known
from store.tiers import Tier
from store.write import GpuBatch, latest_values, write_chunk

HOUR = 3_600_000
RAW = Tier("raw", 0, 10**12, HOUR)
TIERS = [RAW, Tier("1m", 60_000, 10**12, 24 * HOUR)]
T0 = 1_752_871_200_000  # an hour boundary: the times below straddle two windows
TIMES = [T0 - 20_000, T0 - 10_000, T0, T0 + 10_000, T0 + 60_000]
GPUS = ("GPU-A", "GPU-B")
_roots = itertools.count()

sample_key = st.tuples(st.sampled_from(GPUS), st.sampled_from(TIMES), st.sampled_from("mn"))
upload = st.dictionaries(sample_key, st.integers(0, 9).map(float), min_size=1, max_size=8)


@st.composite
def deliveries(draw: st.DrawFn) -> tuple[list[dict], list[tuple]]:
    """Uploads (in upload order) and a delivery plan of ("chunk", upload, part) / ("compact",)."""
    uploads = draw(st.lists(upload, min_size=1, max_size=4))
    events: list[tuple] = []
    for u, samples in enumerate(uploads):
        parts = draw(st.integers(1, min(3, len(samples))))
        events += [("chunk", u, p, parts) for p in range(parts)]
    events += draw(st.lists(st.sampled_from(events), max_size=3))  # redeliveries
    events += [("compact",)] * draw(st.integers(0, 2))
    return uploads, draw(st.permutations(events))


def _part(samples: dict, part: int, parts: int) -> list[tuple]:
    items = sorted(samples.items())
    return items[part::parts]


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=deliveries())
def test_any_delivery_order_stores_the_uploads_applied_in_order(etcd_root, plan):
    uploads, events = plan
    known.clear()
    keys = Keys(f"{etcd_root}/ex{next(_roots)}")
    seqs = [new_upload_seq(keys, "c") for _ in uploads]  # taken in upload order, as jobs are
    for event in events:
        if event[0] == "compact":
            compact(keys, TIERS)
            continue
        _, u, part, parts = event
        by_gpu: dict[str, list] = {}
        for (gpu, ts, metric), value in _part(uploads[u], part, parts):
            by_gpu.setdefault(gpu, []).append((ts, metric, value))
        batches = [
            GpuBatch(_facts(gpu), samples_from_rows(rows)) for gpu, rows in sorted(by_gpu.items())
        ]
        write_chunk(keys, f"job{u}", part, batches, RAW.window_ms, upload=seqs[u])
    expected: dict[tuple, float] = {}
    for samples in uploads:
        expected.update(samples)
    assert _stored(keys) == expected
    assert latest_values(keys) == _latest(expected)
    compact(keys, TIERS)
    assert _stored(keys) == expected


def _facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "",
            "model": "", "driver": "", "labels": {}}  # fmt: skip


def _stored(keys: Keys) -> dict[tuple, float]:
    out = {}
    for gpu in GPUS:
        for ts, metric, value in read_samples(keys, gpu, 0, 10**13 - 1, RAW.window_ms).rows():
            out[(gpu, ts, metric)] = value
    return out


def _latest(expected: dict[tuple, float]) -> dict[str, dict[str, list]]:
    out: dict[str, dict[str, list]] = {}
    for (gpu, ts, metric), value in sorted(expected.items()):
        out.setdefault(gpu, {})[metric] = [ts, value]  # sorted: the newest ts comes last
    return out
