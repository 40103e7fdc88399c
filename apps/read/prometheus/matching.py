"""Label matchers (`=`, `!=`, `=~`, `!~`) as Prometheus applies them.

A missing label matches as the empty string; regular expressions are anchored
at both ends (`=~"a|b"` means the whole value is `a` or `b`). Regular expressions
are RE2, as in Prometheus (Go's regexp): the same syntax and meaning (`.` does not
match a newline), and linear time whatever a caller sends, so a hostile pattern
cannot hold a worker (Python's `re` backtracks exponentially on `(a+)+b`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

import promql_parser
import re2

from apps.read.prometheus.limits import MAX_REGEX_BYTES, check_query, is_panic
from apps.read.prometheus.values import NAME, BadData

_OPS = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _op(op: promql_parser.MatchOp) -> str:
    # the parser's enum values are not hashable: compare one by one
    return next(text for kind, text in _OPS if op == kind)


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str
    # compiled once per matcher (a bad or too long pattern is refused when it is built)
    regex: re2._Regexp | None = field(default=None, init=False, compare=False, repr=False)
    # label value -> fullmatch: a fleet repeats a few values (hosts, indexes) many times
    seen: dict[str, bool] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "regex", _regex(self.value))

    def matches(self, labels: dict[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        if self.value == ".*":  # the dashboards' "any value": RE2's `.` stops at a newline only
            hit = "\n" not in got
            return hit if self.op == "=~" else not hit
        hit = self.seen.get(got)
        if hit is None:
            hit = self.regex.fullmatch(got) is not None  # type: ignore[union-attr]
            if len(self.seen) < _SEEN_VALUES:
                self.seen[got] = hit
        return hit if self.op == "=~" else not hit


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a bad pattern is the caller's error, answered 400
CACHED_REGEX_BYTES = 1024  # longer patterns are compiled per use, so the cache stays small
_SEEN_VALUES = 4096  # label values a matcher remembers (one query's matcher: a few hundred)


def _regex(text: str) -> re2._Regexp:
    if len(text) > MAX_REGEX_BYTES:
        raise BadData(
            f"regular expression of {len(text)} characters, over the limit of {MAX_REGEX_BYTES}"
        )
    return _cached_regex(text) if len(text) <= CACHED_REGEX_BYTES else _compile(text)


@lru_cache(maxsize=1024)
def _cached_regex(text: str) -> re2._Regexp:
    return _compile(text)


def _compile(text: str) -> re2._Regexp:
    try:
        return re2.compile(text, _RE2_OPTIONS)
    except re2.error as exc:
        why = (
            exc.args[0].decode(errors="replace")
            if exc.args and isinstance(exc.args[0], bytes)
            else exc
        )
        raise BadData(f"invalid regular expression {text!r}: {why}") from None


def from_selector(vs: promql_parser.VectorSelector) -> list[Matcher]:
    """The matchers of a parsed vector selector, the metric name included."""
    if vs.matchers.or_matchers:
        raise BadData("'or' inside a label selector is not supported")
    out = [Matcher(NAME, "=", vs.name)] if vs.name else []
    out += [Matcher(m.name, _op(m.op), m.value) for m in vs.matchers.matchers]
    return out


def parse_match(text: str) -> list[Matcher]:
    """A `match[]` series selector (`up`, `{job="x"}`, ...); BadData when it is not one."""
    check_query(text, "match[]")  # before the parser, whose stack a long text overflows
    try:
        expr = promql_parser.parse(text)
    except ValueError as exc:
        raise BadData(f'invalid parameter "match[]": {exc}') from None
    except BaseException as exc:
        if not is_panic(exc):
            raise
        raise BadData(f'invalid parameter "match[]": the parser refused it ({exc})') from None
    if not isinstance(expr, promql_parser.VectorSelector):
        raise BadData(f'invalid parameter "match[]": {text!r} is not a series selector')
    matchers = from_selector(expr)
    if all(m.matches({}) for m in matchers):
        raise BadData("match[] must contain at least one non-empty matcher")
    return matchers


def matches_all(matchers: Iterable[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
