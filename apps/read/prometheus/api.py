"""The Prometheus HTTP API (v1) over the store: parameters in, Prometheus' JSON shapes out.

Views hand over the request's parameters (query string and form body merged,
as Prometheus does) and send back `(status, body)`. Errors have Prometheus'
shape, `{"status": "error", "errorType": ..., "error": ...}`: `bad_data` (400)
for a bad parameter or an unsupported query, `execution` (422) for a query
that fails while evaluated.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Callable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import numpy as np
import orjson
import promql_parser
from django.core.exceptions import SynchronousOnlyOperation

from apps.read.columns import exponent_spelled
from apps.read.prometheus.catalog import StoreSource
from apps.read.prometheus.engine import Evaluator, parse
from apps.read.prometheus.limits import is_panic
from apps.read.prometheus.matching import parse_match
from apps.read.prometheus.values import NAME, BadData, QueryError, Scalar, Text, Vector
from apps.read.prometheus.windows import LOOKBACK_MS
from store import inline
from store.errors import StoreUnavailable
from store.keys import MAX_TS
from store.rollup import COUNTERS
from timeparse.timestamps import parse_timestamp

MAX_POINTS = 11_000  # Prometheus' limit of points per series in a range query
BUILD_VERSION = "2.42.0"  # the Prometheus API level this adapter follows (Grafana reads it)
_STATUS = {"bad_data": 400, "execution": 422}
Params = Callable[[str], list[str]]  # name -> every value given
log = logging.getLogger(__name__)


def error(kind: str, message: str) -> tuple[int, dict]:
    return _STATUS.get(kind, 400), {"status": "error", "errorType": kind, "error": message}


def success(data: Any) -> tuple[int, dict]:
    return 200, {"status": "success", "data": data}


def handle(fn: Callable[[Params], Any], params: Params) -> tuple[int, dict]:
    """Call the endpoint; every failure of the query itself is Prometheus-shaped JSON.

    A QueryError says what was wrong. Anything else raised while evaluating is a
    bug of ours, answered 422 `execution` (as Prometheus answers a failed query)
    and logged with its traceback, never a 500 HTML page. The store being down is
    not caught here: the view answers it 503.
    """
    try:
        return success(fn(params))
    except QueryError as exc:
        return error(exc.kind, str(exc))
    except (StoreUnavailable, SynchronousOnlyOperation):
        # the second: the database touched on the read lane's event loop (a try of
        # store/inline.py), which Django's thread answers instead
        raise
    except Exception as exc:
        log.exception("prometheus API: unexpected error evaluating a request")
        return error("execution", f"the query failed: {type(exc).__name__}")


# Parameters ---------------------------------------------------------------------------
def _one(params: Params, name: str) -> str | None:
    values = params(name)
    return values[-1] if values else None


# epoch seconds with at most a millisecond's digits (what Grafana sends): exact in integers
_PLAIN_SECONDS = re.compile(r"([0-9]{1,12})(?:\.([0-9]{0,3}))?")


def parse_time(text: str, name: str) -> int:
    """Epoch seconds (fraction allowed) or RFC 3339, to epoch ms."""
    plain = _PLAIN_SECONDS.fullmatch(text)
    if plain is not None:  # what the general steps give it, for ~1/10 of their cost
        whole, fraction = plain.groups()
        ms = int(whole) * 1000 + int((fraction or "").ljust(3, "0"))
        if ms <= MAX_TS:
            return ms
    return parse_any_time(text, name)


def parse_any_time(text: str, name: str) -> int:
    """parse_time's general steps: any decimal number of seconds, or RFC 3339."""
    try:
        seconds = Decimal(text)
    except InvalidOperation:
        seconds = None
    try:
        if seconds is not None:
            if not seconds.is_finite() or not 0 <= seconds * 1000 <= MAX_TS:
                raise ValueError("out of range")
            # as Prometheus: whole seconds, plus the fraction rounded to the millisecond
            whole = math.floor(seconds)
            fraction = ((seconds - whole) * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP)
            return whole * 1000 + int(fraction)
        ms = parse_timestamp(text)
        if ms > MAX_TS:
            raise ValueError("out of range")
        return ms
    except (ValueError, ArithmeticError):  # decimal.Overflow on 1e999999 is an ArithmeticError
        raise BadData(
            f'invalid parameter "{name}": cannot parse "{text}" to a valid timestamp'
        ) from None


def parse_step(text: str) -> int:
    """Seconds (`15`, `0.5`) or a Prometheus duration (`15s`, `1m30s`) to ms."""
    refused = BadData(f'invalid parameter "step": cannot parse "{text}" to a valid duration')
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        # never handed to the parser: an infinite duration makes it panic
        if not math.isfinite(seconds):
            raise refused
        return round(seconds * 1000)
    try:
        return round(promql_parser.parse_duration(text).total_seconds() * 1000)
    except ValueError:
        raise refused from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise refused from None


