"""The two CSV formats we read, and detection from the header row."""

from __future__ import annotations

from dataclasses import dataclass

LONG = "dcgm"
WIDE = "wide"

LONG_REQUIRED = ("timestamp", "metric_name", "uuid", "hostname", "value")
WIDE_REQUIRED = ("timestamp", "uuid", "hostname")
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


@dataclass(frozen=True)
class Layout:
    """A detected format: column positions by lower-case name, and metric columns (wide)."""

    format: str
    index: dict[str, int]
    width: int
    # wide only: (position, metric name, strict) where strict columns must hold numbers
    metric_columns: tuple[tuple[int, str, bool], ...] = ()


def detect(header: list[str]) -> Layout:
    """Pick the format from the header (case-insensitive); raise HeaderError otherwise."""
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    index: dict[str, int] = {}
    for pos, name in enumerate(names):
        index.setdefault(name, pos)
    missing_long = [c for c in LONG_REQUIRED if c not in index]
    if not missing_long:
        return Layout(LONG, index, len(names))
    missing_wide = [c for c in WIDE_REQUIRED if c not in index]
    metrics = tuple(
        (pos, WIDE_METRICS.get(name, header[pos].strip()), name in WIDE_METRICS)
        for pos, name in enumerate(names)
        if name and name not in META_COLUMNS and index[name] == pos
    )
    if not missing_wide and metrics:
        return Layout(WIDE, index, len(names), metrics)
    if not missing_wide:
        missing_wide = ["at least one metric column (e.g. gpu_utilization)"]
    raise HeaderError(
        "the header fits neither accepted format: the DCGM long format is missing "
        f"{', '.join(missing_long)}; the wide format is missing {', '.join(missing_wide)}"
    )
