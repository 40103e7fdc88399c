"""PromQL evaluation: a parsed expression (promql-parser) over a series source, at all steps.

What is evaluated (anything else is refused with a `bad_data` error naming it):
vector selectors with `=`, `!=`, `=~`, `!~` and `offset`; the range functions of
`windows.RANGE_FUNCTIONS`; a few element-wise functions (`abs`, `ceil`, ...),
`time()`, `vector()` and `scalar()`; aggregations sum, avg, min, max, count, group, stddev, stdvar,
topk, bottomk, quantile with `by`/`without`; arithmetic, comparison (with
`bool`) and `and`/`or`/`unless` between scalars and vectors, vector matching
one-to-one with `on`/`ignoring`; unary minus and parentheses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import promql_parser as pp

from apps.read.prometheus import rolled, windows
from apps.read.prometheus.limits import MAX_EVAL_DEPTH, check_query, is_panic
from apps.read.prometheus.matching import Matcher, from_selector
from apps.read.prometheus.values import (
    NAME,
    BadData,
    ExecutionError,
    Scalar,
    Text,
    Vector,
    label_key,
    merged,
    without_name,
)

Value = Scalar | Vector | Text
Series = tuple[dict[str, str], np.ndarray, np.ndarray]  # labels, ts (ms, sorted), values
# labels, raw ts and values, buckets where raw blocks are gone (None: raw only), and the
# time from which raw blocks hold the series (steps whose window starts there use raw)
RolledSeries = tuple[dict[str, str], np.ndarray, np.ndarray, "rolled.BucketSeries | None", int]


class Source(Protocol):
    def select(self, matchers: list[Matcher], start: int, end: int) -> list[Series]:
        """Series matching every matcher, with their samples in [start, end]."""
        ...

    def latest_at(
        self, matchers: list[Matcher], t: int
    ) -> tuple[list[dict[str, str]], np.ndarray, list[Series]]:
        """The matching series at `t` answered by their newest sample (labels, values),
        and the others with their samples in [t - LOOKBACK_MS, t]."""
        ...


_ELEMENTWISE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "sqrt": np.sqrt,
    "exp": np.exp,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
}
_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.true_divide,
    "%": np.fmod,  # Go's math.Mod: the sign of the dividend
    "^": np.power,
    "atan2": np.arctan2,
}
_COMPARISON: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}
_SET_OPS = frozenset({"and", "or", "unless"})
_AGGREGATIONS = frozenset(
    {
        "sum",
        "avg",
        "min",
        "max",
        "count",
        "group",
        "stddev",
        "stdvar",
        "topk",
        "bottomk",
        "quantile",
    }
)


def parse(query: str, what: str = "query") -> Any:
    """The expression tree; BadData with the parser's message when it is not PromQL.

    The text is checked against limits.py's bounds first: past them the Rust
    parser overflows its stack and the process dies.
    """
    if not query.strip():
        raise BadData(f'invalid parameter "{what}": empty query')
    if len(query) <= CACHED_QUERY_BYTES:
        return _parsed(query, what)
    return _parse(query, what)


# Grafana sends a dashboard's queries again at every refresh: each text is bounded-checked
# and parsed once (~0.15 ms a request). The trees are immutable (promql-parser's objects take
# no attributes and the evaluator never changes them), so requests can share them.
CACHED_QUERY_BYTES = 4096
_PARSED_QUERIES = 256


@functools.lru_cache(maxsize=_PARSED_QUERIES)
def _parsed(query: str, what: str) -> Any:
    return _parse(query, what)  # a refused text raises, and lru_cache keeps no exception


def _parse(query: str, what: str) -> Any:
    check_query(query, what)
    try:
        return pp.parse(query)
    except ValueError as exc:
        raise BadData(f'invalid parameter "{what}": {exc}') from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise BadData(f'invalid parameter "{what}": the parser refused it ({exc})') from None


def _ms(delta: Any) -> int:
    return 0 if delta is None else round(delta.total_seconds() * 1000)


@dataclass
class Evaluator:
    source: Source
    steps: np.ndarray  # int64 epoch ms, ascending
    depth: int = 0  # nodes being evaluated, bounded so that no tree can exhaust the stack

    def eval(self, node: Any) -> Value:
        kind = type(node).__name__
        handler = getattr(self, f"_eval_{kind}", None)
        if handler is None:
            raise BadData(f"{_describe(node)} is not supported")
        if self.depth >= MAX_EVAL_DEPTH:
            raise BadData(f"the expression is nested over {MAX_EVAL_DEPTH} deep")
        self.depth += 1
        try:
            return handler(node)
        finally:
            self.depth -= 1

    # Leaves ------------------------------------------------------------------------------
    def _eval_NumberLiteral(self, node: Any) -> Scalar:
        return Scalar(np.full(len(self.steps), float(node.val)))

    def _eval_StringLiteral(self, node: Any) -> Text:
        return Text(node.val)

    def _eval_ParenExpr(self, node: Any) -> Value:
        return self.eval(node.expr)

    def _eval_VectorSelector(self, node: Any) -> Vector:
        at = self._times(node)
        got = self._rolled(node, at, windows.LOOKBACK_MS, lookup=True)
        if got is not None:
            values, ok = windows.lookback_all([(ts, v) for _, ts, v, _, _ in got], at)
            self._from_buckets(got, at, windows.LOOKBACK_MS, values, ok, rolled.lookback)
            return self._stacked([r[0] for r in got], values, ok)
        if len(at) == 1:  # an instant lookup: most series answer with their latest sample
            return self._latest(node, int(at[0]))
        series = self.source.select(
            from_selector(node), int(at[0]) - windows.LOOKBACK_MS, int(at[-1])
        )
        values, ok = windows.lookback_all([(ts, v) for _, ts, v in series], at)
        return self._stacked([labels for labels, _, _ in series], values, ok)

    def _latest(self, node: Any, t: int) -> Vector:
        labels, latest, rest = self.source.latest_at(from_selector(node), t)
        values, ok = windows.lookback_all([(ts, v) for _, ts, v in rest], np.array([t]))
        return self._stacked(
            labels + [lb for lb, _, _ in rest],
            np.concatenate([latest.reshape(-1, 1), values]),
            np.concatenate([np.ones((len(labels), 1), bool), ok]),
        )

    def _eval_MatrixSelector(self, node: Any) -> Vector:
        raise BadData("a range vector is only allowed as the argument of a range function")

    def _times(self, vs: Any) -> np.ndarray:
        if vs.at is not None:
            raise BadData("the @ modifier is not supported")
        return self.steps - _ms(vs.offset)

    def _stacked(self, labels: list[dict], values: np.ndarray, ok: np.ndarray) -> Vector:
        if not labels:
            return Vector.empty(len(self.steps))
        return Vector(labels, values, ok).kept()

    def _vector(self, rows: list[tuple[dict, np.ndarray, np.ndarray]]) -> Vector:
        if not rows:
            return Vector.empty(len(self.steps))
        return Vector(
            [r[0] for r in rows], np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        ).kept()

    # Functions ---------------------------------------------------------------------------
    def _eval_Call(self, node: Any) -> Value:
        name = node.func.name
        if name in windows.RANGE_FUNCTIONS:
            return self._range_function(name, node.args)
        if name in _ELEMENTWISE:
            vec = self._as_vector(self.eval(node.args[0]), name)
            with np.errstate(all="ignore"):
                values = _ELEMENTWISE[name](vec.v)
            return merged(Vector([without_name(lb) for lb in vec.labels], values, vec.ok))
        if name == "time":
            return Scalar(self.steps / 1000.0)
        if name == "vector":
            value = self.eval(node.args[0])
            if not isinstance(value, Scalar):
                raise BadData("vector() expects a scalar")
            return Vector([{}], value.v[None, :].copy(), np.ones((1, len(self.steps)), bool))
        if name == "scalar":  # the value of a one-element vector, else NaN
            vec = self._as_vector(self.eval(node.args[0]), name)
            single = vec.ok.sum(axis=0) == 1
            value = np.where(vec.ok, vec.v, 0.0).sum(axis=0) if len(vec.labels) else single * 0.0
            return Scalar(np.where(single, value, np.nan))
        raise BadData(f"function {name}() is not supported")

    def _range_function(self, name: str, args: list[Any]) -> Vector:
        arg = args[0]
        if not isinstance(arg, pp.MatrixSelector):
            raise BadData(
                f"{name}() needs a range selector such as x[5m] (subqueries are not supported)"
            )
        vs = arg.vector_selector
        at = self._times(vs)
        range_ms = _ms(arg.range)
        keep_name = name == "last_over_time"  # acts like an offset: Prometheus keeps the name
        got = self._rolled(vs, at, range_ms) if name in rolled.CLAIMED else None
        if got is not None:
            values, ok = windows.over_time_all(name, [(r[1], r[2]) for r in got], at, range_ms)
            from_buckets = functools.partial(rolled.over_time, name, range_ms=range_ms)
            self._from_buckets(got, at, range_ms, values, ok, from_buckets)
            labels = [r[0] if keep_name else without_name(r[0]) for r in got]
            return merged(self._stacked(labels, values, ok))
        series = self.source.select(from_selector(vs), int(at[0]) - range_ms, int(at[-1]))
        values, ok = windows.over_time_all(name, [(ts, v) for _, ts, v in series], at, range_ms)
        labels = [lb if keep_name else without_name(lb) for lb, _, _ in series]
        return merged(self._stacked(labels, values, ok))

    def _rolled(
        self, vs: Any, at: np.ndarray, reach_ms: int, lookup: bool = False
    ) -> list[RolledSeries] | None:
        """Series with rollup buckets where raw blocks are gone, when the source has them
        and the windows allow an exact answer (rolled.py), else None (raw only)."""
        select_rolled = getattr(self.source, "select_rolled", None)
        if select_rolled is None:
            return None
        return select_rolled(from_selector(vs), at, reach_ms, lookup)

    @staticmethod
    def _from_buckets(
        got: list[RolledSeries],
        at: np.ndarray,
        reach_ms: int,
        values: np.ndarray,
        ok: np.ndarray,
        evaluate: Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]],
    ) -> None:
        """Overwrite, in place, the steps whose window starts before raw blocks do with the
        buckets' answer; a step the buckets cannot answer exactly answers nothing."""
        for i, (_, _, _, buckets, boundary) in enumerate(got):
            if buckets is None:
                continue
            use = at - reach_ms < boundary
            if not use.any():
                continue
            v, present, known = evaluate(buckets, at[use])
            values[i, use] = v
            ok[i, use] = present & known

    # Aggregations ------------------------------------------------------------------------
    def _eval_AggregateExpr(self, node: Any) -> Vector:
        op = str(node.op)
        if op not in _AGGREGATIONS:
            raise BadData(f"aggregation {op} is not supported")
        vec = self._as_vector(self.eval(node.expr), op)
        param = None
        if op in ("topk", "bottomk", "quantile"):
            got = self.eval(node.param)
            if not isinstance(got, Scalar):
                raise BadData(f"the parameter of {op} must be a scalar")
            param = got.v
        groups, out_labels = _groups(vec.labels, node.modifier)
        if op in ("topk", "bottomk"):
            return _top(vec, groups, param, op == "topk")
        if op in _BY_REDUCEAT and len(out_labels) > 1:
            values, ok = _reduce_groups(op, vec.v, vec.ok, groups, len(out_labels))
            return self._stacked(out_labels, values, ok)
        rows = []
        for g, labels in enumerate(out_labels):
            sel = groups == g
            values, ok = _aggregate(op, vec.v[sel], vec.ok[sel], param)
            rows.append((labels, values, ok))
        return self._vector(rows)

    # Operators ---------------------------------------------------------------------------
    def _eval_UnaryExpr(self, node: Any) -> Value:
        value = self.eval(node.expr)
        if isinstance(value, Scalar):
            return Scalar(-value.v)
        vec = self._as_vector(value, "unary minus")
        return merged(Vector([without_name(lb) for lb in vec.labels], -vec.v, vec.ok))

    def _eval_BinaryExpr(self, node: Any) -> Value:
        op = str(node.op)
        mod = node.modifier
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        if isinstance(lhs, Text) or isinstance(rhs, Text):
            raise BadData(f"operator {op} does not take strings")
        return_bool = bool(mod and mod.return_bool)
        if op in _SET_OPS:
            return _set_op(op, self._as_vector(lhs, op), self._as_vector(rhs, op), mod)
        if op not in _ARITHMETIC and op not in _COMPARISON:
            raise BadData(f"operator {op} is not supported")
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            with np.errstate(all="ignore"):
                if op in _COMPARISON:
                    return Scalar(_COMPARISON[op](lhs.v, rhs.v).astype(float))
                return Scalar(_ARITHMETIC[op](lhs.v, rhs.v))
        if isinstance(lhs, Vector) and isinstance(rhs, Vector):
            return _vector_binop(op, lhs, rhs, mod, return_bool)
        return _scalar_binop(op, lhs, rhs, return_bool)

    def _eval_SubqueryExpr(self, node: Any) -> Value:
        raise BadData("subqueries are not supported")

    @staticmethod
    def _as_vector(value: Value, what: str) -> Vector:
        if not isinstance(value, Vector):
            raise BadData(f"{what} expects an instant vector, got {_type_name(value)}")
        return value


