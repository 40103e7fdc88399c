"""The number grammar of CSV values, and DCGM's "blank" readings.

A value is ASCII decimal text: an optional sign, digits with an optional
fraction (`5`, `5.`, `.5`, `5.25`), an optional exponent (`1e3`, `2.5E-3`),
surrounding ASCII spaces or tabs ignored. This is the decimal part of what
Go's `strconv.ParseFloat` (and so Prometheus and dcgm-exporter) accepts,
`+5` included. Refused, each with a message naming the value:

- `NaN`, `Inf`, `Infinity` (any case, any sign): the store keeps finite numbers;
- underscores (`1_000`: Python's float() takes them, Go only with a base prefix),
  hexadecimal floats (`0x1p-2`), and digits other than ASCII 0-9 (full-width
  `U+FF11`, Arabic-Indic `U+0663`);
- a number too large for a 64-bit float (`1e400`), and a non-zero number so
  small it would be read as 0 (`1e-400`): neither is what was written.

DCGM marks a field it has no reading for with sentinel values (dcgm_fields.h:
`DCGM_INT32_BLANK` 0x7ffffff0, `DCGM_INT64_BLANK` 0x7ffffffffffffff0,
`DCGM_FP64_BLANK` 2**47, each followed by NOT_FOUND, NOT_SUPPORTED and
NOT_PERMISSIONED at +1, +2, +3; `DCGM_*_IS_BLANK` treats everything from the
BLANK value up as blank). `is_blank` recognises them: such a value is "no
reading", counted as blank and never stored. The int64 ones all round to 2**63
as floats; no int64 reading can be that large, so the float test is exact enough.
"""

from __future__ import annotations

import re

# [0-9], not \d: \d matches every Unicode decimal digit.
DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
_NONZERO_DIGIT = re.compile(r"[1-9]")
_MANTISSA_END = re.compile(r"[eE]")

DCGM_INT32_BLANK = 0x7FFFFFF0  # 2147483632
DCGM_INT32_MAX = 0x7FFFFFFF
DCGM_INT64_BLANK = 0x7FFFFFFFFFFFFFF0  # 9223372036854775792
DCGM_FP64_BLANK = 140737488355328.0  # 2**47
# The sentinels DCGM writes: BLANK, NOT_FOUND, NOT_SUPPORTED, NOT_PERMISSIONED.
_FP64_SENTINELS = frozenset(DCGM_FP64_BLANK + i for i in range(4))
_INT64_AS_FLOAT = float(DCGM_INT64_BLANK)  # 2**63: every int64 sentinel rounds to it


class NotANumber(ValueError):
    """The text is not a value by the grammar above; the message says why."""


def show(text: str) -> str:
    """The text quoted for an error message, cut short: a field may be 64 KiB."""
    return repr(text) if len(text) <= 40 else repr(text[:40]) + "..."


def parse_value(text: str) -> float:
    """The float written in `text`; NotANumber (message naming the value) otherwise."""
    s = text.strip(" \t")
    if not s:
        raise NotANumber("value is empty")
    if DECIMAL.fullmatch(s) is None:
        if _NON_FINITE.fullmatch(s):
            raise NotANumber(f"value {show(s)} is not a finite number")
        raise NotANumber(f"value {show(s)} is not a number")
    value = float(s)
    if value - value != 0.0:  # infinite: overflow
        raise NotANumber(f"value {show(s)} is too large for a 64-bit float")
    if value == 0.0 and _NONZERO_DIGIT.search(_MANTISSA_END.split(s, 1)[0]):
        raise NotANumber(f"value {show(s)} is too small for a 64-bit float (it would read as 0)")
    return value


def is_blank(value: float) -> bool:
    """True for DCGM's "no reading" sentinels (see the module docstring)."""
    if value < DCGM_INT32_BLANK:
        return False  # the usual case, one comparison
    return value <= DCGM_INT32_MAX or value in _FP64_SENTINELS or value == _INT64_AS_FLOAT
