"""Which write of a sample wins: the one ordering rule that reads and compaction share.

A sample (GPU, ts, metric) can sit in several raw blocks: a file uploaded twice,
overlapping files, a chunk redelivered after a worker crash. The winner is the
value from the block with the greatest order key:

1. the **upload sequence** (the etcd revision of the job's creation, carried by
   every chunk and written into each block's key): a newer upload wins;
2. then the **chunk number** within that upload: a later part of the file wins
   (the parser's "last row wins");
3. then the etcd mod revision, which only separates writes of equal order (the
   same chunk written twice: identical content).

etcd revisions alone are not enough: a chunk of an older upload redelivered
after a newer upload was stored gets the newer revision. Blocks written before
upload order existed carry (0, 0): older than every upload. See docs/STORAGE.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

import numpy as np

from store.codec import Samples, decode_block, merge
from store.keys import Keys


class _Versioned(Protocol):
    key: str
    mod_revision: int


class _Stored(_Versioned, Protocol):
    value: bytes


V = TypeVar("V", bound=_Versioned)


def block_order(key: str, mod_revision: int) -> tuple[int, int, int]:
    """The order key of a raw block: (upload sequence, chunk, mod revision)."""
    name = Keys.parse_block(key)
    return name.upload, name.chunk, mod_revision


def in_merge_order(items: Iterable[V]) -> list[V]:
    """Blocks sorted so that, merged in this order, the winning value comes last."""
    return sorted(items, key=lambda it: block_order(it.key, it.mod_revision))


def merge_blocks(items: Iterable[_Stored]) -> Samples:
    """Every sample of these blocks, one per (ts, metric): the winner by the rule above."""
    return merge([decode_block(it.value) for it in in_merge_order(items)])


def by_upload(items: Iterable[_Stored]) -> list[tuple[int, int, Samples]]:
    """The blocks' samples as one part per upload: (upload, newest chunk, samples).

    Each part keeps only the samples no newer upload overrides, so the parts are
    disjoint and merging them in any order gives `merge_blocks(items)`. Compaction
    writes one block per part: the samples keep their upload's order, so a chunk
    of an older upload delivered late still loses to newer uploads and wins over
    older ones.
    """
    groups: dict[int, list[_Stored]] = {}
    for it in items:
        groups.setdefault(block_order(it.key, it.mod_revision)[0], []).append(it)
    out: list[tuple[int, int, Samples]] = []
    taken: set[tuple[int, str]] = set()
    for upload in sorted(groups, reverse=True):
        members = groups[upload]
        merged = merge_blocks(members)
        chunk = max(block_order(it.key, it.mod_revision)[1] for it in members)
        kept = _without(merged, taken)
        taken.update(zip(merged.ts.tolist(), (merged.names[m] for m in merged.metric), strict=True))
        if len(kept):
            out.append((upload, chunk, kept))
    return out


def _without(s: Samples, taken: set[tuple[int, str]]) -> Samples:
    if not taken:
        return s
    names = s.names
    keep = np.fromiter(
        ((t, names[m]) not in taken for t, m in zip(s.ts.tolist(), s.metric.tolist(), strict=True)),
        dtype=bool,
        count=len(s),
    )
    return s if keep.all() else Samples(s.ts[keep], s.metric[keep], s.value[keep], s.names)


def sorted_parts(parts: Sequence[tuple[int, int, Samples]]) -> list[Samples]:
    """Parts from `by_upload`, oldest first (for `merge`)."""
    return [s for _, _, s in sorted(parts, key=lambda p: (p[0], p[1]))]
