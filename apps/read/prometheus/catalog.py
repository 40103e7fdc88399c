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
from dataclasses import dataclass, field

import numpy as np
from django.conf import settings

from apps.read.prometheus import rolled
from apps.read.prometheus.engine import RolledSeries, Series
from apps.read.prometheus.matching import Matcher, matches_all
from apps.read.prometheus.values import NAME, ExecutionError
from apps.read.prometheus.windows import LOOKBACK_MS
from store import default_keys, inline, shards, window_ms
from store.codec import Samples
from store.keys import MAX_TS, Keys
from store.kv import Listing
from store.read import (
    cached_series,
    plan_blocks,
    prefetch_newest,
    raw_from,
    read_rollups,
    read_series,
)
from store.registry import gpu_shard, list_records
from store.rollup import Buckets, aggregate, select
from store.tiers import Tier, rollups, tiers
from store.workloads import WORKLOAD_LABELS, Period, read_workloads
from store.write import latest_values

_THREADS = 8  # parallel GPU reads of one query
# How long a process reuses the series catalog; a GPU or metric that appears is seen
# after at most this long, instant queries "now" may lag as much behind the latest, and
# range queries may miss as long of writes (their block plans are reused as long).
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
        # spans are sorted by start; rows out of time order can leave an earlier span
        # ending later (A 0-1000, B at 5, A 10-20)
        return max(e for _, e in self.spans)


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


# What a listing keeps of the selectors it matched, in 8-byte words: a dashboard asks the same
# few selectors at every refresh, and matching a fleet's labels is most of an instant query's
# own work. A kept selector costs its positions, its text / 8 and KEPT_OVERHEAD (its tuple
# and array); one over KEPT_SELECTOR_CHARS is matched per query, never kept. So a client
# sending selectors that match nothing holds at most ~1.6 MB a listing (CATALOG_TTL_S).
_MATCHED_WORDS = 200_000
KEPT_OVERHEAD = 16
KEPT_SELECTOR_CHARS = 1024


@dataclass(frozen=True)
class _Listing:
    entries: list[Entry]
    # selectors name a metric: matching only its entries, not every metric's, is most
    # of what an instant query saves
    by_name: dict[str, list[int]]
    # and one GPU's panels name its UUID too: one entry per period, not the fleet's
    by_uuid: dict[tuple[str, str], list[int]]
    starts: np.ndarray  # per entry: first and last ms it covers (Entry.start, Entry.end)
    ends: np.ndarray
    newest_ts: np.ndarray  # per entry: its GPU's latest sample of the metric (Entry.newest)
    newest_v: np.ndarray
    newest_inside: np.ndarray  # that sample lies in one of the entry's spans
    matched: dict[tuple, np.ndarray] = field(default_factory=dict, compare=False)
    kept: list[int] = field(default_factory=lambda: [0], compare=False)  # words in `matched`
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)

    @classmethod
    def of(cls, entries: list[Entry]) -> _Listing:
        by_name: dict[str, list[int]] = defaultdict(list)
        by_uuid: dict[tuple[str, str], list[int]] = defaultdict(list)
        for i, entry in enumerate(entries):
            by_name[entry.metric].append(i)
            by_uuid[entry.metric, entry.labels.get("UUID", "")].append(i)
        starts = np.array([e.start for e in entries], np.int64)
        ends = np.array([e.end for e in entries], np.int64)
        newest_ts = np.array([e.newest[0] for e in entries], np.int64)
        inside = (starts <= newest_ts) & (newest_ts <= ends)  # exact for one span
        for i, e in enumerate(entries):
            if len(e.spans) > 1:  # a GPU's workloads came and went: between them is not it
                inside[i] = any(lo <= e.newest[0] <= hi for lo, hi in e.spans)
        newest_v = np.array([e.newest[1] for e in entries], np.float64)
        return cls(entries, dict(by_name), dict(by_uuid), starts, ends, newest_ts, newest_v, inside)

    def candidates(self, matchers: list[Matcher]) -> list[int] | range:
        """The positions the equality matchers on the name and UUID leave (all the others
        are still to be applied)."""
        named = next((m.value for m in matchers if m.name == NAME and m.op == "="), None)
        if named is None:
            return range(len(self.entries))
        uuid = next((m.value for m in matchers if m.name == "UUID" and m.op == "="), None)
        if uuid is None:
            return self.by_name.get(named, [])
        return self.by_uuid.get((named, uuid), [])

    def _keep(self, key: tuple, found: np.ndarray) -> None:
        chars = sum(len(name) + len(value) for name, _, value in key)
        if chars > KEPT_SELECTOR_CHARS:
            return
        words = KEPT_OVERHEAD + len(found) + chars // 8
        with self.lock:  # threads share the listing: count each kept selector once
            if key not in self.matched and self.kept[0] + words <= _MATCHED_WORDS:
                self.matched[key] = found
                self.kept[0] += words

    def matching(self, matchers: list[Matcher], start: int, end: int) -> np.ndarray:
        """Positions of the entries every matcher accepts that cover part of [start, end]."""
        key = tuple((m.name, m.op, m.value) for m in matchers)
        found = self.matched.get(key)
        if found is None:
            candidates = self.candidates(matchers)
            inline.spend(len(candidates) * inline.PER_ITEM)  # matched one by one
            found = np.array(
                [i for i in candidates if matches_all(matchers, self.entries[i].labels)],
                np.int64,
            )
            self._keep(key, found)
        return found[(self.ends[found] >= start) & (self.starts[found] <= end)]


