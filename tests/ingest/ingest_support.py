"""Builders for CSV parser tests: rows in the real DCGM layout, bytes, and the count invariant."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from apps.ingest.parsing import Parser, Row, open_text

REAL_CSV = (
    Path(__file__).resolve().parents[2].parent
    / "shared"
    / "peers-data"
    / "dcgm_metrics_20250718_134233.csv"
)

LONG_HEADER = [
    "timestamp",
    "metric_name",
    "gpu_id",
    "device",
    "uuid",
    "modelName",
    "Hostname",
    "container",
    "pod",
    "namespace",
    "value",
    "labels_raw",
]
WIDE_HEADER = [
    "timestamp",
    "gpu_id",
    "hostname",
    "uuid",
    "device",
    "modelname",
    "gpu_utilization",
    "memory_utilization",
    "memory_used_mb",
    "memory_free_mb",
    "temperature",
    "power_draw",
    "sm_clock_mhz",
    "memory_clock_mhz",
]

UUID = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"
HOST = "mtv5-dgx1-hgpu-031"
MODEL = "NVIDIA H100 80GB HBM3"
TS_TEXT = "2025-07-18T20:42:34Z"
TS_MS = 1_752_871_354_000


def labels_raw(uuid: str = UUID, host: str = HOST, gpu: int = 0, **extra: str) -> str:
    """labels_raw as the exporter writes it (before CSV quoting doubles the quotes)."""
    labels = {
        "DCGM_FI_DRIVER_VERSION": "535.129.03",
        "Hostname": host,
        "UUID": uuid,
        "__name__": "DCGM_FI_DEV_GPU_UTIL",
        "device": f"nvidia{gpu}",
        "gpu": str(gpu),
        "instance": f"{host}:9400",
        "job": "dgx_dcgm_exporter",
        "modelName": MODEL,
        **extra,
    }
    return ",".join(f'{k}="{v}"' for k, v in labels.items())


def long_row(**override: str) -> list[str]:
    """One long-format row (fields in LONG_HEADER order); keyword names are header names."""
    row = {
        "timestamp": TS_TEXT,
        "metric_name": "DCGM_FI_DEV_GPU_UTIL",
        "gpu_id": "0",
        "device": "nvidia0",
        "uuid": UUID,
        "modelName": MODEL,
        "Hostname": HOST,
        "container": "",
        "pod": "",
        "namespace": "",
        "value": "42",
        "labels_raw": labels_raw(),
    }
    unknown = set(override) - set(row)
    assert not unknown, f"not a column: {unknown}"
    row.update(override)
    return [row[name] for name in LONG_HEADER]


def wide_row(**override: str) -> list[str]:
    row = {
        "timestamp": TS_TEXT,
        "gpu_id": "0",
        "hostname": HOST,
        "uuid": UUID,
        "device": "nvidia0",
        "modelname": MODEL,
        "gpu_utilization": "90",
        "memory_utilization": "35",
        "memory_used_mb": "65540",
        "memory_free_mb": "15467",
        "temperature": "60",
        "power_draw": "351.465",
        "sm_clock_mhz": "1980",
        "memory_clock_mhz": "2619",
    }
    unknown = set(override) - set(row)
    assert not unknown, f"not a column: {unknown}"
    row.update(override)
    return [row[name] for name in WIDE_HEADER]


def csv_text(
    header: Sequence[str] | None,
    rows: Iterable[Sequence[str]],
    *,
    line_end: str = "\n",
    quote_all: bool = True,
) -> str:
    """CSV as the exporter writes it: every field quoted (header too, unless quote_all=False)."""
    out = io.StringIO()
    quoting = csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL
    writer = csv.writer(out, lineterminator=line_end, quoting=quoting)
    if header is not None:
        # The real export's header is not quoted; its rows are.
        out.write(",".join(header) + line_end)
    writer.writerows(rows)
    return out.getvalue()


def long_csv(rows: Iterable[Sequence[str]], **kwargs) -> bytes:
    return csv_text(LONG_HEADER, rows, **kwargs).encode()


def wide_csv(rows: Iterable[Sequence[str]], **kwargs) -> bytes:
    return csv_text(WIDE_HEADER, rows, quote_all=False, **kwargs).encode()


def parser_for(data: bytes, max_errors: int = 20) -> Parser:
    return Parser(open_text(io.BytesIO(data)), max_errors=max_errors)  # type: ignore[arg-type]


def parse_all(data: bytes, max_errors: int = 20) -> tuple[Parser, list[Row]]:
    """Parse every row and check the counting contract before handing back the result."""
    parser = parser_for(data, max_errors)
    rows = list(parser)
    check_counts(parser, rows)
    return parser, rows


def check_counts(parser: Parser, rows: list[Row]) -> None:
    """accepted + rejected == rows_read, accepted matches what was yielded, errors capped."""
    assert parser.accepted == len(rows)
    assert parser.accepted + parser.rejected == parser.rows_read
    assert len(parser.errors) == min(parser.rejected, parser.max_errors)


def error_lines(parser: Parser) -> list[int]:
    return [e.line for e in parser.errors]
