"""DCGM long-format rows: CSV quoting, labels_raw into facts, quoted newlines and line numbers."""

from __future__ import annotations

from apps.ingest.parsing import parse_labels_raw
from tests.ingest.ingest_support import (
    HOST,
    LONG_HEADER,
    MODEL,
    TS_MS,
    UUID,
    csv_text,
    error_lines,
    labels_raw,
    long_csv,
    long_row,
    parse_all,
)

# A row exactly as the real export writes it: every field quoted, labels with doubled quotes.
EXPORT_LINE = (
    '"2025-07-18T20:42:34Z","DCGM_FI_DEV_MEM_CLOCK","3","nvidia3",'
    '"GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7","NVIDIA H100 80GB HBM3","mtv5-dgx1-hgpu-031",'
    '"","","","2619","DCGM_FI_DRIVER_VERSION=""535.129.03"",Hostname=""mtv5-dgx1-hgpu-031"",'
    'UUID=""GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7"",__name__=""DCGM_FI_DEV_MEM_CLOCK"",'
    'device=""nvidia3"",gpu=""3"",instance=""mtv5-dgx1-hgpu-031:9400"",'
    'job=""dgx_dcgm_exporter"",modelName=""NVIDIA H100 80GB HBM3"",'
    'pci_bus_id=""00000000:18:00.0"""'
)


def header_line() -> str:
    return ",".join(LONG_HEADER) + "\n"


def test_every_field_quoted_row_is_read_as_the_export_writes_it():
    _parser, rows = parse_all((header_line() + EXPORT_LINE + "\n").encode())
    (row,) = rows
    assert row.uuid == "GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7"
    assert row.host == "mtv5-dgx1-hgpu-031"
    assert row.ts == TS_MS
    assert row.values == [("DCGM_FI_DEV_MEM_CLOCK", 2619.0)]


def test_doubled_quotes_in_labels_raw_become_facts():
    parser, rows = parse_all((header_line() + EXPORT_LINE + "\n").encode())
    facts = parser.facts(rows[0], "prod")
    assert facts == {
        "uuid": "GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7",
        "cluster": "prod",
        "host": "mtv5-dgx1-hgpu-031",
        "gpu_index": 3,
        "device": "nvidia3",
        "model": "NVIDIA H100 80GB HBM3",
        "driver": "535.129.03",
        "labels": {
            "DCGM_FI_DRIVER_VERSION": "535.129.03",
            "Hostname": "mtv5-dgx1-hgpu-031",
            "UUID": "GPU-9ba418e1-59be-2f2e-6031-e3f6b7c64ad7",
            "device": "nvidia3",
            "gpu": "3",
            "instance": "mtv5-dgx1-hgpu-031:9400",
            "job": "dgx_dcgm_exporter",
            "modelName": "NVIDIA H100 80GB HBM3",
            "pci_bus_id": "00000000:18:00.0",
        },
    }


def test_metric_name_label_is_not_kept_as_a_fact():
    parser, rows = parse_all(long_csv([long_row()]))
    assert "__name__" not in parser.facts(rows[0], "c")["labels"]


def test_escaped_quotes_inside_a_label_value_are_unescaped():
    raw = labels_raw(note='say \\"hi\\" twice')  # Prometheus escaping: \" inside the value
    parser, rows = parse_all(long_csv([long_row(labels_raw=raw)]))
    labels = parser.facts(rows[0], "c")["labels"]
    assert labels["note"] == 'say "hi" twice'
    assert labels["instance"] == f"{HOST}:9400"  # the label after it is intact


def test_label_value_with_comma_and_equals_sign_stays_one_label():
    raw = labels_raw(args="a=1,b=2")
    parser, rows = parse_all(long_csv([long_row(labels_raw=raw)]))
    assert parser.facts(rows[0], "c")["labels"]["args"] == "a=1,b=2"


def test_parse_labels_unescapes_backslash_quote_and_newline_in_one_pass():
    assert parse_labels_raw(r'a="x\\y",b="q\"q",c="l1\nl2",d="end\\"') == {
        "a": "x\\y",
        "b": 'q"q',
        "c": "l1\nl2",
        "d": "end\\",
    }


def test_parse_labels_of_empty_or_garbage_text_is_empty():
    assert parse_labels_raw("") == {}
    assert parse_labels_raw("not labels at all") == {}