def _time(params: Params, name: str, default: int) -> int:
    text = _one(params, name)
    return default if text is None or text == "" else parse_time(text, name)


def _query(params: Params) -> str:
    text = _one(params, "query")
    if text is None:
        raise BadData('invalid parameter "query": missing')
    return text


def _now() -> int:
    return int(time.time() * 1000)


# Formatting ---------------------------------------------------------------------------
def format_value(x: float) -> str:
    """A float as Prometheus writes it (Go's strconv 'f', -1: shortest, never an exponent)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    text = repr(x)
    if "e" in text or "E" in text:
        return np.format_float_positional(x, unique=True, trim="-")
    return text[:-2] if text.endswith(".0") else text


def format_values(values: np.ndarray) -> list[str]:
    """`format_value` of each value; the usual case (no exponent, NaN or infinity) without
    a Python call per value: a 24 h panel at 60 s is 1,441 values per series."""
    xs = values.tolist()
    return [
        text[:-2]
        if text.endswith(".0")
        else (text if "e" not in text and "n" not in text else format_value(x))
        for text, x in zip(map(repr, xs), xs, strict=True)
    ]


def format_times(steps: np.ndarray) -> list[int | float]:
    """`format_time` of each step (whole seconds, the usual case, at once)."""
    if not (steps % 1000).any():
        return (steps // 1000).tolist()
    return [format_time(int(t)) for t in steps]


def format_time(ms: int) -> int | float:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def _sorted(vec: Vector) -> list[int]:
    return sorted(range(len(vec.labels)), key=lambda i: sorted(vec.labels[i].items()))


def instant_result(value: Any, at: int) -> dict:
    if isinstance(value, Scalar):
        return {
            "resultType": "scalar",
            "result": [format_time(at), format_value(float(value.v[0]))],
        }
    if isinstance(value, Text):
        return {"resultType": "string", "result": [format_time(at), value.s]}
    t = format_time(at)
    shown = [i for i in _sorted(value) if value.ok[i, 0]]
    texts = format_values(value.v[shown, 0])
    return {
        "resultType": "vector",
        "result": [
            {"metric": value.labels[i], "value": [t, text]}
            for i, text in zip(shown, texts, strict=True)
        ],
    }


def matrix_result(value: Any, steps: np.ndarray) -> dict:
    if isinstance(value, Text):
        raise BadData(
            'invalid expression type "string" for range query, must be Scalar or instant Vector'
        )
    if isinstance(value, Scalar):
        value = Vector([{}], value.v[None, :], np.ones((1, len(steps)), dtype=bool))
    whole = not (steps % 1000).any()
    times: list[int | float] | None = None  # formatted when a series needs them one by one
    result = []
    for i in _sorted(value):
        present = np.flatnonzero(value.ok[i])
        if len(present):
            vals = value.v[i][present]
            blob = points_json(steps[present] // 1000, vals) if whole else None
            if blob is not None:
                points: Any = orjson.Fragment(blob)
            else:
                times = format_times(steps) if times is None else times
                texts = format_values(vals)
                points = [[times[j], text] for j, text in zip(present.tolist(), texts, strict=True)]
            result.append({"metric": value.labels[i], "values": points})
    return {"resultType": "matrix", "result": result}


_NUMPY = orjson.OPT_SERIALIZE_NUMPY


def points_json(seconds: np.ndarray, values: np.ndarray) -> bytes | None:
    """`[[t, "v"], ...]` as JSON bytes, each value as `format_value` writes it, made with
    a few whole-buffer byte operations instead of two Python objects per point (a day at
    60 s is 1,441 points per series). None when a value needs `format_value`'s care: not
    finite, or spelled with an exponent by orjson (as by repr: below 1e-4, from 1e16)."""
    if not len(values):
        return b"[]"
    if not np.isfinite(values).all() or exponent_spelled(values).any():
        return None
    # orjson writes the shortest round-trip digits, as repr does; an integral value ends
    # in ".0", which Prometheus (Go's 'f', -1) does not write: dropped before each comma
    texts = orjson.dumps(np.ascontiguousarray(values, np.float64), option=_NUMPY)[1:-1] + b","
    tails = texts.replace(b".0,", b",").replace(b",", b'"]\x00').split(b"\x00")[:-1]
    heads = orjson.dumps(np.ascontiguousarray(seconds, np.int64), option=_NUMPY)[1:-1]
    heads = (b"[" + heads.replace(b",", b',"\x00,[') + b',"').split(b"\x00")
    pieces: list[bytes] = [b""] * (2 * len(heads))
    pieces[0::2], pieces[1::2] = heads, tails
    return b"[" + b"".join(pieces) + b"]"


# Endpoints ------------------------------------------------------------------------------
def query(params: Params) -> dict:
    text = _query(params)
    at = _time(params, "time", _now())
    expr = parse(text)
    if isinstance(expr, promql_parser.MatrixSelector):
        return _raw_matrix(expr, at)
    steps = np.array([at], dtype=np.int64)
    return instant_result(Evaluator(StoreSource(), steps).eval(expr), at)


def _raw_matrix(expr: Any, at: int) -> dict:
    """An instant query for `x[5m]`: the raw samples of each series in the window."""
    from apps.read.prometheus.matching import from_selector

    vs = expr.vector_selector
    if vs.at is not None:
        raise BadData("the @ modifier is not supported")
    end = at - round(vs.offset.total_seconds() * 1000) if vs.offset else at
    start = end - round(expr.range.total_seconds() * 1000)
    series = StoreSource().select(from_selector(vs), start, end)
    inline.spend(sum(len(ts) for _, ts, _ in series) * inline.PER_ITEM)  # formatted one by one
    result = [
        {
            "metric": labels,
            "values": [
                [format_time(int(t)), format_value(float(v))] for t, v in zip(ts, vals, strict=True)
            ],
        }
        for labels, ts, vals in sorted(series, key=lambda s: sorted(s[0].items()))
    ]
    return {"resultType": "matrix", "result": result}


def query_range(params: Params) -> dict:
    text = _query(params)
    start_text, end_text, step_text = (_one(params, n) for n in ("start", "end", "step"))
    for name, value in (("start", start_text), ("end", end_text), ("step", step_text)):
        if not value:
            raise BadData(f'invalid parameter "{name}": missing')
    start, end = parse_time(start_text, "start"), parse_time(end_text, "end")  # type: ignore[arg-type]
    if end < start:
        raise BadData('invalid parameter "end": end timestamp must not be before start time')
    step = parse_step(step_text)  # type: ignore[arg-type]
    if step <= 0:
        raise BadData(
            'invalid parameter "step": zero or negative query resolution step widths are not '
            "accepted. Try a positive integer"
        )
    if (end - start) // step + 1 > MAX_POINTS:
        raise BadData(
            "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the "
            "query resolution (?step=XX)"
        )
    steps = np.arange(start, end + 1, step, dtype=np.int64)
    expr = parse(text)
    if isinstance(expr, promql_parser.MatrixSelector):
        raise BadData(
            'invalid expression type "range vector" for range query, '
            "must be Scalar or instant Vector"
        )
    return matrix_result(Evaluator(StoreSource(points=len(steps)), steps).eval(expr), steps)


def _matched(params: Params, required: bool) -> list[dict[str, str]]:
    """Label sets of the series matching any `match[]` in [start, end] (all without match[])."""
    start = _time(params, "start", 0)
    end = _time(params, "end", MAX_TS)
    selectors = [parse_match(m) for m in params("match[]")]
    if required and not selectors:
        raise BadData("no match[] parameter provided")
    source = StoreSource()
    if not selectors:
        entries = source.matching([], start, end)
    else:
        entries = [e for sel in selectors for e in source.matching(sel, start, end)]
    unique = {tuple(sorted(e.labels.items())): e.labels for e in entries}
    return [unique[k] for k in sorted(unique)]


def series(params: Params) -> list[dict[str, str]]:
    return _matched(params, required=True)


def labels(params: Params) -> list[str]:
    return sorted({name for lb in _matched(params, required=False) for name in lb})


def label_values(params: Params, name: str) -> list[str]:
    if not _label_name_ok(name):
        raise BadData(f'invalid label name: "{name}"')
    return sorted({lb[name] for lb in _matched(params, required=False) if name in lb})


def _label_name_ok(name: str) -> bool:
    return (
        bool(name)
        and (name[0].isalpha() or name[0] == "_")
        and name.replace("_", "a").isalnum()
        and name.isascii()
    )


def metadata(params: Params) -> dict[str, list[dict]]:
    wanted = _one(params, "metric")
    limit_text = _one(params, "limit")
    names = sorted({lb[NAME] for lb in _matched(lambda n: [], required=False)})
    if wanted:
        names = [n for n in names if n == wanted]
    if limit_text:
        try:
            limit = int(limit_text)
        except ValueError:
            raise BadData(f'invalid parameter "limit": {limit_text!r} is not a number') from None
        names = names[:limit] if limit >= 0 else names
    return {
        n: [{"type": "counter" if n in COUNTERS else "gauge", "help": n, "unit": ""}] for n in names
    }


def buildinfo(params: Params) -> dict[str, str]:
    return {
        "version": BUILD_VERSION,
        "revision": "gpu-telemetry",
        "branch": "",
        "buildUser": "",
        "buildDate": "",
        "goVersion": "",
    }


__all__ = ["LOOKBACK_MS", "handle", "query", "query_range"]
