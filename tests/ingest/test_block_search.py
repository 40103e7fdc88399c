"""The byte search the block reader uses to spot MIG instances (libc's memmem) finds a
needle exactly where `in` does, on random and hostile bytes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.ingest.columnar import _has

PIECES = [b"GPU_I_ID", b"GPU_I_I", b"GPU_", b"_I_ID", b"G", b"D", b"\x00", b"\n", b'"', b"a"]


@settings(max_examples=2000, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=40), st.sampled_from([b"GPU_I_ID", b"\x00G"]))
def test_the_search_agrees_with_in(pieces, needle):
    block = b"".join(pieces)
    assert _has(block, needle) == (needle in block)
    assert _has(bytearray(block), needle) == (needle in block)


def test_a_needle_at_either_end_of_a_large_block_is_found():
    block = bytearray(b"DCGM_FI_DEV_GPU_UTIL," * 200_000)
    assert not _has(block, b"GPU_I_ID")
    assert _has(b"GPU_I_ID" + bytes(block), b"GPU_I_ID")
    assert _has(bytes(block) + b"GPU_I_ID", b"GPU_I_ID")
