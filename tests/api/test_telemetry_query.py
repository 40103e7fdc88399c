"""One GPU's telemetry: time bounds, order, metric filter, cursor pages, bad parameters."""

from __future__ import annotations

import base64

import pytest

from tests.api.api_support import upload
from tests.helpers import wait_job_done
from tools.generate_sample import LONG_HEADER

UUID = "GPU-00000000-1111-2222-3333-444444444444"
OTHER = "GPU-99999999-1111-2222-3333-444444444444"
METRICS = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE")
STEPS = 12


def stamp(i: int) -> str:
    """Every sample 10 s apart, at .123 past the second."""
    return f"2025-07-18T20:{i * 10 // 60:02d}:{i * 10 % 60:02d}.123Z"


def value(i: int, m: int) -> float:
    return round(100 * m + i + 0.25 * (i % 4), 3)


def series_csv() -> bytes:
    lines = [LONG_HEADER]
    for uuid in (UUID, OTHER):
        for i in range(STEPS):
            for m, metric in enumerate(METRICS):
                lines.append(
                    f'"{stamp(i)}","{metric}","0","nvidia0","{uuid}","NVIDIA H100 80GB HBM3",'
                    f'"host-a","","","","{value(i, m)}",""'
                )
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture
def series(pipeline, api) -> list[dict]:
    """Uploads the series; returns UUID's samples in the order the API must answer them."""
    response = upload(api, series_csv(), "series.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    rows = [
        {"timestamp": stamp(i), "metric_name": metric, "value": value(i, m)}
        for i in range(STEPS)
        for m, metric in enumerate(METRICS)
    ]
    return sorted(rows, key=lambda r: (r["timestamp"], r["metric_name"]))


def get(api, uuid: str = UUID, **params):
    return api.get(f"/api/v1/gpus/{uuid}/telemetry", params)


def ok(api, **params) -> dict:
    response = get(api, **params)
    assert response.status_code == 200, response.content
    return response.json()


def walk(api, **params) -> tuple[list[dict], int]:
    """Follow `next` from the first page to the last; returns all rows and the page count."""
    body = ok(api, **params)
    rows, pages = list(body["results"]), 1
    while body["next"]:
        response = api.get(body["next"])
        assert response.status_code == 200, response.content
        body = response.json()
        rows += body["results"]
        pages += 1
    return rows, pages


def test_it_answers_the_whole_series_in_time_order_with_milliseconds(series, api):
    body = ok(api)
    assert body["gpu"]["uuid"] == UUID
    assert body["results"] == series
    assert body["results"][0]["timestamp"] == "2025-07-18T20:00:00.123Z"
    assert (body["start_time"], body["end_time"], body["next"]) == (None, None, None)
    assert body["gpu"]["last_seen"] == stamp(STEPS - 1)
    assert body["gpu"]["first_seen"] == stamp(0)


def test_it_includes_samples_exactly_at_both_bounds(series, api):
    body = ok(api, start_time=stamp(2), end_time=stamp(5))
    assert body["results"] == [r for r in series if stamp(2) <= r["timestamp"] <= stamp(5)]
    assert {r["timestamp"] for r in body["results"]} == {stamp(i) for i in (2, 3, 4, 5)}
    assert (body["start_time"], body["end_time"]) == (stamp(2), stamp(5))
    single = ok(api, start_time=stamp(7), end_time=stamp(7))["results"]
    assert [r["timestamp"] for r in single] == [stamp(7)] * 3


def test_it_takes_other_time_spellings_for_the_bounds(series, api):
    # 20:00:20.123Z as an offset time and as epoch seconds.
    offset = ok(api, start_time="2025-07-18T22:00:20.123+02:00", end_time=stamp(3))
    epoch = ok(api, start_time="1752868820.123", end_time=stamp(3))
    assert offset["results"] == epoch["results"]
    assert {r["timestamp"] for r in offset["results"]} == {stamp(2), stamp(3)}
    assert ok(api, end_time=stamp(0).replace(".123", ".122"))["results"] == []


def test_it_filters_metrics_repeated_or_comma_separated(series, api):
    wanted = {"DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"}
    expected = [r for r in series if r["metric_name"] in wanted]
    repeated = api.get(
        f"/api/v1/gpus/{UUID}/telemetry?metric=DCGM_FI_DEV_GPU_UTIL&metric=DCGM_FI_DEV_POWER_USAGE"
    ).json()
    assert repeated["results"] == expected
    comma = ok(api, metric="DCGM_FI_DEV_GPU_UTIL, DCGM_FI_DEV_POWER_USAGE")
    assert comma["results"] == expected
    assert ok(api, metric="DCGM_FI_NOT_THERE")["results"] == []


def test_it_answers_newest_first_when_asked(series, api):
    assert ok(api, order="desc")["results"] == series[::-1]
    assert get(api, order="sideways").status_code == 400


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 4},
        {"limit": 5, "order": "desc"},
        {"limit": 1},
        {"limit": 2, "metric": "DCGM_FI_DEV_GPU_TEMP", "start_time": stamp(3)},
        {"limit": 7, "start_time": stamp(1), "end_time": stamp(9), "order": "desc"},
    ],
)
def test_its_cursor_pages_walk_the_series_exactly_once(series, api, params):
    unpaged = ok(api, **{k: v for k, v in params.items() if k != "limit"})["results"]
    rows, pages = walk(api, **params)
    assert rows == unpaged
    assert pages == -(-len(unpaged) // params["limit"])  # the last page is never empty


def test_it_refuses_a_limit_above_the_maximum(series, api, settings):
    settings.TELEMETRY_MAX_LIMIT = 10
    response = get(api, limit=11)
    assert response.status_code == 400
    assert "limit" in response.json()
    assert len(ok(api, limit=10)["results"]) == 10
    assert get(api, limit=0).status_code == 400


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start_time": "yesterday"}, "start_time"),
        ({"start_time": "2025-13-01T00:00:00Z"}, "start_time"),
        ({"end_time": "soon"}, "end_time"),
        ({"start_time": "1900-01-01T00:00:00Z"}, "start_time"),
        ({"start_time": "9999-01-01T00:00:00Z"}, "start_time"),
    ],
)
def test_it_refuses_a_bad_time_naming_the_parameter(series, api, params, field):
    response = get(api, **params)
    assert response.status_code == 400, response.content
    assert field in response.json(), response.json()


def test_it_refuses_a_start_after_the_end(series, api):
    response = get(api, start_time=stamp(5), end_time=stamp(4))
    assert response.status_code == 400
    assert list(response.json()) == ["start_time"]
    assert "after end_time" in response.json()["start_time"][0]


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        _b64("{}"),
        _b64("[1]"),
        _b64('[1e400, "DCGM_FI_DEV_GPU_UTIL"]'),
        _b64('[99999999999999999999, "DCGM_FI_DEV_GPU_UTIL"]'),
        _b64('[-5, "DCGM_FI_DEV_GPU_UTIL"]'),
        _b64("\xff\xfe"),
    ],
)
def test_it_refuses_a_bad_cursor(series, api, cursor):
    response = get(api, cursor=cursor)
    assert response.status_code == 400, response.content
    assert "cursor" in response.json()


def test_it_keeps_gpus_apart(series, api):
    other = ok(api, uuid=OTHER)
    assert len(other["results"]) == STEPS * len(METRICS)
    assert other["gpu"]["uuid"] == OTHER
