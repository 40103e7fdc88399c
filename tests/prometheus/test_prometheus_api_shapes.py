"""The metadata endpoints, POST queries and errors answer as Prometheus does."""

from __future__ import annotations

import urllib.parse
import urllib.request

import orjson
import pytest
from django.test import Client

from tests.prometheus.oracle_support import HOUR, SPAN, T0, differences
from tools import prometheus

API = "/prometheus/api/v1"


def _ours(path: str, params: dict | list) -> tuple[int, dict]:
    response = Client().get(f"{API}/{path}", params)
    return response.status_code, orjson.loads(response.content)


def _theirs(url: str, path: str, params: dict | list) -> tuple[int, dict]:
    full = f"{url}/api/v1/{path}?{urllib.parse.urlencode(params, doseq=True)}"
    try:
        with urllib.request.urlopen(full, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("series", {"match[]": "DCGM_FI_DEV_GPU_TEMP"}),
        ("series", {"match[]": ['DCGM_FI_DEV_FB_FREE{Hostname="dgx-b"}', 'up{job="x"}']}),
        (
            "series",
            {"match[]": "DCGM_FI_DEV_GPU_TEMP", "start": T0 / 1000, "end": (T0 + 600_000) / 1000},
        ),
        ("labels", {}),
        ("labels", {"match[]": 'DCGM_FI_DEV_GPU_UTIL{pod="train-b"}'}),
        ("label/Hostname/values", {"match[]": "DCGM_FI_DEV_FB_FREE"}),
        ("label/gpu/values", {"match[]": 'DCGM_FI_DEV_FB_FREE{Hostname=~"(dgx-b)"}'}),
        ("label/pod/values", {}),
        ("label/__name__/values", {}),
    ],
)
def test_metadata_endpoints_answer_like_prometheus(oracle, path: str, params: dict) -> None:
    status, ours = _ours(path, params)
    real_status, theirs = _theirs(oracle.url, path, params)
    assert status == real_status == 200
    assert ours["status"] == "success"
    data, real = ours["data"], theirs["data"]
    if path == "series":
        assert sorted(map(sorted, (d.items() for d in data))) == sorted(
            map(sorted, (d.items() for d in real))
        )
    else:
        assert data == real
    assert data, "the case must find something"


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("query", {"query": "sum(", "time": T0 / 1000}),
        ("query", {"time": T0 / 1000}),
        ("query", {"query": "up", "time": "yesterday"}),
        ("query_range", {"query": "up", "start": T0 / 1000, "end": (T0 - 1000) / 1000, "step": 15}),
        ("query_range", {"query": "up", "start": T0 / 1000, "end": (T0 + HOUR) / 1000, "step": 0}),
        (
            "query_range",
            {"query": "up", "start": T0 / 1000, "end": (T0 + HOUR) / 1000, "step": "x"},
        ),
        (
            "query_range",
            {"query": "up", "start": T0 / 1000, "end": (T0 + SPAN) / 1000, "step": 0.5},
        ),
        ("query_range", {"query": "up", "start": T0 / 1000, "step": 15}),
        (
            "query_range",
            {"query": "up[5m]", "start": T0 / 1000, "end": (T0 + HOUR) / 1000, "step": 60},
        ),
        ("series", {}),
        ("series", {"match[]": "sum(up)"}),
        ("label/not-a-label/values", {}),
    ],
)
def test_bad_requests_fail_like_prometheus(oracle, path: str, params: dict) -> None:
    status, ours = _ours(path, params)
    real_status, theirs = _theirs(oracle.url, path, params)
    assert (status, ours["status"], ours["errorType"]) == (
        real_status,
        theirs["status"],
        theirs["errorType"],
    ), (ours, theirs)
    assert ours["error"]


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("histogram_quantile(0.9, DCGM_FI_DEV_GPU_TEMP)", "histogram_quantile"),
        ('label_replace(DCGM_FI_DEV_GPU_TEMP, "a", "$1", "gpu", "(.*)")', "label_replace"),
        ("max_over_time(DCGM_FI_DEV_GPU_TEMP[10m:1m])", "subquer"),
        ("DCGM_FI_DEV_GPU_TEMP @ 1752800000", "@ modifier"),
        ("DCGM_FI_DEV_FB_USED * on(UUID) group_left DCGM_FI_DEV_FB_FREE", "group_left"),
        ('count_values("v", DCGM_FI_DEV_GPU_TEMP)', "count_values"),
    ],
)
def test_unsupported_promql_is_bad_data_naming_it(oracle, query: str, named: str) -> None:
    status, body = _ours("query", {"query": query, "time": (T0 + HOUR) / 1000})
    assert status == 400
    assert body["status"] == "error" and body["errorType"] == "bad_data"
    assert named in body["error"]


def test_query_range_by_form_post_equals_get(oracle) -> None:
    params = {
        "query": "sum by (Hostname) (rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m]))",
        "start": str((T0 + 600_000) / 1000),
        "end": str((T0 + HOUR) / 1000),
        "step": "30s",
    }
    got = Client().get(f"{API}/query_range", params)
    posted = Client().post(
        f"{API}/query_range",
        urllib.parse.urlencode(params),
        content_type="application/x-www-form-urlencoded",
    )
    assert posted.status_code == got.status_code == 200
    assert orjson.loads(posted.content) == orjson.loads(got.content)
    theirs = prometheus.api_get(oracle.url, "/api/v1/query_range", params)
    assert differences(orjson.loads(posted.content), theirs) == []


def test_instant_range_selector_returns_raw_samples(oracle) -> None:
    params = {"query": 'DCGM_FI_DEV_GPU_UTIL{Hostname="dgx-b"}[2m]', "time": (T0 + HOUR) / 1000}
    status, ours = _ours("query", params)
    theirs = prometheus.api_get(oracle.url, "/api/v1/query", params)
    assert status == 200 and ours["data"]["resultType"] == "matrix"
    assert differences(ours, theirs) == []


def test_buildinfo_and_metadata_have_prometheus_shapes(oracle) -> None:
    status, info = _ours("status/buildinfo", {})
    assert status == 200 and info["status"] == "success"
    assert {"version", "revision", "branch", "buildUser", "buildDate", "goVersion"} <= set(
        info["data"]
    )
    major, minor, _ = info["data"]["version"].split(".")
    assert int(major) >= 2 and int(minor) >= 0
    status, meta = _ours("metadata", {})
    assert status == 200
    assert meta["data"]["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0]["type"] == "counter"
    assert meta["data"]["DCGM_FI_DEV_GPU_TEMP"][0]["type"] == "gauge"
    status, one = _ours("metadata", {"metric": "DCGM_FI_DEV_GPU_TEMP"})
    assert list(one["data"]) == ["DCGM_FI_DEV_GPU_TEMP"]


def test_values_are_written_the_go_way(oracle) -> None:
    for query, text in (
        ("1e21", "1000000000000000000000"),
        ("1/0", "+Inf"),
        ("-1/0", "-Inf"),
        ("0/0", "NaN"),
        ("0.1+0.2", "0.30000000000000004"),
        ("3", "3"),
        ("1e-7", "0.0000001"),
    ):
        _, ours = _ours("query", {"query": query, "time": T0 / 1000})
        theirs = prometheus.api_get(
            oracle.url, "/api/v1/query", {"query": query, "time": T0 / 1000}
        )
        assert ours["data"]["result"] == theirs["data"]["result"] == [T0 // 1000, text], (
            query,
            ours,
            theirs,
        )
