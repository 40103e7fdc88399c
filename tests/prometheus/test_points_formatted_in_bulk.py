"""A range answer's points written in bulk (`api.points_json`) are the points `format_value`
writes one by one: the same digits, "-0", no exponent; anything it cannot write exactly
(NaN, infinities, exponent-sized values) is left to `format_value`."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from apps.read.prometheus import api

T0 = 1_752_800_000
FINITE = st.floats(allow_nan=False, allow_infinity=False)
EDGES = st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.1, 1e-4, 9.9999e-5, 1e15, 9.999999999999998e15, 1e16, 123456.5]
)


def one_by_one(seconds: np.ndarray, values: np.ndarray) -> list:
    return [[int(t), api.format_value(float(v))] for t, v in zip(seconds, values, strict=True)]


@given(st.lists(st.one_of(FINITE, EDGES, st.integers(-(10**6), 10**6).map(float)), min_size=1))
def test_bulk_points_equal_the_points_written_one_by_one(values: list[float]) -> None:
    vals = np.array(values, dtype=np.float64)
    seconds = T0 + 60 * np.arange(len(vals), dtype=np.int64)
    blob = api.points_json(seconds, vals)
    size = np.abs(vals)
    exact = not ((size != 0) & ((size < 1e-4) | (size >= 1e16))).any()
    assert (blob is not None) == exact
    if blob is not None:
        assert json.loads(blob) == one_by_one(seconds, vals)


@given(st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), min_size=1), st.lists(FINITE))
def test_values_that_are_not_finite_are_left_to_format_value(odd: list, rest: list) -> None:
    vals = np.array(rest + odd, dtype=np.float64)
    assert api.points_json(T0 + np.arange(len(vals), dtype=np.int64), vals) is None


def test_a_matrix_answer_is_the_same_json_either_way() -> None:
    from apps.read.prometheus.values import Vector

    steps = (T0 + 60 * np.arange(5, dtype=np.int64)) * 1000
    v = np.array([[1.0, 2.5, np.nan, -0.0, 3e-3], [np.inf, 1.0, 2.0, 3.0, 4.0]])
    ok = np.array([[True, True, False, True, True], [True, True, True, True, False]])
    answer = api.matrix_result(Vector([{"a": "1"}, {"a": "2"}], v, ok), steps)
    got = json.loads(api.orjson.dumps(answer))
    assert got["result"][0]["values"] == [
        [T0, "1"],
        [T0 + 60, "2.5"],
        [T0 + 180, "-0"],
        [T0 + 240, "0.003"],
    ]
    assert got["result"][1]["values"] == [
        [T0, "+Inf"],
        [T0 + 60, "1"],
        [T0 + 120, "2"],
        [T0 + 180, "3"],
    ]
