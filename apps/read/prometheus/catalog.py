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

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from apps.read.prometheus.engine import Series
from apps.read.prometheus.matching import Matcher, matches_all
from apps.read.prometheus.values import NAME
from store import default_keys, shards, window_ms
from store.codec import Samples
from store.keys import MAX_TS, Keys
from store.read import read_samples
from store.registry import gpu_shard, list_records
from store.workloads import WORKLOAD_LABELS, Period, read_workloads
from store.write import latest_values

_OWN = frozenset({NAME, "cluster", *WORKLOAD_LABELS})


@dataclass(frozen=True)
class Entry:
    """One series: its labels, where its samples are, and the time span it covers."""

    labels: dict[str, str]
    uuid: str
    metric: str
    spans: tuple[tuple[int, int], ...]  # [first, last] ms ranges this series holds

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


class StoreSource:
    """Series of one etcd root; records, latest values and samples read once per query."""

    def __init__(self, keys: Keys | None = None) -> None:
        self.keys = keys or default_keys()
        self._entries: list[Entry] | None = None
        self._samples: dict[str, tuple[int, int, Samples]] = {}

    def entries(self) -> list[Entry]:
        if self._entries is None:
            self._entries = self._build()
        return self._entries

    def _build(self) -> list[Entry]:
        records = list_records(self.keys)
        latest = latest_values(self.keys) if records else {}
        workloads = read_workloads(self.keys, [r["uuid"] for r in records]) if records else {}
        out = []
        for record in records:
            uuid = record["uuid"]
            periods = with_idle(workloads.get(uuid) or [])
            for metric, (last_ts, _) in sorted((latest.get(uuid) or {}).items()):
                base = dcgm_labels(record, metric)
                for extra, spans in periods:
                    cut = _cut(spans, int(record["first_seen"]), int(last_ts))
                    if cut:
                        out.append(Entry({**base, **extra}, uuid, metric, cut))
        return out

    def matching(self, matchers: list[Matcher], start: int = 0, end: int = MAX_TS) -> list[Entry]:
        return [
            e
            for e in self.entries()
            if e.end >= start and e.start <= end and matches_all(matchers, e.labels)
        ]

    def select(self, matchers: list[Matcher], start: int, end: int) -> list[Series]:
        found = self.matching(matchers, start, end)
        by_gpu: dict[str, list[Entry]] = defaultdict(list)
        for entry in found:
            by_gpu[entry.uuid].append(entry)
        out = []
        for uuid, entries in by_gpu.items():
            samples = self._read(uuid, start, end)
            for entry in entries:
                ts, values = _series_of(samples, entry, start, end)
                if len(ts):
                    out.append((entry.labels, ts, values))
        return out

    def _read(self, uuid: str, start: int, end: int) -> Samples:
        cached = self._samples.get(uuid)
        if cached is not None and cached[0] <= start and cached[1] >= end:
            return cached[2]
        if cached is not None:
            start, end = min(start, cached[0]), max(end, cached[1])
        with shards.use(gpu_shard(self.keys, uuid)):  # the GPU's etcd shard
            samples = read_samples(self.keys, uuid, max(start, 0), min(end, MAX_TS), window_ms())
        self._samples[uuid] = (start, end, samples)
        return samples


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


def _series_of(
    samples: Samples, entry: Entry, start: int, end: int
) -> tuple[np.ndarray, np.ndarray]:
    if entry.metric not in samples.names:
        return np.zeros(0, np.int64), np.zeros(0)
    inside = np.zeros(len(samples.ts), dtype=bool)
    for lo, hi in entry.spans:
        inside |= (samples.ts >= max(lo, start)) & (samples.ts <= min(hi, end))
    sel = inside & (samples.metric == samples.names.index(entry.metric))
    return samples.ts[sel], samples.value[sel]