def _describe(node: Any) -> str:
    return {"SubqueryExpr": "a subquery"}.get(type(node).__name__, type(node).__name__)


def _type_name(value: Value) -> str:
    return {Scalar: "scalar", Text: "string", Vector: "instant vector"}[type(value)]


def _groups(labels: list[dict[str, str]], modifier: Any) -> tuple[np.ndarray, list[dict]]:
    """Group index of each series and the labels of each group."""
    if modifier is None and labels:  # `sum(x)`: one group, of no labels
        return np.zeros(len(labels), dtype=np.int64), [{}]
    index: dict[tuple, int] = {}
    out: list[dict] = []
    ids = []
    by = modifier is not None and modifier.type == pp.AggModifierType.By
    names = set(modifier.labels) if modifier is not None else set()
    ordered = sorted(names)
    for lb in labels:
        if by:  # the group's label_key, without building its labels for every series
            key = tuple([(n, lb[n]) for n in ordered if n in lb])
        else:
            kept = {k: v for k, v in lb.items() if k not in names and k != NAME}
            key = label_key(kept)
        group = index.get(key)
        if group is None:  # its labels in the first series' order
            group = index[key] = len(out)
            out.append({k: v for k, v in lb.items() if k in names} if by else kept)
        ids.append(group)
    return np.array(ids, dtype=np.int64), out


