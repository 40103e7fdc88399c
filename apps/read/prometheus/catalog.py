"""The store seen as Prometheus series: labels as dcgm-exporter exposes them, samples from blocks.

Each GPU record gives one series per metric it has reported (`latest/{uuid}`
lists them), labelled like dcgm-exporter's output scraped by Prometheus:
`__name__`, `UUID`, `gpu`, `device`, `modelName`, `Hostname`,
`DCGM_FI_DRIVER_VERSION`, plus every other label the record kept from the
source (`pci_bus_id`, `GPU_I_ID`, `GPU_I_PROFILE`, `instance`, `job`, ...), and
`cluster`. Workload labels (`pod`, `namespace`, `container`) come from the
GPU's attribution intervals (store/workloads.py): a GPU that ran three pods is
three series per metric, each holding the samples of its period, as
Prometheus would have stored them.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from apps.read.prometheus.engine import Series
from apps.read.prometheus.matching import Matcher, matches_all
from apps.read.prometheus.values import NAME
from store import default_keys, shards, window_ms
from store.keys import MAX_TS, Keys
from store.kv import Listing
from store.read import cached_series, plan_blocks, read_series
from store.registry import gpu_shard, list_records
from store.workloads import WORKLOAD_LABELS, Period, read_workloads
from store.write import latest_values

_THREADS = 8  # parallel GPU reads of one query
# How long a process reuses the series catalog; a GPU or metric that appears is seen
# after at most this long, and instant queries "now" may lag as much behind the latest.
CATALOG_TTL_S = 1.0
_OWN = frozenset({NAME, "cluster", *WORKLOAD_LABELS})


@dataclass(frozen=True)
class Entry:
    """One series: its labels, where its samples are, and the time span it covers."""

    labels: dict[str, str]
    uuid: str
    metric: str
    spans: tuple[tuple[int, int], ...]  # [first, last] ms ranges this series holds
    newest: tuple[int, float]  # the GPU's latest sample of this metric (latest/{uuid})
    reads: tuple[tuple[int, int], ...]  # spans whose samples are read (current one open)

    @property
    def start(self) -> int:
        return self.spans[0][0]

    @property
    def end(self) -> int:
        return self.spans[-1][1]


def dcgm_labels(record: dict, metric: str) -> dict[str, str]:
    """The labels dcgm-exporter gives `metric` of this GPU (workload labels aside)."""
    kept = record.get("labels") or {}
    index = record.get("gpu_index")
    labels = {k: str(v) for k, v in kept.items() if k not in _OWN}
    labels.update(
        {
            NAME: metric,
            "cluster": record["cluster"],
            "Hostname": kept.get("Hostname") or record["host"],
            "UUID": kept.get("UUID") or record["uuid"],
            "gpu": str(index) if index is not None else kept.get("gpu", ""),
            "device": record.get("device") or kept.get("device", ""),
            "modelName": record.get("model") or kept.get("modelName", ""),
            "DCGM_FI_DRIVER_VERSION": record.get("driver")
            or kept.get("DCGM_FI_DRIVER_VERSION", ""),
        }
    )
    return {k: v for k, v in labels.items() if v != ""}  # Prometheus has no empty labels


@dataclass(frozen=True)
class _Listing:
    entries: list[Entry]
    # selectors name a metric: matching only its entries, not every metric's, is most
    # of what an instant query saves
    by_name: dict[str, list[Entry]]

    @classmethod
    def of(cls, entries: list[Entry]) -> _Listing:
        by_name: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_name[entry.metric].append(entry)
        return cls(entries, dict(by_name))


class _Catalog:
    """Per-process entries of each root, kept CATALOG_TTL_S: a dashboard refreshing many
    panels reads records, latest values and workloads once, not once per panel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, _Listing]] = {}

    def get(self, root: str, build: Callable[[], list[Entry]]) -> _Listing:
        now = time.monotonic()
        with self._lock:
            held = self._held.get(root)
        if held is not None and held[0] > now:
            return held[1]
        listing = _Listing.of(build())
        with self._lock:
            if len(self._held) > 64:  # roots come and go in tests; keep this small
                self._held.clear()
            self._held[root] = (now + CATALOG_TTL_S, listing)
        return listing

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


_CATALOG = _Catalog()


