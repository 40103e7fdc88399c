"""The read lane's parser (`plainly_valid`) gives what the serializer validates, or nothing:
it never accepts what the serializer refuses, nor reads a value differently."""

from __future__ import annotations

import itertools

import pytest

from apps.read.queries import encode_cursor
from apps.read.serializers import GpuListParams, TelemetryParams, plainly_valid

CURSOR = encode_cursor(1_752_883_190_000, "DCGM_FI_DEV_GPU_UTIL")
TELEMETRY_VALUES = {
    "start_time": ["2025-07-18T00:00:00Z", "1752796800", "1752796800.5", "", "yesterday", "9" * 20],
    "end_time": ["2025-07-19T00:00:00Z", "2025-07-17T00:00:00Z", " 1752883200 "],
    "metric": [["DCGM_FI_DEV_GPU_UTIL"], ["A", "B"], ["x" * 201], ["a\x00b"], "A"],
    "order": ["asc", "desc", "DESC", ""],
    "limit": ["1", "10000", "10001", "all", "ALL", " 5 ", "0", "-1", "1.5", ""],
    "cursor": [CURSOR, "not-a-cursor", ""],
    "step": ["5m", "60s", "1h", "0.5s", "0s", "5 minutes", ""],
    "agg": ["avg", "max", "count", "median", ""],
    "format": ["json", "columns", "csv", "wide", "xml", ""],
}


def _cases() -> list[dict]:
    """Every value of each parameter alone, and pairs of parameters (first values mixed)."""
    cases: list[dict] = [{}]
    for name, values in TELEMETRY_VALUES.items():
        cases += [{name: v} for v in values]
    for (a, va), (b, vb) in itertools.combinations(TELEMETRY_VALUES.items(), 2):
        cases += [{a: x, b: y} for x in va[:3] for y in vb[:3]]
    return cases


@pytest.mark.parametrize("data", _cases(), ids=lambda d: repr(d)[:80])
def test_telemetry_parameters_read_as_the_serializer_reads_them(data):
    serializer = TelemetryParams(data=data)
    ours = plainly_valid(TelemetryParams, data)
    if not serializer.is_valid():
        assert ours is None, serializer.errors
    else:
        assert ours == dict(serializer.validated_data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"cluster": "a"},
        {"cluster": " a "},
        {"cluster": ""},
        {"host": "h", "cluster": "c"},
        {"model": ""},
        {"model": "  "},
        {"model": "x" * 201},
        {"model": "a\x00"},
        {"host": "h" * 200},
    ],
)
def test_gpu_filters_read_as_the_serializer_reads_them(data):
    serializer = GpuListParams(data=data)
    ours = plainly_valid(GpuListParams, data)
    if not serializer.is_valid():
        assert ours is None, serializer.errors
    else:
        assert ours == dict(serializer.validated_data)


def test_plain_requests_are_taken_and_unknown_parameters_left_to_the_serializer():
    taken = plainly_valid(TelemetryParams, {"limit": "all", "step": "5m", "metric": ["A"]})
    assert taken == {
        "metric": ["A"],
        "order": "asc",
        "limit": None,
        "step": 300_000,
        "agg": "avg",
        "format": "json",
    }
    assert plainly_valid(TelemetryParams, {"limit": "5", "_": "123"}) is None
    assert (
        plainly_valid(TelemetryParams, {"start_time": "2025-07-19", "end_time": "2025-07-18"})
        is None
    )
