"""PromQL through our API gives what a real Prometheus gives over the same samples.

Every query of NVIDIA's DCGM dashboard (grafana/dcgm-exporter-dashboard.json in
NVIDIA/dcgm-exporter, variables filled in as Grafana does for a multi-value
selection), then each selector form, range function, aggregation and operator;
each as instant queries at four times (one inside a GPU's gap, one at a workload
change) and as range queries at two steps. Series, labels and values must agree
(relative tolerance 1e-9).
"""

from __future__ import annotations

import pytest
from django.test import Client

from tests.prometheus.oracle_support import HOUR, SPAN, T0, differences
from tools import prometheus

HOSTS = '"(dgx-a|dgx-b)"'
GPUS = '"(0|1|2)"'
SEL = f"Hostname=~{HOSTS}, gpu=~{GPUS}"

# The eight panels of NVIDIA's dashboard, verbatim but for the variables.
DASHBOARD = [
    f"max(DCGM_FI_DEV_GPU_TEMP{{{SEL}}}) by (Hostname, gpu, uuid)",
    f"avg(DCGM_FI_DEV_GPU_TEMP{{{SEL}}})",
    f"max(DCGM_FI_DEV_POWER_USAGE{{{SEL}}}) by (Hostname, gpu, uuid)",
    f"sum(max(DCGM_FI_DEV_POWER_USAGE{{{SEL}}}) by (gpu))",
    f"max(DCGM_FI_DEV_SM_CLOCK{{{SEL}}} * 1000000) by (Hostname, UUID, gpu)",
    f"max(DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{SEL}}}) by (Hostname, gpu, GPU_I_ID, GPU_I_PROFILE)",
    f"max(DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{{{SEL}}}) by (Hostname, gpu, GPU_I_ID, GPU_I_PROFILE)",
    f"max(DCGM_FI_DEV_FB_USED{{{SEL}}}) by (Hostname, gpu, GPU_I_ID, GPU_I_PROFILE)",
    # "All" selected: Grafana sends .* for both variables
    'max(DCGM_FI_DEV_GPU_TEMP{Hostname=~".*", gpu=~".*"}) by (Hostname, gpu, uuid)',
]
SELECTORS = [
    "DCGM_FI_DEV_GPU_TEMP",
    'DCGM_FI_DEV_GPU_TEMP{Hostname="dgx-a"}',
    'DCGM_FI_DEV_GPU_TEMP{Hostname!="dgx-a"}',
    'DCGM_FI_DEV_GPU_TEMP{gpu=~"0|2"}',
    'DCGM_FI_DEV_GPU_TEMP{gpu!~"0|2"}',
    'DCGM_FI_DEV_POWER_USAGE{pod="train-a"}',
    'DCGM_FI_DEV_POWER_USAGE{pod=""}',
    '{__name__=~"DCGM_FI_DEV_FB_.*", Hostname="dgx-b"}',
    'DCGM_FI_DEV_GPU_UTIL{GPU_I_ID="1"}',
    # RE2 as in Prometheus: linear time on a pattern that backtracks exponentially in `re`
    'DCGM_FI_DEV_GPU_TEMP{Hostname=~"((d|dg|x)+)+-b", UUID=~"(G|P|U|-|[0-9a-f])+"}',
    "DCGM_FI_DEV_GPU_TEMP offset 10m",
]
FUNCTIONS = [
    "avg_over_time(DCGM_FI_DEV_GPU_TEMP[5m])",
    "min_over_time(DCGM_FI_DEV_POWER_USAGE[10m])",
    "max_over_time(DCGM_FI_DEV_POWER_USAGE[10m])",
    "sum_over_time(DCGM_FI_DEV_GPU_UTIL[2m])",
    "count_over_time(DCGM_FI_DEV_GPU_UTIL[3m])",
    "last_over_time(DCGM_FI_DEV_FB_USED[15m])",
    "stddev_over_time(DCGM_FI_DEV_POWER_USAGE[5m])",
    "rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m])",
    "rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1h])",
    "increase(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[10m])",
    "irate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[1m])",
    "delta(DCGM_FI_DEV_GPU_TEMP[10m])",
    "deriv(DCGM_FI_DEV_GPU_TEMP[10m])",
    "deriv(DCGM_FI_DEV_SM_CLOCK[5m])",
    "avg_over_time(DCGM_FI_DEV_GPU_TEMP[5m] offset 30m)",
    'rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION{Hostname="dgx-a"}[5m] offset 5m)',
    "abs(-DCGM_FI_DEV_GPU_TEMP)",
]
AGGREGATIONS = [
    "sum(DCGM_FI_DEV_POWER_USAGE)",
    "sum by (Hostname) (DCGM_FI_DEV_POWER_USAGE)",
    "sum without (gpu, device, UUID, pci_bus_id, GPU_I_ID, GPU_I_PROFILE, pod, namespace, "
    "container, instance) (DCGM_FI_DEV_POWER_USAGE)",
    "avg by (Hostname) (DCGM_FI_DEV_GPU_UTIL)",
    "min by (Hostname) (DCGM_FI_DEV_GPU_TEMP)",
    "max without (gpu) (DCGM_FI_DEV_GPU_TEMP)",
    "count(DCGM_FI_DEV_GPU_TEMP)",
    "count by (pod) (DCGM_FI_DEV_GPU_TEMP)",
    "topk(2, DCGM_FI_DEV_POWER_USAGE)",
    "bottomk(2, DCGM_FI_DEV_POWER_USAGE)",
    "topk by (Hostname) (1, DCGM_FI_DEV_GPU_UTIL)",
    "quantile(0.9, DCGM_FI_DEV_POWER_USAGE)",
    "quantile by (Hostname) (0.5, DCGM_FI_DEV_GPU_TEMP)",
    "stddev(DCGM_FI_DEV_POWER_USAGE)",
    "stddev by (Hostname) (DCGM_FI_DEV_GPU_TEMP)",
    "stdvar(DCGM_FI_DEV_GPU_TEMP)",
    "group by (Hostname) (DCGM_FI_DEV_GPU_TEMP)",
    "sum(rate(DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m])) by (Hostname)",
    "avg(avg_over_time(DCGM_FI_DEV_GPU_UTIL[10m]))",
]
OPERATORS = [
    "DCGM_FI_DEV_FB_USED / 1024",
    "DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE) * 100",
    "DCGM_FI_DEV_GPU_TEMP > 60",
    "DCGM_FI_DEV_GPU_TEMP > bool 60",
    "60 < DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_GPU_UTIL <= 50",
    # GPU 0 changes pod: both pods' series are within the lookback at the change, and
    # matching on the GPU alone finds two series (Prometheus refuses it, so must we)
    "DCGM_FI_DEV_POWER_USAGE - on(UUID, GPU_I_ID) DCGM_FI_DEV_GPU_TEMP",
    'DCGM_FI_DEV_POWER_USAGE{Hostname="dgx-b"} - on(UUID, GPU_I_ID) '
    'DCGM_FI_DEV_GPU_TEMP{Hostname="dgx-b"}',
    'DCGM_FI_DEV_POWER_USAGE{Hostname="dgx-b"} / ignoring(pod, namespace, container) '
    'DCGM_FI_DEV_GPU_TEMP{Hostname="dgx-b"}',
    "DCGM_FI_DEV_POWER_USAGE / ignoring(pod, namespace, container) DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_GPU_TEMP > on(UUID, GPU_I_ID, pod) DCGM_FI_DEV_GPU_TEMP offset 5m",
    "DCGM_FI_DEV_GPU_TEMP >= bool DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_SM_CLOCK % 7",
    "DCGM_FI_DEV_GPU_TEMP ^ 2",
    "-DCGM_FI_DEV_GPU_TEMP",
    "2 * 3 + 1",
    "DCGM_FI_DEV_GPU_UTIL and DCGM_FI_DEV_GPU_TEMP > 60",
    "DCGM_FI_DEV_GPU_UTIL unless DCGM_FI_DEV_GPU_TEMP > 60",
    "DCGM_FI_DEV_GPU_TEMP > 70 or DCGM_FI_DEV_GPU_UTIL",
    "sum(DCGM_FI_DEV_POWER_USAGE) / count(DCGM_FI_DEV_POWER_USAGE)",
    "max(DCGM_FI_DEV_GPU_TEMP) - min(DCGM_FI_DEV_GPU_TEMP)",
    "DCGM_FI_DEV_GPU_TEMP / 0",
    "(DCGM_FI_DEV_GPU_TEMP - DCGM_FI_DEV_GPU_TEMP) / 0",
    "quantile(1.5, DCGM_FI_DEV_POWER_USAGE)",
    "topk(0, DCGM_FI_DEV_POWER_USAGE) or vector(1)",
    'DCGM_FI_DEV_GPU_TEMP * scalar(DCGM_FI_DEV_GPU_UTIL{Hostname="dgx-b", gpu="2"})',
    "scalar(DCGM_FI_DEV_GPU_TEMP)",
    "time()",
]
# Both refuse these (duplicate series in a match group at the pod change); errors must agree.
REFUSED = {
    "DCGM_FI_DEV_POWER_USAGE - on(UUID, GPU_I_ID) DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE / ignoring(pod, namespace, container) DCGM_FI_DEV_GPU_TEMP",
}
QUERIES = DASHBOARD + SELECTORS + FUNCTIONS + AGGREGATIONS + OPERATORS
# the last one is after the data: answered from the latest values, without blocks
INSTANTS = [T0 + 45 * 60_000, T0 + HOUR + 7_000, T0 + SPAN - 2_000, T0 + SPAN + 180_000]
RANGES = [(T0 + 5 * 60_000, T0 + SPAN, 60_000), (T0, T0 + SPAN + 10 * 60_000, 137_000)]


def _ours(path: str, params: dict) -> dict:
    response = Client().get(f"/prometheus/api/v1/{path}", params)
    return response.json()


def test_the_table_is_big_enough() -> None:
    assert len(QUERIES) >= 60
    assert len(DASHBOARD) >= 8


@pytest.mark.parametrize("query", QUERIES)
def test_query_gives_what_prometheus_gives(oracle, query: str) -> None:
    problems = []
    for at in INSTANTS:
        params = {"query": query, "time": at / 1000}
        ours = _ours("query", params)
        theirs = prometheus.api_get(oracle.url, "/api/v1/query", params)
        problems += [f"instant @{at}: {p}" for p in differences(ours, theirs)]
    for start, end, step in RANGES:
        params = {"query": query, "start": start / 1000, "end": end / 1000, "step": step / 1000}
        ours = _ours("query_range", params)
        theirs = prometheus.api_get(oracle.url, "/api/v1/query_range", params)
        answered = theirs.get("data", {}).get("result")
        assert answered or query in REFUSED or 'GPU_I_ID="1"' in query, theirs
        problems += [f"range step {step}: {p}" for p in differences(ours, theirs)]
    assert not problems, "\n".join(problems[:10])
