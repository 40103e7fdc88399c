"""The Prometheus API's series catalog holds the workloads a query can meet: a query over the
last two days of the store (a dashboard's usual range) builds and is bounded by the series of
the workloads that ran then, not of every workload kept. A churning fleet past
PROMETHEUS_MAX_SERIES over its whole retention still answers its recent queries; a query from
further back is refused by name. Answers are the same as from the whole catalog. Real etcd."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.read.prometheus import catalog
from apps.read.prometheus.catalog import _CATALOG, StoreSource
from store import window_ms
from store.codec import samples_from_rows
from store.keys import Keys
from store.registry import known
from store.write import GpuBatch, write_chunk

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_752_796_800_000  # 2025-07-18T00:00:00Z
DAYS = 20
GPUS = ("GPU-a", "GPU-b")
METRIC = "DCGM_FI_DEV_GPU_UTIL"
NEWEST = T0 + DAYS * DAY - HOUR


def _facts(uuid: str) -> dict:
    return {"uuid": uuid, "cluster": "c", "host": "h", "gpu_index": 0, "device": "nvidia0",
            "model": "H100", "driver": "535", "labels": {}}  # fmt: skip


@pytest.fixture
def churned(etcd_root: str) -> None:
    """Each GPU runs a new job every day for 20 days, a sample an hour: 20 workloads kept,
    two of them within two days of the newest sample."""
    known.clear()
    for day in range(DAYS):
        hours = [T0 + day * DAY + h * HOUR for h in range(24)]
        pod = {"pod": f"job-{day:02d}", "namespace": "ml"}
        batches = [
            GpuBatch(
                _facts(uuid),
                samples_from_rows([(t, METRIC, float(t // HOUR % 100)) for t in hours]),
                ((hours[0], hours[-1], pod),),
            )
            for uuid in GPUS
        ]
        write_chunk(Keys(etcd_root), "churn", day, batches, window_ms())
    _CATALOG.clear()


def _get(path: str, **params: object) -> tuple[int, dict]:
    response = Client().get(f"/prometheus/api/v1/{path}", params)
    return response.status_code, response.json()


def _answers(starts: list[int]) -> list[tuple[int, dict]]:
    out = []
    for start in starts:
        window = {"start": start / 1000, "end": NEWEST / 1000}
        out.append(_get("series", **{"match[]": METRIC}, **window))
        out.append(_get("query_range", query=METRIC, step=600, **window))
        out.append(_get("query", query=f"count_over_time({METRIC}[1h])", time=start / 1000))
    return out


def test_a_recent_query_answers_as_from_every_workload(churned, monkeypatch) -> None:
    starts = [NEWEST - 47 * HOUR, NEWEST - 30 * HOUR, NEWEST - 6 * HOUR, NEWEST - 1000]
    starts += [NEWEST - 7 * DAY, NEWEST - 12 * DAY]  # the second reach, and all of them
    reached = _answers(starts)
    assert all(status == 200 for status, _ in reached), reached
    pods = {s["pod"] for s in reached[0][1]["data"] if "pod" in s}
    assert pods == {"job-18", "job-19"}  # what ran in the last 47 hours, nothing older

    monkeypatch.setattr(catalog, "REACH_MS", ())  # one listing: every workload kept
    _CATALOG.clear()
    assert _answers(starts) == reached


def test_a_recent_listing_holds_the_recent_workloads_only(churned) -> None:
    recent = StoreSource().entries(NEWEST - 6 * HOUR)
    every = StoreSource().entries(0)
    assert len(every) == len(GPUS) * DAYS  # each job (no sample here is of no workload)
    assert sorted({e.labels["pod"] for e in recent}) == ["job-19"]
    # built: the jobs ending in the last two days (job-17 ends at its edge)
    built = StoreSource()._listing(NEWEST - 6 * HOUR).entries
    assert sorted({e.labels["pod"] for e in built}) == ["job-17", "job-18", "job-19"]
    assert len(built) == len(GPUS) * 3


def test_a_churning_fleet_past_the_bound_answers_its_recent_queries(churned, settings) -> None:
    # two days' workloads and the idle one (counted before the build): no more
    settings.PROMETHEUS_MAX_SERIES = 4 * len(GPUS)
    status, body = _get("query_range", query=METRIC, start=(NEWEST - 6 * HOUR) / 1000,
                        end=NEWEST / 1000, step=600)  # fmt: skip
    assert status == 200, body
    assert {r["metric"]["pod"] for r in body["data"]["result"]} == {"job-19"}
    assert {r["metric"]["UUID"] for r in body["data"]["result"]} == set(GPUS)

    status, body = _get("query_range", query=METRIC, start=(NEWEST - 12 * DAY) / 1000,
                        end=NEWEST / 1000, step=3600)  # fmt: skip
    assert status == 422 and body["errorType"] == "execution", body
    assert "PROMETHEUS_MAX_SERIES (8)" in body["error"] and "42 series" in body["error"]
    # the refusal is the far reach's only: recent queries go on
    status, body = _get("query", query=METRIC, time=NEWEST / 1000)
    assert status == 200 and len(body["data"]["result"]) == len(GPUS), body


def test_a_workload_whose_earlier_period_ends_later_is_found_near_its_end(etcd_root) -> None:
    """Rows out of time order in one chunk: pod a at 0 s and 1000 s, pod b at 5 s, pod a at
    10-20 s make a's periods (0, 1000) and (10, 20). A series ends at its latest sample,
    not at its last period's end (the catalog took the last, and lost a after 20 s)."""
    known.clear()
    s = 1000
    a, b = {"pod": "a"}, {"pod": "b"}
    rows = [(T0 + t * s, METRIC, float(t)) for t in (0, 5, 10, 20, 1000)]
    periods = ((T0, T0 + 1000 * s, a), (T0 + 5 * s, T0 + 5 * s, b), (T0 + 10 * s, T0 + 20 * s, a))
    batch = GpuBatch(_facts("GPU-a"), samples_from_rows(rows), periods)
    write_chunk(Keys(etcd_root), "order", 0, [batch], window_ms())
    _CATALOG.clear()
    status, body = _get("query", query=METRIC, time=(T0 + 1100 * s) / 1000)
    assert status == 200, body
    assert [(r["metric"]["pod"], r["value"][1]) for r in body["data"]["result"]] == [("a", "1000")]
