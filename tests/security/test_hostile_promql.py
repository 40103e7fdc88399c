"""Hostile PromQL requests against a real uvicorn gateway: each answers Prometheus'
`bad_data` JSON (or a value), and the gateway stays up (issue 14 on issue 15's API).

Before these bounds a 10 KB chain of `+` crashed the gateway process (the Rust
parser overflowed its stack), a 1,500-term chain raised RecursionError, and
overflowing numbers or a NaN quantile answered 500 HTML.
"""

from __future__ import annotations

import requests

from apps.read.prometheus.limits import MAX_REGEX_BYTES

QUERY = "/prometheus/api/v1/query"


def assert_bad_data(response: requests.Response, naming: str) -> None:
    assert response.status_code == 400, (response.status_code, response.text[:300])
    body = response.json()
    assert body["status"] == "error" and body["errorType"] == "bad_data", body
    assert naming in body["error"], body


def assert_alive(base: str) -> None:
    answer = requests.get(base + QUERY, params={"query": "vector(1)", "time": "100"}, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["data"]["result"][0]["value"] == [100, "1"]


def test_a_long_chain_of_operators_is_refused_before_the_parser_and_the_gateway_lives(
    gateway: str,
) -> None:
    chain = "+".join(["x"] * 5000)  # 10 KB: crashed the parser's stack (SIGSEGV)
    assert_bad_data(requests.post(gateway + QUERY, data={"query": chain}, timeout=30), "operators")
    ones = "+".join(["1"] * 1500)  # parsed, then RecursionError in the evaluator
    assert_bad_data(requests.post(gateway + QUERY, data={"query": ones}, timeout=30), "operators")
    nested = "(" * 5000 + "x" + ")" * 5000
    assert_bad_data(requests.post(gateway + QUERY, data={"query": nested}, timeout=30), "nested")
    series = requests.post(
        gateway + "/prometheus/api/v1/series", data={"match[]": chain}, timeout=30
    )
    assert_bad_data(series, "match[]")
    assert_alive(gateway)


def test_numbers_past_every_range_answer_bad_data(gateway: str) -> None:
    api = gateway + "/prometheus/api/v1/"
    huge = "1e999999"  # decimal.Overflow
    assert_bad_data(requests.get(api + "query", params={"query": "1", "time": huge}), "time")
    for name in ("start", "end"):
        params = {"query": "1", "start": "0", "end": "60", "step": "15", name: huge}
        assert_bad_data(requests.get(api + "query_range", params=params), name)
        matched = {"match[]": "up", name: huge}
        assert_bad_data(requests.get(api + "series", params=matched), name)
        assert_bad_data(requests.get(api + "labels", params={name: huge}), name)
    for step in ("1e400", "inf", "NaN"):  # inf reached the parser, which panicked
        params = {"query": "1", "start": "0", "end": "60", "step": step}
        assert_bad_data(requests.get(api + "query_range", params=params), "step")
    assert_alive(gateway)


def test_a_nan_quantile_answers_nan_as_prometheus_does(gateway: str) -> None:
    params = {"query": "quantile(NaN, vector(1))", "time": "100"}
    answer = requests.get(gateway + QUERY, params=params, timeout=30)
    assert answer.status_code == 200, answer.text[:300]
    assert answer.json()["data"]["result"][0]["value"] == [100, "NaN"]


def test_a_regex_over_the_limit_is_refused(gateway: str) -> None:
    pattern = "a" * (MAX_REGEX_BYTES + 1)
    params = {"query": f'{{__name__=~"{pattern}"}}', "time": "100"}
    assert_bad_data(requests.post(gateway + QUERY, data=params, timeout=30), "regular expression")


def test_django_refusals_under_the_prometheus_api_are_prometheus_json(gateway: str) -> None:
    many = "&".join(f"p{i}=1" for i in range(1500))  # past DATA_UPLOAD_MAX_NUMBER_FIELDS
    answer = requests.get(f"{gateway}{QUERY}?query=1&{many}", timeout=30)
    assert_bad_data(answer, "DATA_UPLOAD_MAX_NUMBER_FIELDS")
    matches = "&".join("match%5B%5D=up" for _ in range(5000))
    answer = requests.post(
        gateway + "/prometheus/api/v1/series",
        data=matches,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=30,
    )
    assert_bad_data(answer, "DATA_UPLOAD_MAX_NUMBER_FIELDS")
    assert_alive(gateway)
