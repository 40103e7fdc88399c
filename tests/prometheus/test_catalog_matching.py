"""The catalog's kept selector matches give what matching every entry's labels gives, within
their bound; and an instant lookup answered from latest values gives what Prometheus' lookback
over every sample gives.

A listing keeps, per selector, the positions of the entries it matches (a dashboard asks
the same selectors at every refresh), and filters them by time per query. Whatever the
entries, selectors and spans, and whether the selector was kept, asked before, or not
kept because the bound was reached, the answer is the brute-force one; and selectors that
match nothing, however many, hold no more than the bound.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from apps.read.prometheus import catalog
from apps.read.prometheus.catalog import KEPT_OVERHEAD, Entry, StoreSource, _Listing
from apps.read.prometheus.matching import Matcher, matches_all
from apps.read.prometheus.values import NAME
from apps.read.prometheus.windows import LOOKBACK_MS

METRICS = ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"]
VALUES = ["a", "b", "ab", ""]


@st.composite
def entries(draw) -> list[Entry]:
    out = []
    for n in range(draw(st.integers(0, 12))):
        metric = draw(st.sampled_from(METRICS))
        labels = {NAME: metric, "UUID": draw(st.sampled_from(["GPU-1", "GPU-2"]))}
        for name in ("Hostname", "pod"):
            value = draw(st.sampled_from(VALUES))
            if value:
                labels[name] = value
        first = draw(st.integers(0, 100))
        spans = ((first, first + draw(st.integers(0, 50))),)
        newest = (draw(st.integers(0, 200)), float(n))
        out.append(Entry(labels, labels["UUID"], metric, spans, newest, spans))
    return out


matchers = st.lists(
    st.builds(
        Matcher,
        st.sampled_from([NAME, "UUID", "Hostname", "pod"]),
        st.sampled_from(["=", "!=", "=~", "!~"]),
        st.sampled_from([*METRICS, "GPU-1", "a|b", "a.*", *VALUES]),
    ),
    max_size=3,
)


def brute(listing: _Listing, selector: list[Matcher], start: int, end: int) -> list[int]:
    return [
        i
        for i, e in enumerate(listing.entries)
        if e.end >= start and e.start <= end and matches_all(selector, e.labels)
    ]


def words(listing: _Listing) -> int:
    """What the kept selectors cost, counted again from what is kept."""
    return sum(
        KEPT_OVERHEAD + len(found) + sum(len(n) + len(v) for n, _, v in key) // 8
        for key, found in listing.matched.items()
    )


@settings(max_examples=300, deadline=None)
@given(
    entries(),
    st.lists(st.tuples(matchers, st.integers(0, 160), st.integers(0, 160)), min_size=1, max_size=6),
    st.integers(0, 60),
)
def test_kept_matches_equal_matching_every_entry(found, asked, bound) -> None:
    listing = _Listing.of(found)
    kept_before = catalog._MATCHED_WORDS
    catalog._MATCHED_WORDS = bound  # some selectors kept, some not
    try:
        for _ in range(2):  # asked again: from what was kept
            for selector, start, end in asked:
                got = listing.matching(selector, start, end).tolist()
                assert got == brute(listing, selector, start, end)
        assert words(listing) == listing.kept[0] <= bound
    finally:
        catalog._MATCHED_WORDS = kept_before


def test_selectors_matching_nothing_stay_within_the_bound() -> None:
    listing = _Listing.of([Entry({NAME: "m"}, "G", "m", ((0, 10),), (10, 1.0), ((0, 10),))])
    for n in range(30_000):  # short ones are kept until the bound; long ones never
        for value in (f"v{n}", f"v{n}" + "y" * catalog.KEPT_SELECTOR_CHARS):
            assert (
                len(listing.matching([Matcher(NAME, "=", "m"), Matcher("x", "=", value)], 0, 99))
                == 0
            )
    assert words(listing) == listing.kept[0] <= catalog._MATCHED_WORDS
    assert 0 < len(listing.matched) <= catalog._MATCHED_WORDS // KEPT_OVERHEAD
    assert all(len(key[1][2]) < catalog.KEPT_SELECTOR_CHARS for key in listing.matched)


@settings(max_examples=100, deadline=None)
@given(entries())
def test_the_newest_sample_columns_follow_the_entries(found) -> None:
    listing = _Listing.of(found)
    for i, e in enumerate(found):
        assert (listing.newest_ts[i], listing.newest_v[i]) == e.newest
        assert (listing.starts[i], listing.ends[i]) == (e.start, e.end)
        assert listing.newest_inside[i] == any(lo <= e.newest[0] <= hi for lo, hi in e.spans)


class InMemory(StoreSource):
    """The catalog's lookup over samples held here instead of blocks (its one read seam)."""

    def __init__(self, listing: _Listing, samples: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.listing = listing
        self.samples = samples  # per GPU: its sample times (value = time / 1000)

    def _listing(self, start: int) -> _Listing:
        return self.listing

    def select_entries(self, found, start, end):
        out = []
        for e in found:
            ts = self.samples[e.uuid]
            keep = (ts >= start) & (ts <= end)
            keep &= np.any([(ts >= lo) & (ts <= hi) for lo, hi in e.reads], axis=0)
            if keep.any():
                out.append((e.labels, ts[keep], ts[keep] / 1000))
        return out


@st.composite
def fleets(draw):
    """GPUs with samples and workload periods, each period an entry; the latest value is the
    GPU's newest sample, whichever period holds it."""
    entries, samples = [], {}
    for g in range(draw(st.integers(0, 4))):
        uuid = f"GPU-{g}"
        ts = sorted(draw(st.sets(st.integers(0, 40), min_size=1, max_size=12)))
        samples[uuid] = np.array(ts, np.int64) * 60_000
        cuts = sorted(draw(st.sets(st.integers(1, 40), max_size=3)))
        bounds = [0, *cuts, 41]
        newest = (int(samples[uuid][-1]), samples[uuid][-1] / 1000)
        for p, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            span = ((lo * 60_000, hi * 60_000 - 1),)
            labels = {NAME: "m", "UUID": uuid, "pod": f"p{p}"}
            entries.append(Entry(labels, uuid, "m", span, newest, span))
    return entries, samples


@settings(max_examples=300, deadline=None)
@given(fleets(), st.integers(-2, 45))
def test_latest_at_answers_as_the_lookback_over_every_sample(fleet, minute) -> None:
    found, samples = fleet
    source = InMemory(_Listing.of(found), samples)
    t = minute * 60_000
    labels, latest, rest = source.latest_at([Matcher(NAME, "=", "m")], t)
    got = {str(lb): v for lb, v in zip(labels, latest.tolist(), strict=True)}
    for lb, ts, v in rest:  # the lookback over what was read
        at = ts <= t
        if at.any() and ts[at][-1] >= t - LOOKBACK_MS:
            got[str(lb)] = float(v[at][-1])
    want = {}
    for e in found:  # Prometheus: the newest sample of the series in [t - 5m, t]
        ts = samples[e.uuid]
        ts = ts[(ts >= t - LOOKBACK_MS) & (ts <= t) & (ts >= e.spans[0][0]) & (ts <= e.spans[0][1])]
        if len(ts):
            want[str(e.labels)] = ts[-1] / 1000
    assert got == want
