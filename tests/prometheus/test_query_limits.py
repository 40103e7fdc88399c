"""The bounds on PromQL text, the evaluator's depth, regexes and quantile's NaN (pure functions).

The text bounds must sit well under what promql-parser survives: 4,000 `+`
parse, 5,000 overflow its stack (SIGSEGV, measured on promql-parser 0.5).
"""

from __future__ import annotations

import numpy as np
import promql_parser as pp
import pytest

from apps.read.prometheus import engine, matching
from apps.read.prometheus.engine import Evaluator, _quantile, parse
from apps.read.prometheus.limits import (
    MAX_EVAL_DEPTH,
    MAX_QUERY_BYTES,
    MAX_QUERY_NESTING,
    MAX_QUERY_OPERATORS,
    MAX_REGEX_BYTES,
    check_query,
)
from apps.read.prometheus.matching import Matcher, parse_match
from apps.read.prometheus.values import BadData, Scalar

PARSER_SURVIVES = 4000  # `+` in a chain; 5,000 crash the process


class NoSeries:
    def select(self, matchers, start, end):
        return []

    def latest_at(self, matchers, t):
        return [], np.zeros(0), []


def test_the_bounds_sit_well_under_what_the_parser_survives() -> None:
    assert MAX_QUERY_OPERATORS * 10 <= PARSER_SURVIVES
    assert MAX_QUERY_NESTING * 10 <= PARSER_SURVIVES
    # the deepest tree the text bounds let through fits the evaluator's bound
    assert MAX_QUERY_OPERATORS + MAX_QUERY_NESTING < MAX_EVAL_DEPTH


def test_queries_at_the_bounds_parse_and_past_them_are_refused() -> None:
    at = "+".join(["x"] * (MAX_QUERY_OPERATORS + 1))
    assert parse(at) is not None
    with pytest.raises(BadData, match="operators"):
        parse(at + "+x")
    nested = "(" * MAX_QUERY_NESTING + "x" + ")" * MAX_QUERY_NESTING
    assert parse(nested) is not None
    with pytest.raises(BadData, match="nested"):
        parse("(" + nested + ")")
    with pytest.raises(BadData, match="characters"):
        check_query("x" * (MAX_QUERY_BYTES + 1))
    with pytest.raises(BadData, match=r"match\[\]"):
        parse_match("+".join(["x"] * 5000))


def test_what_is_inside_strings_and_comments_is_not_counted() -> None:
    # 300 GPU uuids in a regex: 1,200 dashes that are not operators
    uuids = "|".join(f"GPU-{i:08x}-1111-2222-3333-444455556666" for i in range(300))
    check_query(f'sum(DCGM_FI_DEV_GPU_UTIL{{UUID=~"{uuids}"}}) # ((((( - - -')
    check_query('x{a="((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((("}')


def test_the_evaluator_refuses_a_tree_deeper_than_its_bound() -> None:
    tree = pp.parse("+".join(["1"] * 1500))  # straight from the parser, past the text bound
    with pytest.raises(BadData, match="nested over"):
        Evaluator(NoSeries(), np.array([0], dtype=np.int64)).eval(tree)
    shallow = pp.parse("+".join(["1"] * 200))
    got = Evaluator(NoSeries(), np.array([0], dtype=np.int64)).eval(shallow)
    assert isinstance(got, Scalar) and got.v[0] == 200


def test_quantile_of_nan_or_far_out_of_range_is_prometheus_value() -> None:
    v = np.array([[1.0, 2.0], [3.0, 4.0]])
    ok = np.ones_like(v, dtype=bool)
    count = ok.sum(axis=0)
    assert np.isnan(_quantile(np.full(2, np.nan), v, ok, count)).all()
    assert (_quantile(np.full(2, 1e300), v, ok, count) == np.inf).all()
    assert (_quantile(np.full(2, -1e300), v, ok, count) == -np.inf).all()
    assert _quantile(np.full(2, 0.5), v, ok, count).tolist() == [2.0, 3.0]


def test_regexes_are_bounded_and_only_short_ones_are_cached() -> None:
    with pytest.raises(BadData, match="regular expression"):
        Matcher("UUID", "=~", "a" * (MAX_REGEX_BYTES + 1))
    matching._cached_regex.cache_clear()
    long_one = Matcher("UUID", "=~", "b" * (matching.CACHED_REGEX_BYTES + 1))
    short = Matcher("UUID", "=~", "GPU-.*")
    assert long_one.matches({"UUID": "b" * (matching.CACHED_REGEX_BYTES + 1)})
    assert short.matches({"UUID": "GPU-1"}) and not short.matches({"UUID": "x"})
    assert matching._cached_regex.cache_info().currsize == 1


def test_a_match_anything_regex_answers_as_re2_would() -> None:
    values = ["", "a", "GPU-1", "two\nlines", "\n", "tab\there", "é"]
    for op in ("=~", "!~"):
        shortcut = Matcher("Hostname", op, ".*")
        spelled = Matcher("Hostname", op, "(?:.*)")  # the same pattern, through RE2
        for value in values:
            labels = {"Hostname": value}
            assert shortcut.matches(labels) == spelled.matches(labels), (op, value)
        assert shortcut.matches({}) == spelled.matches({})


def test_short_queries_are_parsed_once_and_refusals_never_kept() -> None:
    text = 'max(DCGM_FI_DEV_GPU_TEMP{Hostname=~".*"}) by (Hostname)'
    assert parse(text) is parse(text)
    long_text = text + " " * engine.CACHED_QUERY_BYTES
    assert parse(long_text) is not parse(long_text)
    too_many = "+".join(["x"] * (MAX_QUERY_OPERATORS + 2))
    for _ in range(2):
        with pytest.raises(BadData, match="operators"):
            parse(too_many)
    with pytest.raises(BadData, match="empty query"):
        parse("   ")
