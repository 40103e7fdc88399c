"""One reading of Content-Length for the body guard and the upload view: digits only."""

from __future__ import annotations

import pytest

from apps.api.lengths import TOO_LARGE, declared_length


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"0", 0),
        (b"1048576", 1048576),
        (" 42 ", 42),
        ("007", 7),
        (None, None),
        (b"", None),
        ("+5", None),
        ("-1", None),
        ("1_000", None),
        ("0x10", None),
        ("1e3", None),
        ("١٢", None),  # digits, but not ASCII ones
        ("12, 12", None),
        ("1\xa0", None),  # Unicode whitespace is not HTTP's
        ("\t9\t", 9),
        ("0" * 5000 + "5", 5),
        ("9" * 5000, TOO_LARGE),
        (b"1" * 19, TOO_LARGE),
        ("9" * 18, 10**18 - 1),
    ],
)
def test_only_ascii_digits_declare_a_length(value, expected) -> None:
    assert declared_length(value) == expected
