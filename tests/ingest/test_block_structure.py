"""A block is regular by the one regular expression exactly when counting its quotes says so
(the rule of apps/ingest/columnar.py's module doc), on random and hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.ingest.columnar import _Irregular, _shape

PIECES = [b'"', b'""', b",", b'","', b"\n", b"\r", b"\r\n", b"a", b" ", b"\x00", b"\xc3\xa9"]


def counted(block: bytes, limit: int) -> list[int] | None:
    """The line lengths by counting quotes (the rule as it was first written), None when
    irregular: the n-th quote opens a field when n is even (after a comma, a line start or
    a quote) and closes it when n is odd (before a comma, a line end or a quote); no line
    ends inside quotes; \\r only before \\n; ASCII, no NUL, whole lines under `limit`."""
    if not block.endswith(b"\n") or not block.isascii() or b"\x00" in block:
        return None
    lines = block.split(b"\n")[:-1]
    if any(len(line) >= limit for line in lines):
        return None
    if any(block[i + 1] != 10 for i in range(len(block)) if block[i] == 13):
        return None
    seen = 0
    for line in lines:
        for i, byte in enumerate(line):
            if byte != 34:
                continue
            before = line[i - 1] if i else 10
            after = line[i + 1] if i + 1 < len(line) else 10
            if seen % 2 == 0 and before not in b',\n"':
                return None
            if seen % 2 == 1 and after not in b',\n"\r':
                return None
            seen += 1
        if seen % 2:
            return None  # a line end inside quotes
    return [len(line) - line.endswith(b"\r") for line in lines]


def decided(block: bytes, limit: int) -> list[int] | None:
    try:
        return _shape(block, limit)[1].tolist()  # each line's content length
    except _Irregular:
        return None


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), min_size=0, max_size=30), st.integers(2, 12))
def test_the_expression_and_the_quote_count_agree(pieces, limit):
    block = b"".join(pieces) + b"\n"
    assert decided(block, limit) == counted(block, limit)


def test_a_dcgm_block_is_regular_and_its_hostile_variants_are_not():
    line = b'"2025-07-18T20:00:00Z","DCGM_FI_DEV_GPU_UTIL","0","GPU-1","L=""a"",M=""b"""\r\n'
    assert decided(line * 3, 1000) == [len(line) - 2] * 3
    for bad in (
        line.replace(b'"0"', b'"0"x'),  # text after a closing quote
        line.replace(b'"0"', b'0"0'),  # a quote inside an unquoted field
        line.replace(b'"GPU-1"', b'"GPU\n-1"'),  # a record over two lines
        line.replace(b"\r\n", b"\r"),  # a lone \r
    ):
        assert decided(line + bad + line, 1000) is None
    assert decided(b"a,b\n\n", 10) == [3, 0]
