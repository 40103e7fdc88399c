"""Wide rows: one row per GPU and time, columns mapped to DCGM metric names."""

from __future__ import annotations

import pytest

from apps.ingest.formats import WIDE, WIDE_METRICS, detect
from tests.ingest.ingest_support import (
    HOST,
    MODEL,
    TS_MS,
    UUID,
    WIDE_HEADER,
    csv_text,
    error_lines,
    parse_all,
    wide_csv,
    wide_row,
)


def test_known_columns_are_mapped_to_dcgm_names():
    _parser, rows = parse_all(wide_csv([wide_row()]))
    (row,) = rows
    assert (row.uuid, row.host, row.ts) == (UUID, HOST, TS_MS)
    assert dict(row.values) == {
        "DCGM_FI_DEV_GPU_UTIL": 90.0,
        "DCGM_FI_DEV_MEM_COPY_UTIL": 35.0,
        "DCGM_FI_DEV_FB_USED": 65540.0,
        "DCGM_FI_DEV_FB_FREE": 15467.0,
        "DCGM_FI_DEV_GPU_TEMP": 60.0,
        "DCGM_FI_DEV_POWER_USAGE": 351.465,
        "DCGM_FI_DEV_SM_CLOCK": 1980.0,
        "DCGM_FI_DEV_MEM_CLOCK": 2619.0,
    }
    assert {name for name, _ in row.values} == set(WIDE_METRICS.values())


def test_wide_facts_come_from_the_columns():
    parser, rows = parse_all(wide_csv([wide_row(gpu_id="5", device="")]))
    facts = parser.facts(rows[0], "lab")
    assert facts == {
        "uuid": UUID,
        "cluster": "lab",
        "host": HOST,
        "gpu_index": 5,
        "device": "nvidia5",
        "model": MODEL,
        "driver": "",
        "labels": {},
    }


def test_unknown_numeric_column_is_kept_under_its_header_name():
    header = [*WIDE_HEADER, "Fan_Speed_RPM"]
    _parser, rows = parse_all(csv_text(header, [[*wide_row(), "3200.5"]]).encode())
    assert dict(rows[0].values)["Fan_Speed_RPM"] == 3200.5


def test_unknown_text_column_is_ignored_and_does_not_reject_the_row():
    header = [*WIDE_HEADER, "pci_bus_id", "driver_version"]
    parser, rows = parse_all(
        csv_text(header, [[*wide_row(), "00000000:18:00.0", "535.129.03"]]).encode()
    )
    names = {name for name, _ in rows[0].values}
    assert "pci_bus_id" not in names and "driver_version" not in names
    assert parser.rejected == 0


def test_unknown_column_that_holds_nan_is_skipped_not_rejected():
    header = [*WIDE_HEADER, "extra"]
    _parser, rows = parse_all(csv_text(header, [[*wide_row(), "NaN"]]).encode())
    assert "extra" not in dict(rows[0].values)


def test_descriptive_columns_are_never_metrics():
    layout = detect([*WIDE_HEADER, "pod", "namespace", "container", "cluster"])
    assert layout.format == WIDE
    names = {name for _, name, _ in layout.metric_columns}
    assert names == set(WIDE_METRICS.values())


def test_empty_cell_is_skipped_and_the_rest_of_the_row_kept():
    _parser, rows = parse_all(wide_csv([wide_row(temperature="", power_draw="  ")]))
    values = dict(rows[0].values)
    assert "DCGM_FI_DEV_GPU_TEMP" not in values and "DCGM_FI_DEV_POWER_USAGE" not in values
    assert len(values) == 6


@pytest.mark.parametrize("bad", ["hot", "nan", "inf", "1,5"])
def test_bad_number_in_a_known_column_rejects_the_row_naming_the_column(bad):
    rows = [wide_row(), wide_row(temperature=bad), wide_row()]
    parser, accepted = parse_all(wide_csv(rows))
    assert len(accepted) == 2
    assert error_lines(parser) == [3]
    assert "temperature" in parser.errors[0].message


def test_row_with_no_metric_value_is_rejected():
    empty = {column: "" for column in WIDE_METRICS}
    parser, rows = parse_all(wide_csv([wide_row(**empty), wide_row()]))
    assert len(rows) == 1
    assert parser.errors[0].line == 2
    assert "no metric value" in parser.errors[0].message


def test_row_whose_only_values_are_text_in_unknown_columns_is_rejected():
    header = ["timestamp", "uuid", "hostname", "note"]
    parser, rows = parse_all(csv_text(header, [[str(TS_MS), UUID, HOST, "hello"]]).encode())
    assert (len(rows), parser.rejected) == (0, 1)


def test_wide_rows_check_uuid_hostname_and_timestamp_like_long_rows():
    rows = [
        wide_row(uuid=""),
        wide_row(hostname=""),
        wide_row(uuid="a/b"),
        wide_row(timestamp="later"),
        wide_row()[:-2],
        wide_row(),
    ]
    parser, accepted = parse_all(wide_csv(rows))
    assert len(accepted) == 1
    assert error_lines(parser) == [2, 3, 4, 5, 6]


def test_wide_column_names_are_case_insensitive_but_unknown_ones_keep_their_case():
    header = [name.upper() for name in WIDE_HEADER] + ["MyMetric"]
    _parser, rows = parse_all(csv_text(header, [[*wide_row(), "1"]]).encode())
    values = dict(rows[0].values)
    assert values["DCGM_FI_DEV_GPU_UTIL"] == 90.0 and values["MyMetric"] == 1.0


def test_a_column_repeating_a_known_metric_is_not_read_twice():
    header = [*WIDE_HEADER, "DCGM_FI_DEV_GPU_UTIL", "GPU_UTILIZATION"]
    _parser, rows = parse_all(csv_text(header, [[*wide_row(), "11", "12"]]).encode())
    names = [name for name, _ in rows[0].values]
    assert names.count("DCGM_FI_DEV_GPU_UTIL") == 1
    assert dict(rows[0].values)["DCGM_FI_DEV_GPU_UTIL"] == 90.0


def test_column_names_that_cannot_be_metric_names_are_ignored():
    header = [*WIDE_HEADER, "x" * 300, "bad\tname"]
    _parser, rows = parse_all(csv_text(header, [[*wide_row(), "1", "2"]]).encode())
    assert len(rows[0].values) == 8


def test_minimal_wide_file_with_one_metric_column():
    header = ["Timestamp", "UUID", "Hostname", "power_draw"]
    parser, rows = parse_all(csv_text(header, [["1752871354", UUID, HOST, "99.5"]]).encode())
    assert parser.format == WIDE
    assert rows[0].values == [("DCGM_FI_DEV_POWER_USAGE", 99.5)]
