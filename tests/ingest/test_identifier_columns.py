"""Identifier columns of wide files are facts of the GPU record, never metrics."""

from __future__ import annotations

from apps.ingest.formats import IDENTIFIER_COLUMNS, detect
from tests.ingest.ingest_support import HOST, TS_TEXT, UUID, csv_text, parse_all

HEADER = [
    "timestamp",
    "gpu",
    "index",
    "minor_number",
    "serial",
    "pci_bus_id",
    "driver_version",
    "Hostname",
    "modelName",
    "UUID",
    "device",
    "pod",
    "namespace",
    "container",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "my_counter",
]
ROW = [
    TS_TEXT,
    "3",
    "3",
    "3",
    "1654922005123",
    "00000000:18:00.0",
    "535.129.03",
    HOST,
    "NVIDIA H100 80GB HBM3",
    UUID,
    "nvidia3",
    "train-0",
    "ml",
    "pytorch",
    "97",
    "65540",
    "12",
]


def test_identifier_columns_are_not_metrics():
    parser, rows = parse_all(csv_text(HEADER, [ROW], quote_all=False).encode())
    assert dict(rows[0].values) == {
        "DCGM_FI_DEV_GPU_UTIL": 97.0,
        "DCGM_FI_DEV_FB_USED": 65540.0,
        "my_counter": 12.0,  # an unknown column holding numbers is a metric
    }
    assert parser.rejected == 0


def test_identifier_columns_fill_the_gpu_facts():
    parser, rows = parse_all(csv_text(HEADER, [ROW], quote_all=False).encode())
    facts = parser.facts(rows[0], "c")
    assert facts["gpu_index"] == 3
    assert facts["driver"] == "535.129.03"
    assert facts["model"] == "NVIDIA H100 80GB HBM3"
    assert facts["device"] == "nvidia3"
    assert facts["labels"]["serial"] == "1654922005123"
    assert facts["labels"]["pci_bus_id"] == "00000000:18:00.0"
    assert "pod" not in facts["labels"]  # the workload: kept as periods (workloads.py)


def test_the_dcgm_driver_column_and_the_gpu_column_of_exporter_labels():
    header = ["timestamp", "uuid", "hostname", "gpu", "DCGM_FI_DRIVER_VERSION", "GPU_I_PROFILE"]
    header.append("DCGM_FI_DEV_GPU_TEMP")
    row = [TS_TEXT, UUID, HOST, "5", "550.54.15", "", "61"]
    parser, rows = parse_all(csv_text(header, [row], quote_all=False).encode())
    assert rows[0].values == [("DCGM_FI_DEV_GPU_TEMP", 61.0)]
    facts = parser.facts(rows[0], "c")
    assert (facts["gpu_index"], facts["driver"], facts["device"]) == (5, "550.54.15", "nvidia5")


def test_a_dcgm_field_column_holding_text_refuses_the_row_naming_the_column():
    header = ["timestamp", "uuid", "hostname", "DCGM_FI_DEV_GPU_TEMP", "notes"]
    rows_in = [[TS_TEXT, UUID, HOST, "hot", "1"], [TS_TEXT, UUID, HOST, "60", "checked"]]
    parser, rows = parse_all(csv_text(header, rows_in, quote_all=False).encode())
    assert parser.errors[0].line == 2
    assert "column dcgm_fi_dev_gpu_temp" in parser.errors[0].message
    # an unknown column holding text is ignored, not a metric and not an error
    assert rows[0].values == [("DCGM_FI_DEV_GPU_TEMP", 60.0)]


def test_every_documented_identifier_is_kept_out_of_the_metrics():
    header = ["timestamp", "uuid", "hostname", "DCGM_FI_DEV_GPU_UTIL", *sorted(IDENTIFIER_COLUMNS)]
    layout = detect(header)
    assert [name for _pos, name, _strict in layout.metric_columns] == ["DCGM_FI_DEV_GPU_UTIL"]


def test_the_identifier_table_in_the_docs_lists_every_identifier():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "INGEST.md").read_text().lower()
    missing = [name for name in sorted(IDENTIFIER_COLUMNS) if f"`{name}`" not in doc]
    assert not missing, f"add these identifier columns to docs/INGEST.md: {missing}"
