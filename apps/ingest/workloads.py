"""Workload labels of rows (pod, namespace, container) and the periods a chunk carries.

The chunker notes each row's workload on its GPU buffer (`note`); consecutive
rows with the same labels extend one period `[first ts, last ts, labels]`. The
periods travel in the chunk payload and the worker merges them into the GPU's
day keys, `workloads/{uuid}/{day}` (store/workloads.py). Where the labels come from:

* long-format CSV: the `container`, `pod` and `namespace` columns (`csv_workload`);
* a scrape or remote write: the samples' labels (`Exposition.workload_of`).
"""

from __future__ import annotations

from collections.abc import Callable

from apps.ingest.formats import Layout
from apps.ingest.parsing import Row
from store.workloads import WORKLOAD_LABELS

RowWorkload = Callable[[Row], dict]
Period = list  # [start_ms, end_ms, labels]
_NONE: dict[str, str] = {}


def no_workload(row: Row) -> dict:
    return _NONE


def note(periods: list[Period], ts: int, labels: dict) -> None:
    """Extend the last period when `labels` are its labels, else open a new one."""
    note_span(periods, ts, ts, labels)


def note_span(periods: list[Period], first: int, last: int, labels: dict) -> None:
    """`note(first)` then `note(last)`: rows from `first` to `last`, all with `labels`."""
    if periods and periods[-1][2] == labels:
        period = periods[-1]
        period[0] = min(period[0], first)
        period[1] = max(period[1], last)
    else:
        periods.append([first, last, labels])


def within(periods: list[Period], first: int, last: int) -> list[Period]:
    """The periods overlapping [first, last], cut to it (a chunk's share of a buffer)."""
    return [[max(s, first), min(e, last), lb] for s, e, lb in periods if s <= last and e >= first]


def csv_workload(layout: Layout) -> RowWorkload:
    """The workload of a CSV row from its `container`, `pod` and `namespace` columns."""
    columns = [(name, layout.index[name]) for name in WORKLOAD_LABELS if name in layout.index]
    if not columns:
        return no_workload
    seen: dict[tuple, dict] = {}

    def of(row: Row) -> dict:
        fields = row.fields
        values = tuple(fields[i].strip() if i < len(fields) else "" for _, i in columns)
        found = seen.get(values)
        if found is None:
            found = {n: v for (n, _), v in zip(columns, values, strict=True) if v}
            if len(seen) < 4096:  # one entry per workload; bounded against hostile files
                seen[values] = found
        return found

    return of
