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
block never spans more than one raw window; `lines` are the first line of each
(GPU, raw window) outside a tier.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from store import kv, shards
from store.keys import Keys
from store.tiers import Tier
from timeparse.timestamps import format_timestamp

_MAX_LINES = 10
_PRELOAD_MAX = 5000  # GPUs: their latest values fit one range read (~0.5 KiB each)
_NEVER = -(2**62)


def _newest_of(latest: bytes) -> int:
    return max((int(entry[0]) for entry in json.loads(latest).values()), default=_NEVER)


class _Lines(Protocol):
    @property
    def line(self) -> int: ...


@dataclass(slots=True)
class _Span:
    rows: int
    first: int
    last: int
    line: int


class Horizon:
    """Per-upload retention check: `check` every accepted row, `observe` every chunk.

    Cheap per row (one dict lookup in the usual case): the rows per raw window are
    counted from the chunks, vectorized; a row only costs more when it is the first
    of its GPU in a raw window (its line is noted) or moves its GPU's newest sample.
    Not thread-safe.
    """

    def __init__(
        self,
        keys: Keys,
        tiers: list[Tier],
        cluster: str | None = None,
        now_ms: int | None = None,
    ) -> None:
        """`cluster`: the upload's; its GPUs' stored samples are read in its shard. A stored
        newest sample later than `now_ms` (the clock) counts as now, as retention does: a
        far-future sample stored before the future was refused cannot refuse today's rows."""
        self.keys = keys
        self.tiers = tiers
        self.cluster = cluster
        self.now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.refused = 0
        self._window = tiers[0].window_ms
        self._longest = max(t.retention_ms for t in tiers)
        # uuid -> [newest sample, oldest time kept (newest - longest), last raw window seen]
        self._state: dict[str, list[int]] = {}
        self._lines: dict[tuple[str, int], int] = {}  # first line of each (uuid, raw window)
        # uuid -> (lo, hi): a row of that GPU with lo <= ts <= hi needs no `check` (kept,
        # not its GPU's newest, in the raw window already noted). Callers test it inline.
        self.settled: dict[str, tuple[int, int]] = {}
        self._stored: dict[str, int] | None = None
        self._preloaded = False
        self._spans: dict[tuple[str, int], _Span] = {}

    def check(self, uuid: str, ts: int, where: _Lines) -> str | None:
        """None when the row is kept; else why it is refused. `where.line` is read only
        when needed (a refusal, a GPU's first row in a raw window)."""
        state = self._state.get(uuid) or self._first_state(uuid)
        if ts > state[0]:
            state[0], state[1] = ts, ts - self._longest
        if ts < state[1]:
            self.refused += 1
            return self._too_old(ts, state[0])
        window = ts // self._window
        if window != state[2]:
            state[2] = window
            self._lines.setdefault((uuid, window), where.line)
        low = max(state[1], window * self._window)
        self.settled[uuid] = (low, min(state[0], (window + 1) * self._window - 1))
        return None

    def check_rows(
        self, uuid: str, ts: np.ndarray, lines: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """`check` for one GPU's rows at once, in file order (a columnar batch): the mask
        of rows refused, and (line, reason) of each. The same answers as `check` row by
        row: a GPU's newest sample is the running maximum of its times."""
        state = self._state.get(uuid) or self._first_state(uuid)
        running = np.maximum.accumulate(np.maximum(ts, state[0]))
        refused = ts < running - self._longest
        reasons = [
            (int(lines[i]), self._too_old(int(ts[i]), int(running[i])))
            for i in np.flatnonzero(refused)
        ]
        self.refused += len(reasons)
        kept_ts, kept_lines = ts[~refused], lines[~refused]
        if len(kept_ts):
            windows = kept_ts // self._window
            found, first = np.unique(windows, return_index=True)
            for window, at in zip(found.tolist(), first.tolist(), strict=True):
                self._lines.setdefault((uuid, window), int(kept_lines[at]))
            state[2] = int(windows[-1])
        state[0] = max(state[0], int(running[-1])) if len(running) else state[0]
        state[1] = state[0] - self._longest
        self.settled.pop(uuid, None)  # the next single row is checked in full
        return refused, reasons

    def check_batch(
        self, uuids: list[str], gpu: np.ndarray, ts: np.ndarray, lines: np.ndarray
    ) -> tuple[np.ndarray, list[tuple[int, str]]]:
        """`check_rows` for every GPU of a columnar batch at once: row `i` is GPU
        `uuids[gpu[i]]` at `ts[i]` on `lines[i]`, rows in file order. The same answers, the
        same notes: a GPU none of whose rows can be refused (its earliest row within the
        longest retention of its newest sample, this batch's included, as `check_spans`
        decides) is settled on columns; only the others go through `check_rows`. One
        `check_rows` per GPU per batch was the largest cost of an upload's main thread."""
        order = np.argsort(gpu, kind="stable")  # each GPU's rows, still in file order
        codes, t, ln = gpu[order], ts[order], lines[order]
        starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        stops = np.r_[starts[1:], len(codes)]
        present = [uuids[c] for c in codes[starts].tolist()]
        states = [self._state.get(u) or self._first_state(u) for u in present]
        newest = np.fromiter((s[0] for s in states), dtype=np.int64, count=len(states))
        top = np.maximum(newest, np.maximum.reduceat(t, starts))
        safe = np.minimum.reduceat(t, starts) >= top - self._longest
        refused = np.zeros(len(ts), dtype=bool)
        reasons: list[tuple[int, str]] = []
        for i in np.flatnonzero(~safe).tolist():
            picked = order[starts[i] : stops[i]]
            mask, why = self.check_rows(present[i], ts[picked], lines[picked])
            refused[picked[mask]] = True
            reasons.extend(why)
        if not safe.any():
            return refused, reasons
        # the safe GPUs: the first line of each (GPU, raw window), its last window, newest
        rows_safe = np.repeat(safe, stops - starts)
        codes, t, ln = codes[rows_safe], t[rows_safe], ln[rows_safe]
        windows = t // self._window
        by_pair = np.lexsort((ln, windows, codes))
        c, w = codes[by_pair], windows[by_pair]
        firsts = by_pair[np.flatnonzero(np.r_[True, (c[1:] != c[:-1]) | (w[1:] != w[:-1])])]
        for code, window, line in zip(
            codes[firsts].tolist(), windows[firsts].tolist(), ln[firsts].tolist(), strict=True
        ):
            self._lines.setdefault((uuids[code], window), line)
        ends = np.r_[np.flatnonzero(codes[1:] != codes[:-1]), len(codes) - 1]
        for i, window in zip(np.flatnonzero(safe).tolist(), windows[ends].tolist(), strict=True):
            state = states[i]
            state[0] = int(top[i])
            state[1] = state[0] - self._longest
            state[2] = window
            self.settled.pop(present[i], None)
        return refused, reasons

    def check_spans(self, uuids: list[str], first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """A batch's GPUs at once, each with its rows' earliest and latest time: True where
        none of its rows can be refused (its earliest is within the longest retention of its
        newest sample, this batch's included), and that GPU's newest sample is moved; the
        others need `check_rows`. One dict lookup per GPU, the rest vectorized: the usual
        case of live samples costs no per-row Python."""
        states = [self._state.get(u) or self._first_state(u) for u in uuids]
        newest = np.fromiter((s[0] for s in states), dtype=np.int64, count=len(states))
        top = np.maximum(newest, last)
        safe = first >= top - self._longest
        for i in np.flatnonzero(safe & (last > newest)).tolist():
            state = states[i]
            state[0] = int(top[i])
            state[1] = state[0] - self._longest
            self.settled.pop(uuids[i], None)
        return safe

    def _first_state(self, uuid: str) -> list[int]:
        """A GPU's state from its stored newest sample, counted at most as now."""
        newest = min(self._stored_newest(uuid), self.now_ms)
        state = self._state[uuid] = [newest, newest - self._longest, -1]
        return state

    def _too_old(self, ts: int, newest: int) -> str:
        return (
            f"sample time {format_timestamp(ts)} is older than every storage tier keeps "
            f"({_days(self._longest)} before this GPU's newest sample, "
            f"{format_timestamp(newest)}): it would be deleted at the next compaction"
        )

    def observe(self, uuid: str, ts: np.ndarray) -> None:
        """Count a GPU's accepted samples (one chunk's part) per raw window."""
        if not len(ts):
            return
        windows = ts // self._window
        order = np.argsort(windows, kind="stable")
        windows, ts = windows[order], ts[order]
        starts = np.flatnonzero(np.r_[True, windows[1:] != windows[:-1]])
        counts = np.diff(np.r_[starts, len(ts)])
        firsts = np.minimum.reduceat(ts, starts)
        lasts = np.maximum.reduceat(ts, starts)
        for w, n, first, last in zip(
            windows[starts].tolist(), counts.tolist(), firsts.tolist(), lasts.tolist(), strict=True
        ):
            span = self._spans.get((uuid, w))
            if span is None:
                line = self._lines.get((uuid, w), 0)
                self._spans[(uuid, w)] = _Span(n, first, last, line)
            else:
                span.rows += n
                span.first, span.last = min(span.first, first), max(span.last, last)

    def _stored_newest(self, uuid: str) -> int:
        """The GPU's newest stored sample: from one range read of every GPU's latest
        values when the store holds at most _PRELOAD_MAX GPUs, else one read per GPU."""
        with self._shard():
            if self._stored is None:
                self._stored = {}
                prefix = self.keys.latest_prefix()
                if kv.count_prefix(prefix) <= _PRELOAD_MAX:
                    for item in kv.get_prefix(prefix):
                        self._stored[item.key[len(prefix) :]] = _newest_of(item.value)
                    self._preloaded = True
            if self._preloaded:
                return self._stored.get(uuid, _NEVER)
            item = kv.get(self.keys.latest(uuid))
        return _NEVER if item is None else _newest_of(item.value)

    def _shard(self) -> contextlib.AbstractContextManager[object]:
        if self.cluster is None:
            return contextlib.nullcontext()
        return shards.in_cluster(self.cluster)

    def _newest(self, uuid: str) -> int:
        return self._state[uuid][0]

    def summary(self) -> dict[str, Any]:
        """Per tier, the accepted rows outside its retention, and the tiers that keep them."""
        spans = [(uuid, s) for (uuid, _), s in self._spans.items()]
        out: list[dict[str, Any]] = []
        for i, tier in enumerate(self.tiers):
            pairs = [(u, s) for u, s in spans if s.last < self._newest(u) - tier.retention_ms]
            if not pairs:
                continue
            outside = [s for _, s in pairs]
            keeping = [
                t.name
                for t in self.tiers[i + 1 :]
                if any(s.last >= self._newest(u) - t.retention_ms for u, s in pairs)
            ]
            out.append(
                {
                    "tier": tier.name,
                    "retention": _days(tier.retention_ms),
                    "rows": sum(s.rows for s in outside),
                    "first": format_timestamp(min(s.first for s in outside)),
                    "last": format_timestamp(max(s.last for s in outside)),
                    "lines": sorted(s.line for s in outside if s.line)[:_MAX_LINES],
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
