"""The two CSV formats we read, and detection from the header row."""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import Answer

LONG = "dcgm"
WIDE = "wide"

LONG_REQUIRED = ("timestamp", "metric_name", "uuid", "hostname", "value")
WIDE_REQUIRED = ("timestamp", "uuid", "hostname")
MAX_METRIC_NAME = 200
# Columns that describe the GPU or the workload, never a metric.
META_COLUMNS = frozenset(
    {
        "timestamp",
        "metric_name",
        "gpu_id",
        "device",
        "uuid",
        "modelname",
        "hostname",
        "container",
        "pod",
        "namespace",
        "value",
        "labels_raw",
        "cluster",
    }
)
WIDE_METRICS = {
    "gpu_utilization": "DCGM_FI_DEV_GPU_UTIL",
    "memory_utilization": "DCGM_FI_DEV_MEM_COPY_UTIL",
    "memory_used_mb": "DCGM_FI_DEV_FB_USED",
    "memory_free_mb": "DCGM_FI_DEV_FB_FREE",
    "temperature": "DCGM_FI_DEV_GPU_TEMP",
    "power_draw": "DCGM_FI_DEV_POWER_USAGE",
    "sm_clock_mhz": "DCGM_FI_DEV_SM_CLOCK",
    "memory_clock_mhz": "DCGM_FI_DEV_MEM_CLOCK",
}


class HeaderError(ValueError):
    """The header row fits neither format; the message names what is missing."""

    answer = Answer(400, "BAD_FILE")


@dataclass(frozen=True)
class Layout:
    """A detected format: column positions by lower-case name, and metric columns (wide)."""

    format: str
    index: dict[str, int]
    width: int
    # wide only: (position, metric name, strict) where strict columns must hold numbers
    metric_columns: tuple[tuple[int, str, bool], ...] = ()


def detect(header: list[str]) -> Layout:
    """Pick the format from the header (case-insensitive); raise HeaderError otherwise.

    Wide format: every column that is not a known descriptive column is a metric
    column, named by WIDE_METRICS or else by its header text as written. A
    column whose name cannot be a metric name (too long, not printable), or whose
    metric another column already provides, is ignored.
    """
    cleaned = [h.strip().lstrip("\ufeff").strip() for h in header]
    names = [h.lower() for h in cleaned]
    index: dict[str, int] = {}
    for pos, name in enumerate(names):
        index.setdefault(name, pos)
    missing_long = [c for c in LONG_REQUIRED if c not in index]
    if not missing_long:
        return Layout(LONG, index, len(names))
    missing_wide = [c for c in WIDE_REQUIRED if c not in index]
    metrics: list[tuple[int, str, bool]] = []
    taken: set[str] = set()
    for pos, name in enumerate(names):
        if not name or name in META_COLUMNS or index[name] != pos:
            continue
        metric = WIDE_METRICS.get(name, cleaned[pos])
        if metric in taken or len(metric) > MAX_METRIC_NAME or not metric.isprintable():
            continue
        taken.add(metric)
        metrics.append((pos, metric, name in WIDE_METRICS))
    if not missing_wide and metrics:
        return Layout(WIDE, index, len(names), tuple(metrics))
    if not missing_wide:
        missing_wide = ["at least one metric column (e.g. gpu_utilization)"]
    raise HeaderError(
        "the header fits neither accepted format: the DCGM long format is missing "
        f"{', '.join(missing_long)}; the wide format is missing {', '.join(missing_wide)}"
        f" (the header row has {_describe(cleaned)})"
    )


def _describe(cells: list[str], limit: int = 120) -> str:
    """The header as read, cut short: shows a wrong delimiter or a binary file at a glance."""
    text = ", ".join(repr(c) for c in cells)
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{len(cells)} column{'s' if len(cells) != 1 else ''}: {text}"