class StoreSource:
    """Series of one etcd root; records, latest values and samples read once per query."""

    def __init__(self, keys: Keys | None = None) -> None:
        self.keys = keys or default_keys()
        self._held: _Listing | None = None
        self._series: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray]] = {}

    def entries(self) -> list[Entry]:
        return self._listing().entries

    def _listing(self) -> _Listing:
        if self._held is None:
            self._held = _CATALOG.get(self.keys.root, self._build)
        return self._held

    def _build(self) -> list[Entry]:
        records = list_records(self.keys)
        latest = latest_values(self.keys) if records else {}
        workloads = read_workloads(self.keys, [r["uuid"] for r in records]) if records else {}
        out = []
        for record in records:
            uuid = record["uuid"]
            periods = with_idle(workloads.get(uuid) or [])
            for metric, (last_ts, last_value) in sorted((latest.get(uuid) or {}).items()):
                base = dcgm_labels(record, metric)
                for extra, spans in periods:
                    cut = _cut(spans, int(record["first_seen"]), int(last_ts))
                    if cut:
                        newest = (int(last_ts), float(last_value))
                        # the current period stays open: samples newer than the
                        # catalog (cached for CATALOG_TTL_S) still belong to it
                        current = cut[-1][1] == int(last_ts)
                        reads = (*cut[:-1], (cut[-1][0], MAX_TS)) if current else cut
                        out.append(Entry({**base, **extra}, uuid, metric, cut, newest, reads))
        return out

    def matching(self, matchers: list[Matcher], start: int = 0, end: int = MAX_TS) -> list[Entry]:
        named = next((m.value for m in matchers if m.name == NAME and m.op == "="), None)
        candidates = self.entries() if named is None else self._listing().by_name.get(named, [])
        return [
            e
            for e in candidates
            if e.end >= start and e.start <= end and matches_all(matchers, e.labels)
        ]

    def select(
        self, matchers: list[Matcher], start: int, end: int, newest_only: bool = False
    ) -> list[Series]:
        """Matching series with their samples in [start, end].

        `newest_only`: the caller needs only each series' newest sample in the span
        (an instant lookup); when that is the GPU's latest sample, the latest key
        already read gives it and no block is read (the dashboard's usual query).
        """
        found = self.matching(matchers, start, end)
        if newest_only:
            out, found = _from_latest(found, start, end)
            return out + self.select_entries(found, start, end)
        return self.select_entries(found, start, end)

    def select_entries(self, found: list[Entry], start: int, end: int) -> list[Series]:
        by_gpu: dict[str, list[Entry]] = defaultdict(list)
        for entry in found:
            by_gpu[entry.uuid].append(entry)
        wanted = {u: sorted({e.metric for e in entries}) for u, entries in by_gpu.items()}
        series = self._read(wanted, start, end)
        out = []
        for uuid, entries in by_gpu.items():
            for entry in entries:
                ts, values = _within(*series[uuid][entry.metric], entry.reads)
                if len(ts):
                    out.append((entry.labels, ts, values))
        return out

    def _read(
        self, wanted: dict[str, list[str]], start: int, end: int
    ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Each GPU's wanted metrics in [start, end], each (GPU, metric, span) once per query."""
        todo = {
            u: ms
            for u, ms in wanted.items()
            if any((u, m, start, end) not in self._series for m in ms)
        }
        if todo:
            for u, got in self._read_fresh(todo, start, end).items():
                for m, pair in got.items():
                    self._series[(u, m, start, end)] = pair
        return {u: {m: self._series[(u, m, start, end)] for m in ms} for u, ms in wanted.items()}

    def _read_fresh(
        self, todo: dict[str, list[str]], start: int, end: int
    ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
        """Plan every GPU of a shard in one keys-only transaction; answer from the cached
        columns what they hold, and read the rest on threads (etcd round trips and
        zstd release the GIL)."""
        window = window_ms()
        by_shard: dict[str, list[str]] = defaultdict(list)
        for uuid in todo:
            by_shard[gpu_shard(self.keys, uuid)].append(uuid)
        out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        misses: list[tuple[str, str, Listing]] = []
        for shard, uuids in by_shard.items():
            with shards.use(shard):
                plans = plan_blocks(self.keys, uuids, start, end, window)
            for uuid, planned in plans.items():
                got = cached_series(self.keys, uuid, start, end, todo[uuid], planned)
                if got is None:
                    misses.append((shard, uuid, planned))
                else:
                    out[uuid] = got

        def read(miss: tuple[str, str, Listing]) -> dict:
            shard, uuid, planned = miss
            with shards.use(shard):
                return read_series(self.keys, uuid, start, end, window, todo[uuid], planned)

        if misses:
            with ThreadPoolExecutor(max_workers=min(_THREADS, len(misses))) as pool:
                for miss, got in zip(misses, pool.map(read, misses), strict=True):
                    out[miss[1]] = got
        return out


def with_idle(periods: list[Period]) -> list[tuple[dict[str, str], list[tuple[int, int]]]]:
    """Each workload's spans, plus the time before the first and after the last period.

    Ingest records a period for every sample, idle ones included (empty labels),
    so a gap between two periods holds no sample; before the first and after the
    last lie samples written without periods (none at all for most GPUs).
    """
    spans: dict[tuple, tuple[dict, list]] = {}
    for start, end, labels in periods:
        spans.setdefault(tuple(sorted(labels.items())), (labels, []))[1].append((start, end))
    if not periods:
        return [({}, [(0, MAX_TS)])]
    first = min(p[0] for p in periods)
    last = max(p[1] for p in periods)
    idle = spans.setdefault((), ({}, []))[1]
    idle += [(0, first - 1), (last + 1, MAX_TS)]
    idle.sort()
    return list(spans.values())


def _cut(spans: list[tuple[int, int]], first: int, last: int) -> tuple[tuple[int, int], ...]:
    return tuple((max(s, first), min(e, last)) for s, e in spans if max(s, first) <= min(e, last))


def _from_latest(found: list[Entry], start: int, end: int) -> tuple[list[Series], list[Entry]]:
    """Series answered by their latest sample, and the entries that need blocks."""
    out: list[Series] = []
    rest: list[Entry] = []
    for e in found:
        ts, value = e.newest
        if ts < start:
            continue  # the GPU's newest sample is older than the span: nothing in it
        if ts <= end and any(lo <= ts <= hi for lo, hi in e.spans):
            out.append((e.labels, np.array([ts], np.int64), np.array([value])))
        else:  # newer samples than asked for, or another period holds the latest
            rest.append(e)
    return out, rest


def _within(ts: np.ndarray, values: np.ndarray, spans: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The samples inside the series' spans (its workload periods)."""
    if not len(ts) or (len(spans) == 1 and spans[0][0] <= ts[0] and spans[0][1] >= ts[-1]):
        return ts, values
    inside = np.zeros(len(ts), dtype=bool)
    for lo, hi in spans:
        inside |= (ts >= lo) & (ts <= hi)
    return ts[inside], values[inside]
