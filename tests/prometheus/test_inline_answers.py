"""A PromQL answer tried on the event loop (store/inline.py, the read lane's first try) is given
only when it needs nothing but memory and little work, and is then the answer the lane's
threads give: a query needing etcd, a catalog or listing build, or more work than a try may
take (long windows gathered, samples formatted one by one, too many series, too long) stops
with WouldWait before that work or request starts, and nothing turns that stop into an
answer. Real etcd."""

from __future__ import annotations

import pytest

from apps.read.prometheus import api, catalog, views
from apps.read.prometheus.catalog import _CATALOG
from observability.metrics import ETCD_SECONDS, READ_CACHE
from store import cache, inline, kv, shards, window_ms
from store.codec import samples_from_rows
from store.keys import Keys
from store.registry import known
from store.write import GpuBatch, write_chunk
from tests.store.test_series_columns import facts

T0 = 1_752_796_800_000
STEP = 30_000
SAMPLES = 480  # four hours
METRIC = "DCGM_FI_DEV_GPU_UTIL"
GPUS = ("GPU-a", "GPU-b", "GPU-c")
END = T0 + (SAMPLES - 1) * STEP


@pytest.fixture
def stored(etcd_root: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Four hours of three GPUs, a sample every 30 s; the catalog kept, and a try given
    time, as long as a test runs (expiry and the time guard are tests of their own), so a
    slow or loaded machine cannot end either midway."""
    known.clear()
    rows = [(T0 + i * STEP, METRIC, float(i % 97)) for i in range(SAMPLES)]
    batches = [GpuBatch(facts(u), samples_from_rows(rows)) for u in GPUS]
    write_chunk(Keys(etcd_root), "job", 0, batches, window_ms())
    _CATALOG.clear()
    monkeypatch.setattr(catalog, "CATALOG_TTL_S", 600.0)
    monkeypatch.setattr(inline, "MAX_SECONDS", 600.0)


def asked(query: str, **params: object) -> api.Params:
    given = {"query": [query], **{k: [str(v)] for k, v in params.items()}}
    return lambda name: given.get(name, [])


def ranged(query: str, step: int = 60) -> api.Params:
    return asked(query, start=(END - 7_200_000) / 1000, end=END / 1000, step=step)


RANGE = ranged(f'avg_over_time({METRIC}{{UUID="GPU-a"}}[5m])')
INSTANT = asked(f"sum by (UUID) ({METRIC})", time=END / 1000)


def etcd_requests() -> float:
    return sum(
        s.value for m in ETCD_SECONDS.collect() for s in m.samples if s.name.endswith("_count")
    )


def on_loop(endpoint, params: api.Params) -> tuple[int, bytes]:
    with inline.inline():
        response = views.respond(endpoint, params)
    return response.status_code, response.content


def warm(endpoint, params: api.Params) -> bytes:
    """The answer made as the lane's thread makes it (everything it reads is then held)."""
    response = views.respond(endpoint, params)
    assert response.status_code == 200, response.content
    return response.content


@pytest.mark.parametrize(("endpoint", "params"), [(api.query_range, RANGE), (api.query, INSTANT)])
def test_an_answer_from_memory_is_given_on_the_loop_and_is_the_threads_answer(
    stored, endpoint, params
) -> None:
    before = etcd_requests()
    with pytest.raises(inline.WouldWait):  # cold: the catalog is read from etcd
        on_loop(endpoint, params)
    assert etcd_requests() == before  # stopped before the request, not after
    threads = warm(endpoint, params)
    assert b'"result":[{' in threads
    before = etcd_requests()
    assert on_loop(endpoint, params) == (200, threads)
    assert etcd_requests() == before  # answered from memory


def test_blocks_the_cache_lost_are_read_on_the_threads(stored) -> None:
    warm(api.query_range, RANGE)
    cache.shared().clear()
    before = etcd_requests()
    with pytest.raises(inline.WouldWait, match="etcd"):
        on_loop(api.query_range, RANGE)
    assert etcd_requests() == before


@pytest.mark.parametrize(
    ("small", "large"),
    [
        # windows gathered at every step: 10 samples each, or 240
        (RANGE, ranged(f'max_over_time({METRIC}{{UUID="GPU-a"}}[2h])')),
        # an instant range selector's samples, formatted one by one: 10 or 1,440
        (asked(f"{METRIC}[5m]", time=END / 1000), asked(f"{METRIC}[4h]", time=END / 1000)),
        # series times steps: 1 x 121, or 3 x 7,201
        (ranged(f'{METRIC}{{UUID="GPU-a"}}'), ranged(METRIC, step=1)),
    ],
)
def test_work_that_grows_with_the_request_goes_to_the_threads(stored, small, large) -> None:
    endpoint = api.query_range if small("step") else api.query
    for params in (small, large):
        warm(endpoint, params)  # everything in memory: only the work's size is left
    assert on_loop(endpoint, small)[0] == 200
    with pytest.raises(inline.WouldWait, match="more work"):
        on_loop(endpoint, large)


def test_a_try_stopped_midway_gives_the_threads_answer_when_run_again(stored, monkeypatch) -> None:
    both = ranged(f'{METRIC}{{UUID="GPU-a"}} - {METRIC}{{UUID="GPU-a"}} offset 1m')
    answer = warm(api.query_range, both)
    steps = 7_200_000 // 60_000 + 1
    monkeypatch.setattr(inline, "BUDGET", steps + 64 + 10)  # the first selector, not both
    with pytest.raises(inline.WouldWait):
        on_loop(api.query_range, both)
    assert warm(api.query_range, both) == answer  # the thread's try, from the start
    monkeypatch.setattr(inline, "BUDGET", 2 * (steps + 64))
    assert on_loop(api.query_range, both) == (200, answer)


def test_a_try_past_its_time_stops_at_its_next_count(stored, monkeypatch) -> None:
    warm(api.query_range, RANGE)
    monkeypatch.setattr(inline, "MAX_SECONDS", 0.0)
    with pytest.raises(inline.WouldWait, match="ran past"):
        on_loop(api.query_range, RANGE)


def test_a_catalog_to_read_again_or_a_listing_to_build_goes_to_the_threads(stored) -> None:
    warm(api.query, INSTANT)
    assert on_loop(api.query, INSTANT)[0] == 200
    _CATALOG.clear()  # as CATALOG_TTL_S ending does
    with pytest.raises(inline.WouldWait):
        on_loop(api.query, INSTANT)
    warm(api.query, INSTANT)
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


def cache_lookups() -> float:
    return sum(
        s.value
        for m in READ_CACHE.collect()
        for s in m.samples
        if s.name.endswith("_total") and s.labels.get("outcome") in ("hit", "miss")
    )


def test_cache_lookups_are_counted_once_whether_the_try_answers_or_stops(stored) -> None:
    warm(api.query_range, RANGE)
    before = cache_lookups()
    warm(api.query_range, RANGE)
    on_thread = cache_lookups() - before
    assert on_thread > 0
    before = cache_lookups()
    on_loop(api.query_range, RANGE)  # answered: counted as the thread counts
    assert cache_lookups() - before == on_thread
    cache.shared().clear()
    before = cache_lookups()
    with pytest.raises(inline.WouldWait):  # stopped after its lookups: none counted
        on_loop(api.query_range, RANGE)
    assert cache_lookups() == before
