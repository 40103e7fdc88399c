"""Workload labels of a long-format CSV become periods: one Prometheus series per pod,
and the workloads of a window in REST, GraphQL and the GPU page."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from store import default_keys
from store.workloads import merge_periods, read_workloads
from tests.api.api_support import upload
from tests.helpers import wait_job_done

GPU = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
HEADER = (
    "timestamp,metric_name,gpu_id,device,uuid,modelName,Hostname,container,pod,namespace,"
    "value,labels_raw\n"
)
T0 = 1_752_871_354  # seconds


def _row(t: int, pod: str, value: float) -> str:
    container, namespace = ("trainer", "ml") if pod else ("", "")
    labels = f'DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""h1"",UUID=""{GPU}"",gpu=""0""'
    return (
        f'"{t}","DCGM_FI_DEV_GPU_UTIL","0","nvidia0","{GPU}","NVIDIA H100 80GB HBM3","h1",'
        f'"{container}","{pod}","{namespace}","{value}","{labels}"\n'
    )


def _csv() -> bytes:
    pods = [""] * 3 + ["train-a"] * 4 + ["train-b"] * 4 + [""] * 2
    return (HEADER + "".join(_row(T0 + 10 * i, p, float(i)) for i, p in enumerate(pods))).encode()


@pytest.fixture
def loaded(pipeline: str) -> str:
    api = APIClient()
    response = upload(api, _csv(), "pods.csv")
    assert response.status_code == 202, response.content
    wait_job_done(api, response.json()["id"])
    return pipeline


def test_periods_follow_the_rows(loaded: str) -> None:
    periods = read_workloads(default_keys(), [GPU])[GPU]
    ms = [(s // 1000 - T0) // 10 for s, _, _ in periods]
    assert [lb.get("pod", "") for _, _, lb in periods] == ["", "train-a", "train-b", ""]
    assert ms == [0, 3, 7, 11]


def test_prometheus_api_has_one_series_per_workload_period(loaded: str) -> None:
    body = (
        Client()
        .get(
            "/prometheus/api/v1/query_range",
            {"query": "DCGM_FI_DEV_GPU_UTIL", "start": T0, "end": T0 + 120, "step": 10},
        )
        .json()
    )
    series = {r["metric"].get("pod", ""): r["values"] for r in body["data"]["result"]}
    assert set(series) == {"", "train-a", "train-b"}
    assert [v for _, v in series["train-a"]][:4] == ["3", "4", "5", "6"]
    # within the lookback the previous pod's series still answers, as in Prometheus
    labels = next(r["metric"] for r in body["data"]["result"] if r["metric"].get("pod"))
    assert labels["namespace"] == "ml" and labels["container"] == "trainer"


def test_rest_graphql_and_gpu_page_show_the_workloads_of_a_window(loaded: str) -> None:
    window = {"start_time": T0 + 65, "end_time": T0 + 200}
    rest = APIClient().get(f"/api/v1/gpus/{GPU}/telemetry", window).json()
    assert [w["pod"] for w in rest["workloads"]] == ["train-b"]
    assert rest["workloads"][0]["namespace"] == "ml"
    query = f'{{ gpu(uuid: "{GPU}") {{ workloads(start: "{T0}") {{ pod start end }} }} }}'
    gql = APIClient().post("/graphql", {"query": query}, format="json").json()
    assert [w["pod"] for w in gql["data"]["gpu"]["workloads"]] == ["train-a", "train-b"]
    page = Client().get(f"/gpus/{GPU}/").content.decode()
    assert "train-a" in page and "train-b" in page


def test_merging_periods_is_idempotent_and_order_free() -> None:
    a = (0, 10, {"pod": "a"})
    b = (11, 20, {"pod": "b"})
    a2 = (21, 30, {"pod": "a"})
    once = merge_periods([], [a, b, a2])
    assert merge_periods(once, [a, b]) == once
    assert merge_periods(merge_periods([], [a2]), [b, a]) == once
    assert merge_periods([a], [(5, 15, {"pod": "a"})]) == [(0, 15, {"pod": "a"})]