# The series a query can meet are those of workloads that ran in its range. A listing holds
# those of one reach back from the store's newest sample (the last two days, the last eight,
# all kept): a churning fleet's dashboards ("last 6 hours") hold the workloads of two days,
# not of the whole retention. Nested, so a query takes the smallest that covers its start.
REACH_MS = (2 * 86_400_000, 8 * 86_400_000)


@dataclass
class _Base:
    """What a catalog is built from, read once per CATALOG_TTL_S: each GPU's record, its
    metrics' latest samples and its workload groups; the listings of each reach, built
    when a query first needs them."""

    gpus: list[tuple[dict, list[tuple[str, tuple[int, float]]], list]]
    newest: int  # the store's newest sample (ms), where the reaches are counted from
    listings: dict[int, _Listing | ExecutionError] = field(default_factory=dict)
    counts: dict[int, int] = field(default_factory=dict)  # groups x metrics a reach kept
    # one a reach: a recent listing is not kept waiting behind a build of every workload
    locks: tuple[threading.Lock, ...] = field(
        default_factory=lambda: tuple(threading.Lock() for _ in range(len(REACH_MS) + 1)),
        repr=False,
    )

    def listing(self, start: int) -> _Listing:
        """The smallest listing holding every series a query from `start` on can match."""
        reach = next(
            (i for i, ms in enumerate(REACH_MS) if start >= self.newest - ms), len(REACH_MS)
        )
        held = self.listings.get(reach)
        if held is None:
            inline.check("a series listing build")  # seconds for a large catalog
            with self.locks[reach]:  # one build a reach, whichever thread asks first
                held = self.listings.get(reach)
                if held is None:
                    held = self._build(reach)
                    self.listings[reach] = held
        if isinstance(held, ExecutionError):
            raise held  # kept as a listing is: a refused reach is not counted every query
        return held

    def _build(self, reach: int) -> _Listing | ExecutionError:
        since = self.newest - REACH_MS[reach] if reach < len(REACH_MS) else None
        wanted = [
            (record, metrics, [g for g in groups if since is None or _last(g[1]) >= since])
            for record, metrics, groups in self.gpus
        ]
        try:
            count = _within_series_bound(wanted, since)
        except ExecutionError as exc:
            return exc
        for other, listing in list(self.listings.items()):
            # reaches are nested: as many groups kept means the same groups, the same series
            if self.counts.get(other) == count and isinstance(listing, _Listing):
                return listing
        self.counts[reach] = count
        return _Listing.of(_entries(wanted))


