"""`format=columns`, `limit=all` and pages cut by TELEMETRY_MAX_RESPONSE_BYTES: the same
samples as the row pages, in the same order, whatever the shape or the page size."""

from __future__ import annotations

import orjson
import pytest

from tests.api.api_support import upload
from tests.helpers import wait_job_done
from timeparse.timestamps import parse_timestamp
from tools.generate_sample import LONG_HEADER

UUID = "GPU-0c0c0c0c-1111-2222-3333-444444444444"
UTIL, TEMP, POWER = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"
STEPS = 40


def stamp(i: int) -> str:
    return f"2025-07-18T20:{i * 15 // 60:02d}:{i * 15 % 60:02d}Z"


def rows() -> list[tuple[str, str, float]]:
    """Util every step, temperature every other step (gaps), power with exponents."""
    out = []
    for i in range(STEPS):
        out.append((stamp(i), UTIL, float(i)))
        if i % 2 == 0:
            out.append((stamp(i), TEMP, 40.5 + i))
        out.append((stamp(i), POWER, [1e-05, 123.456, 2.5e16][i % 3]))
    return out


@pytest.fixture
def loaded(pipeline, api) -> list[dict]:
    lines = [LONG_HEADER] + [
        f'"{t}","{m}","0","nvidia0","{UUID}","H100","host-c","","","","{v!r}",""'
        for t, m, v in rows()
    ]
    response = upload(api, ("\n".join(lines) + "\n").encode(), "cols.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    expected = [{"timestamp": t, "metric_name": m, "value": v} for t, m, v in rows()]
    return sorted(expected, key=lambda r: (r["timestamp"], r["metric_name"]))


def get(api, **params) -> dict:
    response = api.get(f"/api/v1/gpus/{UUID}/telemetry", params)
    assert response.status_code == 200, response.content
    return response.json()


def walk(api, **params) -> list[dict]:
    pages = [get(api, **params)]
    while pages[-1]["next"]:
        pages.append(api.get(pages[-1]["next"]).json())
    return pages


def as_rows(body: dict) -> list[dict]:
    """The columns shape (oldest first) read back as rows, skipping the nulls of gaps."""
    out = []
    for i, ms in enumerate(body["timestamps"]):
        for name in sorted(body["series"]):
            value = body["series"][name][i]
            if value is not None:
                out.append((ms, name, value))
    return out


def rows_of(results: list[dict]) -> list[tuple[int, str, float]]:
    return [(parse_timestamp(r["timestamp"]), r["metric_name"], r["value"]) for r in results]


def test_columns_hold_the_same_samples_as_rows_with_nulls_in_gaps(loaded, api):
    body = get(api, format="columns")
    assert body["gpu"]["uuid"] == UUID and body["next"] is None
    assert body["timestamps"] == [parse_timestamp(stamp(i)) for i in range(STEPS)]
    assert set(body["series"]) == {UTIL, TEMP, POWER}
    assert body["series"][UTIL] == [float(i) for i in range(STEPS)]
    assert body["series"][TEMP][:4] == [40.5, None, 42.5, None]
    assert body["series"][POWER][:3] == [1e-05, 123.456, 2.5e16]
    assert as_rows(body) == rows_of(loaded)


def test_columns_follow_metric_filter_order_and_buckets(loaded, api):
    newest_first = get(api, format="columns", order="desc", metric=UTIL)
    assert list(newest_first["series"]) == [UTIL]
    assert newest_first["series"][UTIL] == [float(i) for i in reversed(range(STEPS))]
    assert newest_first["timestamps"] == sorted(newest_first["timestamps"], reverse=True)
    buckets = get(api, format="columns", step="1m", agg="max", metric=UTIL)
    assert buckets["series"][UTIL] == [3.0, 7.0, 11.0, 15.0, 19.0, 23.0, 27.0, 31.0, 35.0, 39.0]
    rows_answer = get(api, step="1m", agg="max", metric=UTIL)["results"]
    assert [r["value"] for r in rows_answer] == buckets["series"][UTIL]


def test_limit_all_answers_the_whole_window_in_one_page(loaded, api, settings):
    settings.TELEMETRY_DEFAULT_LIMIT = 5
    settings.TELEMETRY_MAX_LIMIT = 10
    body = get(api, limit="all")
    assert body["results"] == loaded and body["next"] is None
    assert api.get(f"/api/v1/gpus/{UUID}/telemetry", {"limit": "most"}).status_code == 400


def walk_bodies(api, **params) -> list[bytes]:
    """Every page's body, first to last."""
    response = api.get(f"/api/v1/gpus/{UUID}/telemetry", params)
    bodies = [response.content]
    while (nxt := response.json()["next"]) is not None:
        response = api.get(nxt)
        bodies.append(response.content)
    return bodies


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_a_byte_limit_cuts_pages_that_walk_every_row_once(loaded, api, settings, order):
    settings.TELEMETRY_MAX_RESPONSE_BYTES = 6000
    bodies = walk_bodies(api, limit="all", order=order)
    assert len(bodies) > 3
    assert all(len(body) <= 6000 for body in bodies)
    walked = [r for body in bodies for r in orjson.loads(body)["results"]]
    assert walked == (loaded if order == "asc" else loaded[::-1])


def test_a_byte_limit_cuts_columns_at_whole_timestamps(loaded, api, settings):
    settings.TELEMETRY_MAX_RESPONSE_BYTES = 4000
    bodies = walk_bodies(api, format="columns")
    assert all(len(body) <= 4000 for body in bodies)
    pages = [orjson.loads(body) for body in bodies]
    assert len(pages) >= 2
    stamps = [ms for p in pages for ms in p["timestamps"]]
    assert stamps == [parse_timestamp(stamp(i)) for i in range(STEPS)]  # none split, none twice
    assert [r for p in pages for r in as_rows(p)] == rows_of(loaded)


def test_a_columns_limit_counts_samples_and_pages_on(loaded, api):
    pages = walk(api, format="columns", limit=7, metric=UTIL)
    assert [len(p["timestamps"]) for p in pages] == [7] * 5 + [5]
    assert [v for p in pages for v in p["series"][UTIL]] == [float(i) for i in range(STEPS)]


def test_csv_spells_values_as_python_does(loaded, api):
    response = api.get(f"/api/v1/gpus/{UUID}/telemetry", {"format": "csv", "metric": POWER})
    text = b"".join(response.streaming_content).decode()
    lines = text.split("\r\n")
    assert lines[0] == "timestamp,metric_name,value"
    assert lines[1:4] == [
        f"{stamp(0)},{POWER},1e-05",
        f"{stamp(1)},{POWER},123.456",
        f"{stamp(2)},{POWER},2.5e+16",
    ]
    wide = api.get(f"/api/v1/gpus/{UUID}/telemetry", {"format": "wide", "metric": f"{TEMP},{UTIL}"})
    wide_lines = b"".join(wide.streaming_content).decode().split("\r\n")
    assert wide_lines[:3] == [
        f"timestamp,{TEMP},{UTIL}",
        f"{stamp(0)},40.5,0.0",
        f"{stamp(1)},,1.0",
    ]
