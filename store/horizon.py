"""What an upload's rows will keep, told at upload time (docs/STORAGE.md, "Time policy").

Retention (store/compaction.py) counts back from each GPU's own newest sample.
`Horizon` applies the same rule to an upload while it is parsed, so old data is
never accepted and then dropped without a word:

- a row older than the longest tier keeps, counted back from the GPU's newest
  sample known so far (stored, or earlier in this upload), is refused with that
  reason (`check` returns it);
- at the end, `summary` says per tier which accepted rows fall outside that
  tier's retention (counts, time range, first lines): kept only in the coarser
  tiers, or (rows a later row of the same GPU made too old) deleted by the next
  compaction.

Counted per (GPU, raw window), because retention deletes whole blocks, and a
block never spans more than one raw window.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from store import kv
from store.keys import Keys
from store.tiers import Tier
from timeparse.timestamps import format_timestamp

_MAX_LINES = 10


@dataclass(slots=True)
class _Span:
    rows: int
    first: int
    last: int
    line: int


@dataclass
class Horizon:
    """Per-upload retention check; feed every accepted row to `check`. Not thread-safe."""

    keys: Keys
    tiers: list[Tier]
    refused: int = 0
    _newest: dict[str, int] = field(default_factory=dict)
    _spans: dict[tuple[str, int], _Span] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._window = self.tiers[0].window_ms
        self._longest = max(t.retention_ms for t in self.tiers)

    def check(self, uuid: str, ts: int, line: int) -> str | None:
        """None when the row is kept (it is counted); else why it is refused."""
        newest = self._newest.get(uuid)
        if newest is None:
            newest = self._stored_newest(uuid)
        if ts > newest:
            newest = ts
        self._newest[uuid] = newest
        if ts < newest - self._longest:
            self.refused += 1
            return (
                f"sample time {format_timestamp(ts)} is older than every storage tier keeps "
                f"({_days(self._longest)} before this GPU's newest sample, "
                f"{format_timestamp(newest)}): it would be deleted at the next compaction"
            )
        key = (uuid, ts // self._window)
        span = self._spans.get(key)
        if span is None:
            self._spans[key] = _Span(1, ts, ts, line)
        else:
            span.rows += 1
            span.first = min(span.first, ts)
            span.last = max(span.last, ts)
        return None

    def _stored_newest(self, uuid: str) -> int:
        item = kv.get(self.keys.latest(uuid))
        if item is None:
            return -(2**62)
        stamps = [int(entry[0]) for entry in json.loads(item.value).values()]
        return max(stamps, default=-(2**62))

    def summary(self) -> dict[str, Any]:
        """Per tier, the accepted rows outside its retention, and the tiers that keep them."""
        spans = [(uuid, s) for (uuid, _), s in self._spans.items()]
        out: list[dict[str, Any]] = []
        for i, tier in enumerate(self.tiers):
            pairs = [(u, s) for u, s in spans if s.last < self._newest[u] - tier.retention_ms]
            if not pairs:
                continue
            outside = [s for _, s in pairs]
            keeping = [
                t.name
                for t in self.tiers[i + 1 :]
                if any(s.last >= self._newest[u] - t.retention_ms for u, s in pairs)
            ]
            out.append(
                {
                    "tier": tier.name,
                    "retention": _days(tier.retention_ms),
                    "rows": sum(s.rows for s in outside),
                    "first": format_timestamp(min(s.first for s in outside)),
                    "last": format_timestamp(max(s.last for s in outside)),
                    "lines": sorted(s.line for s in outside)[:_MAX_LINES],
                    "kept_in": keeping,
                    "note": _note(tier, keeping),
                }
            )
        return {"outside": out, "refused_as_too_old": self.refused}


def _note(tier: Tier, keeping: list[str]) -> str:
    if keeping:
        return f"outside {tier.name} retention: kept only as {', '.join(keeping)} rollups"
    return (
        "outside every tier's retention, counted from a newer sample later in this "
        "upload: stored, then deleted by the next compaction"
    )


def _days(ms: int) -> str:
    days = ms / 86_400_000
    return f"{days:g}d" if days >= 1 else f"{ms / 1000:g}s"
