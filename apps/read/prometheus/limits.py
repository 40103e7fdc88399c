"""Bounds on PromQL text, checked before the parser sees it.

promql-parser (Rust) recurses once per binary operator and per nesting level,
on the thread's stack and in time quadratic in their number: `x+x+...` with
5,000 terms overflows the stack and kills the process (SIGSEGV, not an
exception), and 2,000 terms take 0.75 s. Measured on promql-parser 0.5: 4,000
`+` survive, 5,000 crash; 8,000 nested parentheses hang or crash in a thread.
So a query is refused (`bad_data`) over these bounds, counted in one linear
pass with string literals and comments taken out (a regex of GPU uuids has
dashes that are not operators). The bounds sit an order of magnitude under
the crash and keep a parse under 10 ms; NVIDIA's DCGM dashboard uses at most
a few operators and 3 levels of nesting.
"""

from __future__ import annotations

import re2

from apps.read.prometheus.values import BadData

MAX_QUERY_BYTES = 64 * 1024  # a Grafana variable expanded to many hosts stays under this
MAX_QUERY_OPERATORS = 256  # binary and unary operators (and matcher signs, counted as well)
MAX_QUERY_NESTING = 64  # depth of (), [] and {}
MAX_REGEX_BYTES = 8 * 1024  # one `=~`/`!~` pattern
# the evaluator recurses twice per node: well under Python's 1,000 frames, and above
# any tree the text bounds let through (operators + nesting + a few calls per level)
MAX_EVAL_DEPTH = 350

# string literals ("..", '..', `..`) and comments; what is left is the structure
# (RE2: linear time, where `re` is quadratic on an unterminated string full of escapes)
_LITERALS = re2.compile(r'(?s)"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`|#[^\n]*')
_OPERATORS = re2.compile(r"==|!=|>=|<=|[-+*/%^<>]|\b(?:and|or|unless|atan2)\b")
_OPEN, _CLOSE = frozenset("([{"), frozenset(")]}")


def check_query(text: str, what: str = "query") -> None:
    """BadData when `text` is over a bound (the parser is then never called)."""
    if len(text) > MAX_QUERY_BYTES:
        raise BadData(
            f'invalid parameter "{what}": {len(text)} characters, over the limit of '
            f"{MAX_QUERY_BYTES}"
        )
    structure = _LITERALS.sub(" ", text)
    operators = sum(1 for _ in _OPERATORS.finditer(structure))
    if operators > MAX_QUERY_OPERATORS:
        raise BadData(
            f'invalid parameter "{what}": {operators} operators, over the limit of '
            f"{MAX_QUERY_OPERATORS}"
        )
    depth = deepest = 0
    for char in structure:
        if char in _OPEN:
            depth += 1
            deepest = max(deepest, depth)
        elif char in _CLOSE and depth:
            depth -= 1
    if deepest > MAX_QUERY_NESTING:
        raise BadData(
            f'invalid parameter "{what}": nested {deepest} deep, over the limit of '
            f"{MAX_QUERY_NESTING}"
        )


def is_panic(exc: BaseException) -> bool:
    """A Rust panic in promql-parser (pyo3's PanicException derives from BaseException,
    so `except Exception` lets it through; its class is only reachable by name)."""
    return type(exc).__name__ == "PanicException"
