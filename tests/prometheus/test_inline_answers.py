"""A PromQL answer tried on the event loop (store/inline.py, the read lane's first try) is given
only when it needs nothing but memory, and is then the answer the lane's threads give: a
query needing etcd, a catalog build, or more work than a try may take stops with WouldWait
before any request is sent, and nothing turns that stop into an answer. Real etcd."""

from __future__ import annotations

import pytest

from apps.read.prometheus import api, views
from apps.read.prometheus.catalog import _CATALOG
from observability.metrics import ETCD_SECONDS
from store import inline, kv, shards, window_ms
from store.codec import samples_from_rows
from store.keys import Keys
from store.registry import known
from store.write import GpuBatch, write_chunk

T0 = 1_752_796_800_000
STEP = 30_000
METRIC = "DCGM_FI_DEV_GPU_UTIL"
GPUS = ("GPU-a", "GPU-b", "GPU-c")


def _facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "nvidia0",
            "model": "H100", "driver": "535", "labels": {}}  # fmt: skip


@pytest.fixture
def stored(etcd_root: str) -> None:
    """Two hours of three GPUs, a sample every 30 s."""
    known.clear()
    rows = [(T0 + i * STEP, METRIC, float(i % 97)) for i in range(240)]
    batches = [GpuBatch(_facts(u), samples_from_rows(rows)) for u in GPUS]
    write_chunk(Keys(etcd_root), "job", 0, batches, window_ms())
    _CATALOG.clear()


def asked(query: str, **params: object) -> api.Params:
    given = {"query": [query], **{k: [str(v)] for k, v in params.items()}}
    return lambda name: given.get(name, [])


RANGE = asked(
    f'avg_over_time({METRIC}{{UUID="GPU-a"}}[5m])',
    start=T0 / 1000,
    end=(T0 + 7_170_000) / 1000,
    step=60,
)
INSTANT = asked(f"sum by (UUID) ({METRIC})", time=(T0 + 7_000_000) / 1000)


def etcd_requests() -> float:
    return sum(
        s.value for m in ETCD_SECONDS.collect() for s in m.samples if s.name.endswith("_count")
    )


def on_loop(endpoint, params: api.Params) -> tuple[int, bytes]:
    with inline.inline():
        response = views.respond(endpoint, params)
    return response.status_code, response.content


@pytest.mark.parametrize(("endpoint", "params"), [(api.query_range, RANGE), (api.query, INSTANT)])
def test_an_answer_from_memory_is_given_on_the_loop_and_is_the_threads_answer(
    stored, endpoint, params
) -> None:
    before = etcd_requests()
    with pytest.raises(inline.WouldWait):  # cold: the catalog is read from etcd
        on_loop(endpoint, params)
    assert etcd_requests() == before  # stopped before the request, not after
    threads = views.respond(endpoint, params)  # what the lane's thread does then
    assert threads.status_code == 200 and b'"result":[{' in threads.content
    before = etcd_requests()
    assert on_loop(endpoint, params) == (200, threads.content)
    assert etcd_requests() == before  # answered from memory


def test_a_query_past_the_budget_goes_to_the_threads(stored, monkeypatch) -> None:
    views.respond(api.query_range, RANGE)  # everything it needs is now in memory
    assert on_loop(api.query_range, RANGE)[0] == 200
    steps = 7_170_000 // 60_000 + 1
    monkeypatch.setattr(inline, "BUDGET", steps + 63)  # one series costs steps + 64
    with pytest.raises(inline.WouldWait):
        on_loop(api.query_range, RANGE)
    monkeypatch.setattr(inline, "BUDGET", steps + 64)
    assert on_loop(api.query_range, RANGE)[0] == 200


def test_a_catalog_to_read_again_or_a_listing_to_build_goes_to_the_threads(stored) -> None:
    views.respond(api.query, INSTANT)
    assert on_loop(api.query, INSTANT)[0] == 200
    _CATALOG.clear()  # as CATALOG_TTL_S ending does
    with pytest.raises(inline.WouldWait):
        on_loop(api.query, INSTANT)
    views.respond(api.query, INSTANT)
    far = asked(METRIC, time=(T0 - 10 * 24 * 3_600_000) / 1000)  # another reach: a new listing
    with pytest.raises(inline.WouldWait, match="listing"):
        on_loop(api.query, far)


def test_waits_stop_the_try_and_pass_through_every_handler(stored, settings) -> None:
    with inline.inline():
        with pytest.raises(inline.WouldWait, match="etcd revision"):
            kv.revision()
        # api.handle answers any Exception as Prometheus' `execution` error: not this one
        with pytest.raises(inline.WouldWait):
            api.handle(lambda p: inline.check("a test's wait"), lambda name: [])
        settings.ETCD_SHARDS = {"other": list(settings.ETCD_ENDPOINTS)}
        with pytest.raises(inline.WouldWait, match="fan-out"):
            shards.fan_out(lambda: None)
    assert kv.revision() > 0  # outside a try, etcd is asked as always