class _Catalog:
    """Per-process catalog of each root, kept CATALOG_TTL_S: a dashboard refreshing many
    panels reads records, latest values and workloads once, not once per panel."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[str, tuple[float, _Base]] = {}

    def get(self, root: str, build: Callable[[], _Base]) -> _Base:
        now = time.monotonic()
        with self._lock:
            held = self._held.get(root)
        if held is None or held[0] <= now:
            got = build()
            with self._lock:
                if len(self._held) > 64:  # roots come and go in tests; keep this small
                    self._held.clear()
                self._held[root] = held = (now + CATALOG_TTL_S, got)
        return held[1]

    def clear(self) -> None:
        with self._lock:
            self._held.clear()


_CATALOG = _Catalog()


class StoreSource:
    """Series of one etcd root; records, latest values and samples read once per query.

    `points`: the query's evaluation steps (1 for an instant query), by which a series
    it matches costs (`inline.spend`)."""

    def __init__(self, keys: Keys | None = None, points: int = 1) -> None:
        self.keys = keys or default_keys()
        self.points = points
        self._base: _Base | None = None
        self._held: dict[int, _Listing] = {}  # by the start asked: a query asks one or two
        self._series: dict[tuple[str, str, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._plans: dict[tuple[str, int, int], dict[str, Listing]] = {}

    def _plan(self, shard: str, uuids: list[str], start: int, end: int) -> dict[str, Listing]:
        """The GPUs' block plans of [start, end] in `shard`, read once per query: a range
        query plans for its rollups and its raw samples alike (a store written since would
        take a new listing, and a second check of the revision, for the same answer). The
        plans may miss the last CATALOG_TTL_S of writes, as the catalog does."""
        held = self._plans.setdefault((shard, start, end), {})
        todo = [u for u in uuids if u not in held]
        if todo:
            with shards.use(shard):
                held.update(plan_blocks(self.keys, todo, start, end, window_ms(), CATALOG_TTL_S))
        return {u: held[u] for u in uuids}

    def entries(self, start: int = 0) -> list[Entry]:
        """Every series with samples from `start` on (its catalog's listing of that reach)."""
        listing = self._listing(start)
        return [listing.entries[i] for i in np.flatnonzero(listing.ends >= start)]

    def _listing(self, start: int) -> _Listing:
        held = self._held.get(start)
        if held is None:
            base = self._base or _CATALOG.get(self.keys.root, self._build)
            self._base = base  # one base a query: its reads see one catalog
            held = self._held[start] = base.listing(start)
        return held

    def _build(self) -> _Base:
        records = list_records(self.keys)
        latest = latest_values(self.keys) if records else {}
        workloads = read_workloads(self.keys, [r["uuid"] for r in records]) if records else {}
        gpus = []
        for record in records:
            metrics = sorted((latest.get(record["uuid"]) or {}).items())
            groups = with_idle(workloads.get(record["uuid"]) or [])
            gpus.append((record, [(m, (int(t), float(v))) for m, (t, v) in metrics], groups))
        newest = max((t for _, ms, _ in gpus for _, (t, _) in ms), default=0)
        return _Base(gpus, newest)

    def matching(self, matchers: list[Matcher], start: int = 0, end: int = MAX_TS) -> list[Entry]:
        listing = self._listing(start)
        found = listing.matching(matchers, start, end)
        self._spend(len(found))
        return [listing.entries[i] for i in found]

    def _spend(self, series: int) -> None:
        # a series costs its points and its labels (its JSON, the grouping by labels)
        inline.spend(series * (self.points + 64))

    def select(self, matchers: list[Matcher], start: int, end: int) -> list[Series]:
        """Matching series with their samples in [start, end]."""
        return self.select_entries(self.matching(matchers, start, end), start, end)

    def latest_at(
        self, matchers: list[Matcher], t: int
    ) -> tuple[list[dict[str, str]], np.ndarray, list[Series]]:
        """An instant lookup at `t`: the matching series whose GPU's latest sample (the
        latest key, already read) is the one the lookback finds, as labels and values,
        without a block read (the dashboard's usual query); and the others' samples in
        [t - LOOKBACK_MS, t] (newer samples than `t`, or another period holds the latest)."""
        start = t - LOOKBACK_MS
        listing = self._listing(start)
        found = listing.matching(matchers, start, t)
        self._spend(len(found))
        ts = listing.newest_ts[found]
        live = ts >= start  # else the newest sample is older than the span: nothing in it
        answered = live & (ts <= t) & listing.newest_inside[found]
        hit = found[answered]
        rest = [listing.entries[i] for i in found[live & ~answered]]
        labels = [listing.entries[i].labels for i in hit]
        return labels, listing.newest_v[hit], self.select_entries(rest, start, t)

    def select_entries(self, found: list[Entry], start: int, end: int) -> list[Series]:
        by_gpu = _by_uuid(found)
        wanted = {u: sorted({e.metric for e in entries}) for u, entries in by_gpu.items()}
        series = self._read(wanted, start, end)
        out = []
        for uuid, entries in by_gpu.items():
            for entry in entries:
                ts, values = _within(*series[uuid][entry.metric], entry.reads)
                if len(ts):
                    out.append((entry.labels, ts, values))
        return out

    def select_rolled(
        self, matchers: list[Matcher], at: np.ndarray, reach_ms: int, lookup: bool = False
    ) -> list[RolledSeries] | None:
        """Matching series for windows `[t - reach, t]`: raw samples, and rollup buckets
        where raw blocks are gone (docs/PROMETHEUS.md, "Rollup tiers").

        None when rollups cannot help: every window starts within the raw tier's
        retention (raw blocks hold it all), or no tier's buckets have edges on every
        window's ends (the answer would not be exact). Then callers read raw only.
        """
        tier = _tier_for(at, reach_ms, lookup)
        if tier is None:
            return None
        start, end = int(at[0]) - reach_ms, int(at[-1])
        found = self.matching(matchers, start, end)
        by_gpu = _by_uuid(found)
        old = self._rollups(list(by_gpu), tier, start, end)  # a rollup read first: see inline
        raw = {
            (e.uuid, e.metric, tuple(sorted(e.labels.items()))): pair
            for e, pair in zip(found, self._raw_pairs(found, start, end), strict=True)
        }
        out: list[RolledSeries] = []
        for uuid, entries in by_gpu.items():
            buckets, boundary = old[uuid]
            for e in entries:
                ts, v = raw[(e.uuid, e.metric, tuple(sorted(e.labels.items())))]
                got = (
                    None if buckets is None else _series_buckets(buckets, e, ts, v, tier, boundary)
                )
                if len(ts) or (got is not None and len(got)):
                    out.append((e.labels, ts, v, got, boundary))
        return out

    def _rollups(
        self, uuids: list[str], tier: Tier, start: int, end: int
    ) -> dict[str, tuple[Buckets | None, int]]:
        """Per GPU: its rollup buckets before its raw blocks begin, and that time (None
        when raw blocks cover the span, or begin off this tier's bucket edges). One plan
        and one rollup listing per shard."""
        by_shard: dict[str, list[str]] = defaultdict(list)
        for uuid in uuids:
            by_shard[gpu_shard(self.keys, uuid)].append(uuid)
        out: dict[str, tuple[Buckets | None, int]] = {}
        for shard, group in by_shard.items():
            plans = self._plan(shard, group, start, end)
            with shards.use(shard):
                need = {}
                for uuid in group:
                    boundary = raw_from(plans[uuid], window_ms())
                    if boundary is not None and (
                        boundary <= start or boundary % tier.resolution_ms
                    ):
                        out[uuid] = (None, boundary)
                    else:
                        need[uuid] = end + 1 if boundary is None else boundary
                if need:
                    got = read_rollups(self.keys, list(need), tier, start, max(need.values()) - 1)
                    out.update({u: (got[u], b) for u, b in need.items()})
        return out

    def _raw_pairs(
        self, found: list[Entry], start: int, end: int
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each entry's raw samples in [start, end] (empty arrays when it has none)."""
        wanted = {u: sorted({e.metric for e in es}) for u, es in _by_uuid(found).items()}
        series = self._read(wanted, start, end) if wanted else {}
        return [_within(*series[e.uuid][e.metric], e.reads) for e in found]

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
        columns what they hold. For the rest, the newest windows' blocks missing (a live
        store's since the last read) are read in one transaction per 120; what is left is
        then CPU work, done here, else the GPUs are read on threads (etcd round trips and
        zstd release the GIL)."""
        window = window_ms()
        by_shard: dict[str, list[str]] = defaultdict(list)
        for uuid in todo:
            by_shard[gpu_shard(self.keys, uuid)].append(uuid)
        out: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        misses: list[tuple[str, str, Listing]] = []
        fetched = True  # the misses' newest blocks are cached (no read left but cold ones)
        for shard, uuids in by_shard.items():
            plans = self._plan(shard, uuids, start, end)
            missed = {}
            for uuid, planned in plans.items():
                got = cached_series(self.keys, uuid, start, end, todo[uuid], planned)
                if got is None:
                    misses.append((shard, uuid, planned))
                    missed[uuid] = planned
                else:
                    out[uuid] = got
            if missed:
                with shards.use(shard):
                    fetched = prefetch_newest(self.keys, missed, window, todo) and fetched

        def read(miss: tuple[str, str, Listing]) -> dict:
            shard, uuid, planned = miss
            with shards.use(shard):
                return read_series(self.keys, uuid, start, end, window, todo[uuid], planned)

        if misses and fetched:  # live data: what is left is CPU work, done here
            out.update((miss[1], read(miss)) for miss in misses)
        elif misses:
            inline.check("reading blocks on threads")
            with ThreadPoolExecutor(max_workers=min(_THREADS, len(misses))) as pool:
                for miss, got in zip(misses, pool.map(read, misses), strict=True):
                    out[miss[1]] = got
        return out


def _by_uuid(found: list[Entry]) -> dict[str, list[Entry]]:
    by_gpu: dict[str, list[Entry]] = defaultdict(list)
    for entry in found:
        by_gpu[entry.uuid].append(entry)
    return by_gpu


def _tier_for(at: np.ndarray, reach_ms: int, lookup: bool) -> Tier | None:
    """The coarsest rollup tier whose bucket edges hold every window's ends, when some
    window starts before the raw tier's retention (else raw blocks answer alone)."""
    raw = tiers()[0]
    if int(at[0]) - reach_ms >= time.time() * 1000 - raw.retention_ms:
        return None
    for tier in reversed(rollups()):
        # an instant lookup needs its times on edges only (rolled.lookback), a range both ends
        if rolled.aligned(at, 0 if lookup else reach_ms, tier.resolution_ms):
            return tier
    return None


def _series_buckets(
    old: Buckets, entry: Entry, ts: np.ndarray, v: np.ndarray, tier: Tier, boundary: int
) -> rolled.BucketSeries:
    """One series' buckets: rolled up before `boundary` (where raw blocks are gone), from
    its raw samples after. A rolled bucket counts only when all its samples belong to
    this series' workload periods; one holding samples of two is kept as not usable."""
    if entry.metric not in old.names:
        before = rolled.BucketSeries.of(old, -1, tier.resolution_ms)
    else:
        b = select(old, old.ts < boundary)
        m = b.metric == b.names.index(entry.metric)
        exact = b.exact
        lo = np.where(exact, b.t_first, b.ts)
        hi = np.where(exact, b.t_last, b.ts + tier.resolution_ms - 1)
        inside = np.zeros(len(b), bool)
        touches = np.zeros(len(b), bool)
        for s, e in entry.reads:
            inside |= (lo >= s) & (hi <= e)
            touches |= (hi >= s) & (lo <= e)
        keep = m & touches  # buckets wholly outside the periods hold none of its samples
        before = rolled.BucketSeries.of(
            select(b, keep), b.names.index(entry.metric), tier.resolution_ms, inside[keep]
        )
    after = ts >= boundary
    fresh = aggregate(
        Samples(ts[after], np.zeros(int(after.sum()), np.int32), v[after], (entry.metric,)),
        tier.resolution_ms,
    )
    return rolled.joined(before, rolled.BucketSeries.of(fresh, 0, tier.resolution_ms))


def _entries(gpus: list) -> list[Entry]:
    """The series of `gpus` ((record, metrics, workload groups)): each group kept is a
    series of each metric (unless its spans miss the GPU's samples), so a listing is a
    function of the groups kept, and two reaches keeping as many are the same."""
    out = []
    for record, metrics, groups in gpus:
        uuid = record["uuid"]
        for metric, newest in metrics:
            base = dcgm_labels(record, metric)
            for extra, spans in groups:
                cut = _cut(spans, int(record["first_seen"]), newest[0])
                if cut:
                    # the current period stays open: samples newer than the catalog
                    # (cached for CATALOG_TTL_S) still belong to it
                    reads = tuple((lo, MAX_TS if hi == newest[0] else hi) for lo, hi in cut)
                    out.append(Entry({**base, **extra}, uuid, metric, cut, newest, reads))
    return out


def _within_series_bound(gpus: list, since: int | None) -> int:
    """How many series a listing of `gpus` may hold (each GPU's metrics times its workloads,
    and idle, kept), counted before any is built; ExecutionError past PROMETHEUS_MAX_SERIES."""
    most = settings.PROMETHEUS_MAX_SERIES
    total = sum(len(metrics) * len(groups) for _, metrics, groups in gpus)
    if total > most:
        since_text = "" if since is None else f" since {_utc(since)}"
        raise ExecutionError(
            f"a query from this start meets up to {total:,} series (GPUs x metrics x "
            f"workloads kept{since_text}), over PROMETHEUS_MAX_SERIES ({most:,}): each costs "
            "every gateway process ~1 KB and ~10 us of each catalog build "
            "(docs/PROMETHEUS.md); a query reaching less far back from the store's newest "
            "sample meets fewer"
        )
    return total


def _last(spans: list[tuple[int, int]]) -> int:
    """When a group's spans end (the latest end: see Entry.end)."""
    return max(e for _, e in spans)


def _utc(ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ms / 1000))


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


def _within(ts: np.ndarray, values: np.ndarray, spans: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The samples inside the series' spans (its workload periods)."""
    if not len(ts) or (len(spans) == 1 and spans[0][0] <= ts[0] and spans[0][1] >= ts[-1]):
        return ts, values
    inline.spend(len(spans) * len(ts))
    inside = np.zeros(len(ts), dtype=bool)
    for lo, hi in spans:
        inside |= (ts >= lo) & (ts <= hi)
    return ts[inside], values[inside]