def test_model_falls_back_to_the_label_when_the_column_is_empty():
    parser, rows = parse_all(long_csv([long_row(modelName="")]))
    assert parser.facts(rows[0], "c")["model"] == MODEL


def test_non_ascii_digit_gpu_id_gives_no_gpu_index_instead_of_crashing():
    for gpu_id in ("\u00b2", "\u0661", "9" * 5000, "-1", "1.0"):
        parser, rows = parse_all(long_csv([long_row(gpu_id=gpu_id, device="")]))
        facts = parser.facts(rows[0], "c")
        assert facts["gpu_index"] is None, gpu_id
        assert facts["device"] == ""


def test_device_defaults_to_nvidia_and_the_gpu_index():
    parser, rows = parse_all(long_csv([long_row(gpu_id="7", device="")]))
    facts = parser.facts(rows[0], "c")
    assert (facts["gpu_index"], facts["device"]) == (7, "nvidia7")


def test_fields_are_stripped_of_surrounding_spaces():
    row = long_row(uuid=f"  {UUID} ", Hostname=f" {HOST}", value=" 12.5 ")
    _parser, rows = parse_all(long_csv([row]))
    assert (rows[0].uuid, rows[0].host, rows[0].values[0][1]) == (UUID, HOST, 12.5)


def test_any_metric_name_is_kept():
    _parser, rows = parse_all(long_csv([long_row(metric_name="MY_VENDOR_FAN_RPM", value="900")]))
    assert rows[0].values == [("MY_VENDOR_FAN_RPM", 900.0)]


def test_quoted_field_with_comma_and_newline_is_one_field():
    note = "line one, still one\nline two"
    header = [*LONG_HEADER, "note"]
    _parser, rows = parse_all(csv_text(header, [[*long_row(), note]]).encode())
    assert rows[0].fields[-1] == note
    assert rows[0].values == [("DCGM_FI_DEV_GPU_UTIL", 42.0)]


def test_line_numbers_after_a_multiline_field_are_still_the_physical_lines():
    # line 1 header; line 2 good; lines 3-5 one row with a 3-line field (good);
    # line 6 bad value; line 7 good; line 8 bad value.
    header = [*LONG_HEADER, "note"]
    rows = [
        [*long_row(), ""],
        [*long_row(), "a,\nb\nc"],
        [*long_row(value="x"), ""],
        [*long_row(), ""],
        [*long_row(value="y"), ""],
    ]
    parser, accepted = parse_all(csv_text(header, rows).encode())
    assert len(accepted) == 3
    assert error_lines(parser) == [6, 8]


def test_a_bad_multiline_row_is_reported_at_the_line_where_it_starts():
    header = [*LONG_HEADER, "note"]
    rows = [
        [*long_row(), ""],
        [*long_row(value="bad"), "first\nsecond\nthird"],  # lines 3-5
        [*long_row(value="worse"), ""],  # line 6
    ]
    parser, accepted = parse_all(csv_text(header, rows).encode())
    assert len(accepted) == 1
    assert error_lines(parser) == [3, 6]


def test_line_numbers_count_crlf_and_lone_cr_line_ends_alike():
    for line_end in ("\n", "\r\n", "\r"):
        rows = [long_row(), long_row(value="bad"), long_row()]
        parser, _accepted = parse_all(long_csv(rows, line_end=line_end))
        assert error_lines(parser) == [3], repr(line_end)


def test_line_numbers_count_blank_lines():
    text = long_csv([long_row()]).decode() + "\n\n" + csv_text(None, [long_row(value="")])
    parser, rows = parse_all(text.encode())
    assert (parser.rows_read, len(rows)) == (2, 1)
    assert error_lines(parser) == [5]


def test_line_numbers_count_blank_lines_before_the_header():
    parser, _rows = parse_all(b"\n\n" + long_csv([long_row(value="nope")]))
    assert error_lines(parser) == [4]


def test_crlf_inside_a_quoted_field_counts_as_one_line_end():
    header = [*LONG_HEADER, "note"]
    text = csv_text(header, [[*long_row(), "x\r\ny"], [*long_row(value="?"), ""]], line_end="\r\n")
    parser, rows = parse_all(text.encode())
    assert rows[0].fields[-1] == "x\r\ny"
    assert error_lines(parser) == [4]
