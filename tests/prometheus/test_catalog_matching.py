"""The catalog's kept selector matches give what matching every entry's labels gives.

A listing keeps, per selector, the positions of the entries it matches (a dashboard asks
the same selectors at every refresh), and filters them by time per query. Whatever the
entries, selectors and spans, and whether the selector was kept, asked before, or not
kept because the bound was reached, the answer is the brute-force one.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.read.prometheus import catalog
from apps.read.prometheus.catalog import Entry, _Listing
from apps.read.prometheus.matching import Matcher, matches_all
from apps.read.prometheus.values import NAME

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


@settings(max_examples=300, deadline=None)
@given(
    entries(),
    st.lists(st.tuples(matchers, st.integers(0, 160), st.integers(0, 160)), min_size=1, max_size=6),
    st.integers(0, 12),
)
def test_kept_matches_equal_matching_every_entry(found, asked, bound) -> None:
    listing = _Listing.of(found)
    kept_before = catalog._MATCHED_POSITIONS
    catalog._MATCHED_POSITIONS = bound  # some selectors kept, some not
    try:
        for _ in range(2):  # asked again: from what was kept
            for selector, start, end in asked:
                got = listing.matching(selector, start, end).tolist()
                assert got == brute(listing, selector, start, end)
        assert listing.kept[0] <= bound
        assert sum(len(v) for v in listing.matched.values()) == listing.kept[0]
    finally:
        catalog._MATCHED_POSITIONS = kept_before


@settings(max_examples=100, deadline=None)
@given(entries())
def test_the_newest_sample_columns_follow_the_entries(found) -> None:
    listing = _Listing.of(found)
    for i, e in enumerate(found):
        assert (listing.newest_ts[i], listing.newest_v[i]) == e.newest
        assert (listing.starts[i], listing.ends[i]) == (e.start, e.end)
        assert listing.newest_inside[i] == any(lo <= e.newest[0] <= hi for lo, hi in e.spans)
