"""The PromQL routes' two parsing shortcuts give what the general code gives.

- `api.parse_time` reads plain epoch seconds (what Grafana sends) with integers; every
  text must come out as the Decimal and RFC 3339 steps (`parse_any_time`) make it,
  refusals included.
- The read lane parses a PromQL query string into a dict of lists, not a QueryDict; it
  must hold what Django's QueryDict holds, in the same order, and refuse what it refuses.
"""

from __future__ import annotations

import pytest
from django.http import QueryDict
from django.test import override_settings
from hypothesis import example, given
from hypothesis import strategies as st

from apps.read.prometheus import api
from apps.read.prometheus.values import BadData
from store.keys import MAX_TS
from telemetry_site.lane import FallThrough, query_params

DIGITS = st.text("0123456789", min_size=1, max_size=14)
FRACTION = st.one_of(st.just(""), st.text("0123456789", max_size=5).map(lambda f: "." + f))


def general(text: str) -> int | str:
    try:
        return api.parse_any_time(text, "start")
    except BadData as exc:
        return str(exc)


def shortcut(text: str) -> int | str:
    try:
        return api.parse_time(text, "start")
    except BadData as exc:
        return str(exc)


@given(DIGITS, FRACTION)
@example("1752886370", ".5")
@example("0", "")
@example("1", ".")
@example(str(MAX_TS // 1000), "." + str(MAX_TS % 1000).zfill(3))
@example(str(MAX_TS // 1000), ".9995")
@example(str(MAX_TS // 1000 + 1), "")
@example("000001752886370", ".000")
def test_plain_seconds_read_as_the_general_steps_read_them(whole: str, fraction: str) -> None:
    text = whole + fraction
    assert shortcut(text) == general(text)


@pytest.mark.parametrize(
    "text",
    ["1e3", "-1", "+5", " 5", "5 ", "1_000", "١٢٣", "2025-07-18T00:00:00Z", "x", "", "nan"],
)
def test_other_texts_take_the_general_steps(text: str) -> None:
    assert shortcut(text) == general(text)


PIECES = st.sampled_from([*"ab=&;+%2fF0 é\x00", "%ff", "%e9", "%C3%A9", "%g1", "query"])


@given(st.lists(PIECES, max_size=40).map("".join))
@example("query=up&query=down&start=1&=&x")
@example("a=%ff%fe&b=%C3%A9+%20&c")
def test_a_query_string_holds_what_django_parses_from_it(text: str) -> None:
    django = QueryDict(text)
    assert query_params(text) == {name: django.getlist(name) for name in django}


@override_settings(DATA_UPLOAD_MAX_NUMBER_FIELDS=3)
def test_too_many_fields_are_left_to_django() -> None:
    QueryDict("a=1&b=2&c=3")  # within the limit
    with pytest.raises(FallThrough):
        query_params("a=1&b=2&c=3&d=4")
    assert query_params("a=1&b=2&c=3") == {"a": ["1"], "b": ["2"], "c": ["3"]}