def _aggregate(
    op: str, v: np.ndarray, ok: np.ndarray, param: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    count = ok.sum(axis=0)
    present = count > 0
    with np.errstate(all="ignore"):
        if op == "count":
            return count.astype(float), present
        if op == "group":
            return np.ones(count.shape), present
        if op == "min":
            return np.where(ok, v, np.inf).min(axis=0), present
        if op == "max":
            return np.where(ok, v, -np.inf).max(axis=0), present
        total = np.where(ok, v, 0.0).sum(axis=0)
        if op == "sum":
            return total, present
        mean = total / count
        if op == "avg":
            return mean, present
        if op in ("stddev", "stdvar"):
            var = np.where(ok, (v - mean) ** 2, 0.0).sum(axis=0) / count
            return (np.sqrt(var) if op == "stddev" else var), present
        return _quantile(param, v, ok, count), present  # quantile


_BY_REDUCEAT = frozenset({"sum", "avg", "min", "max", "count", "group"})


def _reduce_groups(
    op: str, v: np.ndarray, ok: np.ndarray, groups: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """`_aggregate` of every group at once: rows sorted by group (stable, so each group's
    rows keep their order and sums add in the same order), then one ufunc.reduceat."""
    order = np.argsort(groups, kind="stable")
    starts = np.searchsorted(groups[order], np.arange(n))
    v, ok = v[order], ok[order]
    count = np.add.reduceat(ok, starts, axis=0, dtype=np.int64)
    present = count > 0
    with np.errstate(all="ignore"):
        if op == "count":
            return count.astype(float), present
        if op == "group":
            return np.ones(count.shape), present
        if op == "min":
            return np.minimum.reduceat(np.where(ok, v, np.inf), starts, axis=0), present
        if op == "max":
            return np.maximum.reduceat(np.where(ok, v, -np.inf), starts, axis=0), present
        total = np.add.reduceat(np.where(ok, v, 0.0), starts, axis=0)
        return (total if op == "sum" else total / count), present


def _quantile(q: np.ndarray, v: np.ndarray, ok: np.ndarray, count: np.ndarray) -> np.ndarray:
    ordered = np.sort(np.where(ok, v, np.inf), axis=0)
    # q out of [0, 1] or NaN would index with garbage; Prometheus answers -Inf, +Inf, NaN
    rank = np.clip(np.where(np.isfinite(q), q, 0.0), 0.0, 1.0) * (count - 1)
    lower = np.clip(np.floor(rank), 0, None).astype(np.int64)
    upper = np.minimum(count - 1, lower + 1).clip(0)
    weight = rank - np.floor(rank)
    cols = np.arange(v.shape[1])
    lower = np.minimum(lower, max(v.shape[0] - 1, 0))
    result = ordered[lower, cols] * (1 - weight) + ordered[upper, cols] * weight
    result = np.where(q < 0, -np.inf, np.where(q > 1, np.inf, result))
    return np.where(np.isnan(q), np.nan, result)


def _top(vec: Vector, groups: np.ndarray, k: np.ndarray, largest: bool) -> Vector:
    """topk/bottomk: each group's k largest (smallest) series at each step, labels kept."""
    keep = np.zeros_like(vec.ok)
    kk = np.floor(k).astype(np.int64)
    for g in np.unique(groups):
        rows = np.flatnonzero(groups == g)
        v = vec.v[rows]
        key = np.where(vec.ok[rows], -v if largest else v, np.inf)
        key = np.where(np.isnan(key) & vec.ok[rows], np.inf, key)  # NaN ranks last
        rank = np.argsort(np.argsort(key, axis=0, kind="stable"), axis=0, kind="stable")
        keep[rows] = (rank < kk) & vec.ok[rows]
    return Vector(vec.labels, vec.v, keep).kept()


def _scalar_binop(op: str, lhs: Value, rhs: Value, return_bool: bool) -> Vector:
    swap = isinstance(lhs, Scalar)
    vec: Vector = rhs if swap else lhs  # type: ignore[assignment]
    scalar = (lhs if swap else rhs).v[None, :]  # type: ignore[union-attr]
    a, b = (scalar, vec.v) if swap else (vec.v, scalar)
    with np.errstate(all="ignore"):
        if op in _ARITHMETIC:
            labels = [without_name(lb) for lb in vec.labels]
            return merged(Vector(labels, _ARITHMETIC[op](a, b), vec.ok))
        hit = _COMPARISON[op](a, b)
    if return_bool:
        labels = [without_name(lb) for lb in vec.labels]
        return merged(Vector(labels, hit.astype(float), vec.ok))
    return Vector(vec.labels, vec.v, vec.ok & hit).kept()


def _signature(labels: dict[str, str], mod: Any) -> tuple:
    matching = mod.matching if mod is not None else None
    if matching is None:
        return label_key(without_name(labels))
    names = set(matching.labels)
    if matching.type == pp.LabelModifierType.Include:
        return tuple(sorted((k, v) for k, v in labels.items() if k in names))
    return tuple(sorted((k, v) for k, v in labels.items() if k not in names and k != NAME))


def _by_signature(vec: Vector, mod: Any, side: str) -> dict[tuple, tuple[np.ndarray, np.ndarray]]:
    """One (values, present) row per signature; overlapping duplicates are an error."""
    rows: dict[tuple, list[int]] = {}
    for i, lb in enumerate(vec.labels):
        rows.setdefault(_signature(lb, mod), []).append(i)
    out = {}
    for sig, ix in rows.items():
        ok = vec.ok[ix]
        if (ok.sum(axis=0) > 1).any():
            shown = "{" + ", ".join(f'{k}="{v}"' for k, v in sig) + "}"
            raise ExecutionError(
                f"found duplicate series for the match group {shown} on the {side} hand-side of "
                "the operation; many-to-many matching not allowed: matching labels must be "
                "unique on one side"
            )
        out[sig] = (np.where(ok, vec.v[ix], 0.0).sum(axis=0), ok.any(axis=0))
    return out


def _vector_binop(op: str, lhs: Vector, rhs: Vector, mod: Any, return_bool: bool) -> Vector:
    if mod is not None and mod.card not in (pp.VectorMatchCardinality.OneToOne,):
        raise BadData("group_left/group_right (many-to-one matching) is not supported")
    right = _by_signature(rhs, mod, "right")
    _by_signature(lhs, mod, "left")  # duplicates on the left are refused the same way
    matching = mod.matching if mod is not None else None
    labels, values, oks = [], [], []
    for i, lb in enumerate(lhs.labels):
        match = right.get(_signature(lb, mod))
        if match is None:
            continue
        rv, rok = match
        both = lhs.ok[i] & rok
        with np.errstate(all="ignore"):
            if op in _ARITHMETIC:
                value, ok = _ARITHMETIC[op](lhs.v[i], rv), both
            else:
                hit = _COMPARISON[op](lhs.v[i], rv)
                value, ok = (hit.astype(float), both) if return_bool else (lhs.v[i], both & hit)
        labels.append(_result_labels(lb, op, matching, return_bool))
        values.append(value)
        oks.append(ok)
    if not labels:
        return Vector.empty(lhs.v.shape[1])
    return merged(Vector(labels, np.array(values), np.array(oks)))


def _result_labels(labels: dict[str, str], op: str, matching: Any, return_bool: bool) -> dict:
    out = without_name(labels) if op in _ARITHMETIC or return_bool else dict(labels)
    if matching is None:
        return out
    names = set(matching.labels)
    if matching.type == pp.LabelModifierType.Include:
        return {k: v for k, v in out.items() if k in names}
    return {k: v for k, v in out.items() if k not in names}


def _set_op(op: str, lhs: Vector, rhs: Vector, mod: Any) -> Vector:
    present: dict[tuple, np.ndarray] = {}
    for i, lb in enumerate(rhs.labels):
        sig = _signature(lb, mod)
        present[sig] = present.get(sig, False) | rhs.ok[i]
    none = np.zeros(lhs.v.shape[1], dtype=bool)
    if op in ("and", "unless"):
        ok = np.array([present.get(_signature(lb, mod), none) for lb in lhs.labels]).reshape(
            lhs.ok.shape
        )
        keep = lhs.ok & ok if op == "and" else lhs.ok & ~ok
        return Vector(lhs.labels, lhs.v, keep).kept()
    left: dict[tuple, np.ndarray] = {}
    for i, lb in enumerate(lhs.labels):
        sig = _signature(lb, mod)
        left[sig] = left.get(sig, False) | lhs.ok[i]
    r_ok = np.array(
        [rhs.ok[i] & ~left.get(_signature(lb, mod), none) for i, lb in enumerate(rhs.labels)]
    )
    r_ok = r_ok.reshape(rhs.ok.shape)
    return Vector(
        lhs.labels + rhs.labels, np.concatenate([lhs.v, rhs.v]), np.concatenate([lhs.ok, r_ok])
    ).kept()
