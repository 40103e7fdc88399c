"""The two CSV formats we read, and detection from the header row."""

from __future__ import annotations

from dataclasses import dataclass

from store.errors import Answer

LONG = "dcgm"
WIDE = "wide"

LONG_REQUIRED = ("timestamp", "metric_name", "uuid", "hostname", "value")
WIDE_REQUIRED = ("timestamp", "uuid", "hostname")
MAX_METRIC_NAME = 200
# Columns that are never metrics: the row's keys, and identifiers (facts about the GPU or
# the workload: an index, a serial number, a version, a name). Lower-case; a file's header
# matches case-insensitively. docs/INGEST.md has the table.
KEY_COLUMNS = frozenset({"timestamp", "uuid", "hostname", "metric_name", "value", "labels_raw"})
IDENTIFIER_COLUMNS = frozenset(
    {
        # the seed's and the DCGM export's descriptive columns
        "gpu_id",
        "device",
        "modelname",
        "cluster",
        "container",
        "pod",
        "namespace",
        # dcgm-exporter's labels, when a wide file carries them as columns
        "gpu",
        "pci_bus_id",
        "gpu_i_id",
        "gpu_i_profile",
        "dcgm_fi_driver_version",
        "instance",
        "job",
        # nvidia-smi --query-gpu names
        "index",
        "minor_number",
        "serial",
        "name",
        "pci.bus_id",
        "driver_version",
        "vbios_version",
        # DCGM fields that identify rather than measure (strings or fixed numbers)
        "dcgm_fi_dev_uuid",
        "dcgm_fi_dev_name",
        "dcgm_fi_dev_serial",
        "dcgm_fi_dev_brand",
        "dcgm_fi_dev_minor_number",
        "dcgm_fi_dev_pci_busid",
        "dcgm_fi_dev_pci_combined_id",
        "dcgm_fi_dev_pci_subsys_id",
        "dcgm_fi_dev_vbios_version",
        "dcgm_fi_dev_inforom_image_ver",
        "dcgm_fi_dev_count",
    }
)
META_COLUMNS = KEY_COLUMNS | IDENTIFIER_COLUMNS
# Identifier columns that are record facts of their own (gpu_index, device, model,
# cluster); the others are kept among the record's labels.
FACT_COLUMNS = frozenset({"gpu_id", "device", "modelname", "cluster"})
# The workload of a row (apps/ingest/workloads.py keeps it as periods), not labels either.
WORKLOAD_COLUMNS = frozenset({"container", "pod", "namespace"})
# Where a file says which MIG instance (GPU instance id) a row belongs to.
INSTANCE_COLUMN = "gpu_i_id"
INSTANCE_LABEL = "GPU_I_ID"
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
    # identifier columns kept as labels: (position, header as written)
    identifiers: tuple[tuple[int, str], ...] = ()


def detect(header: list[str]) -> Layout:
    """Pick the format from the header (case-insensitive); raise HeaderError otherwise.

    Identifier columns (IDENTIFIER_COLUMNS) are facts in both formats, never
    metrics. Wide format: every other column is a metric column, named by
    WIDE_METRICS or else by its header text as written; the seed's names and
    `DCGM_FI_*` fields are strict (a cell that is not a number rejects the row),
    other columns are not (such a cell is ignored). A column whose name cannot
    be a metric name (too long, not printable), or whose metric another column
    already provides, is ignored.
    """
    cleaned = [h.strip().lstrip("\ufeff").strip() for h in header]
    names = [h.lower() for h in cleaned]
    index: dict[str, int] = {}
    for pos, name in enumerate(names):
        index.setdefault(name, pos)
    identifiers = tuple(
        (pos, cleaned[pos])
        for pos, name in enumerate(names)
        if name in IDENTIFIER_COLUMNS
        and name not in FACT_COLUMNS | WORKLOAD_COLUMNS
        and index[name] == pos
    )
    missing_long = [c for c in LONG_REQUIRED if c not in index]
    if not missing_long:
        return Layout(LONG, index, len(names), identifiers=identifiers)
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
        metrics.append((pos, metric, name in WIDE_METRICS or name.startswith("dcgm_fi_")))
    if not missing_wide and metrics:
        return Layout(WIDE, index, len(names), tuple(metrics), identifiers)
    if not missing_wide:
        missing_wide = ["at least one metric column (e.g. gpu_utilization)"]
    raise HeaderError(
        "the header fits neither accepted format: the DCGM long format is missing "
        f"{', '.join(missing_long)}; the wide format is missing {', '.join(missing_wide)}"
        f" (the header row has {_describe(cleaned)})"
    )


def gpu_uuid(uuid: str, gpu_instance: str) -> str:
    """The record uuid of a sample: the GPU's, or for a MIG instance `MIG-<parent>-<GI id>`.

    The scrape path and both CSV formats name instances with this one function.
    """
    if not gpu_instance or uuid.startswith("MIG-"):
        return uuid
    return f"MIG-{uuid}-{gpu_instance}"


def _describe(cells: list[str], limit: int = 120) -> str:
    """The header as read, cut short: shows a wrong delimiter or a binary file at a glance."""
    text = ", ".join(repr(c) for c in cells)
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{len(cells)} column{'s' if len(cells) != 1 else ''}: {text}"
