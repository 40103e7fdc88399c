"""The Prometheus text parser behind `scrape`: dcgm-exporter's output to rows and facts."""

from __future__ import annotations

import pytest

from apps.ingest.exposition import (
    LineError,
    gpu_uuid,
    parse_exposition,
    parse_label_set,
    parse_sample,
)

SCRAPED_AT = 1_752_871_354_000
GPU = "GPU-5fd4f087-86f3-7a43-b711-4771313afc50"

LABELS = (
    f'gpu="0",UUID="{GPU}",pci_bus_id="00000000:07:00.0",device="nvidia0",'
    'modelName="NVIDIA H100 80GB HBM3",Hostname="node-1",DCGM_FI_DRIVER_VERSION="535.129.03"'
)
EXPORTER_TEXT = f"""\
# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{{{LABELS}}} 1980
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{{{LABELS}}} 41
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS counter
DCGM_FI_DEV_XID_ERRORS{{gpu="0",UUID="{GPU}",device="nvidia0",Hostname="node-1"}} 0
# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 12
process_cpu_seconds_total 3.5
"""


def parse(text: str, **kwargs):
    kwargs.setdefault("cluster", "c1")
    kwargs.setdefault("scraped_at", SCRAPED_AT)
    return parse_exposition(text, **kwargs)


def values(result) -> dict[tuple[str, int, str], float]:
    return {(r.uuid, r.ts, name): v for r in result.rows for name, v in r.values}


def test_it_reads_dcgm_exporter_output_into_one_row_per_gpu_and_time():
    result = parse(EXPORTER_TEXT, instance="node-1:9400")
    assert values(result) == {
        (GPU, SCRAPED_AT, "DCGM_FI_DEV_SM_CLOCK"): 1980.0,
        (GPU, SCRAPED_AT, "DCGM_FI_DEV_GPU_TEMP"): 41.0,
        (GPU, SCRAPED_AT, "DCGM_FI_DEV_XID_ERRORS"): 0.0,  # counters are kept too
    }
    assert len(result.rows) == 1 and result.rows[0].host == "node-1"
    assert (result.samples, result.ignored, result.rejected) == (3, 2, 0)
    assert result.errors == []


def test_it_keeps_the_gpu_facts_from_the_labels():
    facts = parse(EXPORTER_TEXT, instance="node-1:9400").facts[GPU]
    assert facts == {
        "uuid": GPU,
        "cluster": "c1",
        "host": "node-1",
        "gpu_index": 0,
        "device": "nvidia0",
        "model": "NVIDIA H100 80GB HBM3",
        "driver": "535.129.03",
        "labels": {
            "gpu": "0",
            "UUID": GPU,
            "pci_bus_id": "00000000:07:00.0",
            "device": "nvidia0",
            "modelName": "NVIDIA H100 80GB HBM3",
            "Hostname": "node-1",
            "DCGM_FI_DRIVER_VERSION": "535.129.03",
            "instance": "node-1:9400",  # added as Prometheus would
        },
    }


def test_it_reads_help_and_type_lines():
    result = parse(EXPORTER_TEXT + "# HELP DCGM_X a \\\\ back\\nslash\n")
    assert result.types["DCGM_FI_DEV_XID_ERRORS"] == "counter"
    assert result.types["go_goroutines"] == "gauge"
    assert result.help["DCGM_FI_DEV_SM_CLOCK"] == "SM clock frequency (in MHz)."
    assert result.help["DCGM_X"] == "a \\ back\nslash"


def test_it_unescapes_quotes_backslashes_and_newlines_in_label_values():
    text = (
        f'DCGM_FI_DEV_GPU_UTIL{{UUID="{GPU}",Hostname="h",'
        'pod="say \\"hi\\"",path="C:\\\\x",note="two\\nlines",brace="{}="} 7\n'
    )
    result = parse(text)
    labels = result.facts[GPU]["labels"]
    # pod is a workload label: it makes the GPU's workload periods, not a fact of the record
    assert "pod" not in labels
    assert result.workload_of(result.rows[0])["pod"] == 'say "hi"'
    assert labels["path"] == "C:\\x"
    assert labels["note"] == "two\nlines"
    assert labels["brace"] == "{}="
    assert values(result) == {(GPU, SCRAPED_AT, "DCGM_FI_DEV_GPU_UTIL"): 7.0}


def test_it_keeps_sample_timestamps_and_stamps_the_others_with_the_scrape_time():
    text = (
        f'DCGM_FI_DEV_GPU_UTIL{{UUID="{GPU}",Hostname="h"}} 1 1752871300000\n'
        f'DCGM_FI_DEV_GPU_TEMP{{UUID="{GPU}",Hostname="h"}} 2 1752871300000\n'
        f'DCGM_FI_DEV_POWER_USAGE{{UUID="{GPU}",Hostname="h"}} 3\n'
    )
    result = parse(text)
    assert values(result) == {
        (GPU, 1_752_871_300_000, "DCGM_FI_DEV_GPU_UTIL"): 1.0,
        (GPU, 1_752_871_300_000, "DCGM_FI_DEV_GPU_TEMP"): 2.0,
        (GPU, SCRAPED_AT, "DCGM_FI_DEV_POWER_USAGE"): 3.0,
    }
    assert len(result.rows) == 2  # one per GPU and time


def test_a_mig_instance_is_its_own_gpu_named_after_its_parent_and_instance_id():
    text = (
        f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="{GPU}",device="nvidia0",Hostname="h"}} 100\n'
        f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="{GPU}",device="nvidia0",'
        'GPU_I_PROFILE="1g.10gb",GPU_I_ID="3",Hostname="h"} 5\n'
        f'DCGM_FI_DEV_FB_USED{{gpu="0",UUID="{GPU}",device="nvidia0",'
        'GPU_I_PROFILE="1g.10gb",GPU_I_ID="4",Hostname="h"} 6\n'
    )
    result = parse(text)
    mig3, mig4 = f"MIG-{GPU}-3", f"MIG-{GPU}-4"
    assert values(result) == {
        (GPU, SCRAPED_AT, "DCGM_FI_DEV_FB_USED"): 100.0,
        (mig3, SCRAPED_AT, "DCGM_FI_DEV_FB_USED"): 5.0,
        (mig4, SCRAPED_AT, "DCGM_FI_DEV_FB_USED"): 6.0,
    }
    facts = result.facts[mig3]
    assert facts["labels"]["UUID"] == GPU  # the parent stays visible
    assert facts["labels"]["GPU_I_PROFILE"] == "1g.10gb"
    assert (facts["host"], facts["gpu_index"]) == ("h", 0)


def test_an_exporter_mig_uuid_is_kept_as_it_is():
    assert gpu_uuid("MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f", "2") == (
        "MIG-c6d4f1ef-42e4-5de3-91c7-45d71c87eb3f"
    )
    assert gpu_uuid(GPU, "") == GPU
    assert gpu_uuid(GPU, "7") == f"MIG-{GPU}-7"


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf", "nan", "Inf"])
def test_non_finite_values_are_skipped_and_counted(value):
    text = (
        f'DCGM_FI_DEV_GPU_UTIL{{UUID="{GPU}",Hostname="h"}} {value}\n'
        f'DCGM_FI_DEV_GPU_TEMP{{UUID="{GPU}",Hostname="h"}} 40\n'
    )
    result = parse(text)
    assert values(result) == {(GPU, SCRAPED_AT, "DCGM_FI_DEV_GPU_TEMP"): 40.0}
    assert (result.nonfinite, result.bad_lines, result.rejected) == (1, 0, 1)
    assert result.errors[0].line == 1
    assert "not a finite number" in result.errors[0].message


def test_garbage_lines_are_counted_as_errors_with_their_line_numbers():
    text = (
        "<html><body>502 Bad Gateway</body></html>\n"
        f'DCGM_FI_DEV_GPU_UTIL{{UUID="{GPU}",Hostname="h"}} 12\n'
        "\n"
        f'DCGM_FI_DEV_GPU_TEMP{{UUID="{GPU}",Hostname="h"}} forty\n'
        f'DCGM_FI_DEV_GPU_TEMP{{UUID="{GPU}",Hostname="h" 40\n'
        "# TYPE DCGM_FI_DEV_GPU_TEMP thermometer\n"
    )
    result = parse(text, source="http://node:9400/metrics")
    assert values(result) == {(GPU, SCRAPED_AT, "DCGM_FI_DEV_GPU_UTIL"): 12.0}
    assert (result.bad_lines, result.rejected) == (4, 4)
    assert [e.line for e in result.errors] == [1, 4, 5, 6]
    assert all(e.message.startswith("http://node:9400/metrics: ") for e in result.errors)


def test_binary_garbage_gives_only_errors():
    result = parse(bytes(range(256)).decode("latin-1") * 3)
    assert result.rows == [] and result.samples == 0
    assert result.bad_lines > 0


def test_series_without_a_gpu_uuid_are_ignored_not_rejected():
    text = (
        'DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT{nvswitch="0",Hostname="h"} 33\n'
        f'go_gc_duration_seconds{{quantile="0.5",UUID="{GPU}"}} 0.001\n'
    )
    result = parse(text)
    assert (result.rows, result.ignored, result.rejected) == ([], 2, 0)


def test_the_host_falls_back_to_the_endpoint_when_no_hostname_label():
    text = f'DCGM_FI_DEV_GPU_UTIL{{gpu="1",UUID="{GPU}",device="nvidia1"}} 3\n'
    result = parse(text, default_host="node-7")
    assert result.rows[0].host == "node-7"
    assert result.facts[GPU]["gpu_index"] == 1
    no_host = parse(text)
    assert no_host.rows == [] and no_host.bad_lines == 1
    assert "hostname" in no_host.errors[0].message


def test_a_uuid_that_cannot_be_a_key_is_rejected():
    result = parse('DCGM_FI_DEV_GPU_UTIL{UUID="GPU-a/../b",Hostname="h"} 3\n')
    assert result.rows == [] and result.bad_lines == 1


def test_the_old_lowercase_uuid_label_works_too():
    result = parse(f'DCGM_FI_DEV_GPU_UTIL{{uuid="{GPU}",Hostname="h"}} 3\n')
    assert values(result) == {(GPU, SCRAPED_AT, "DCGM_FI_DEV_GPU_UTIL"): 3.0}


def test_sample_lines_accept_the_formats_variants():
    assert parse_sample("m 1").labels == {}
    assert parse_sample('m{a="1",} 2').labels == {"a": "1"}  # trailing comma
    assert parse_sample('m { a = "1" , b="2"} 3').labels == {"a": "1", "b": "2"}
    assert parse_sample("m{} 1.5e3 123").value == 1500.0
    assert parse_sample("m{} 1.5e3 123").ts == 123
    assert parse_sample("m\t-0.25").value == -0.25


@pytest.mark.parametrize(
    "line",
    [
        "m",  # no value
        'm{a="1"} 1 2 3',  # too many fields
        'm{a="1" 1',  # unclosed braces
        'm{a="x\\q"} 1',  # unknown escape
        'm{a="1",a="2"} 1',  # a label twice
        'm{a="1" b="2"} 1',  # no comma
        "m 1_000",  # Python would read it, Prometheus does not
        "m 1 12.5",  # timestamp not an integer
        "m 1 -5",  # before 1970
        "9m 1",  # a name cannot start with a digit
    ],
)
def test_malformed_sample_lines_are_refused(line):
    with pytest.raises(LineError):
        parse_sample(line)


def test_labels_parse_alone():
    assert parse_label_set('a="1", b="x\\"y"') == {"a": "1", "b": 'x"y'}
    assert parse_label_set("") == {}


def test_comments_and_openmetrics_eof_are_not_errors():
    text = f'# a comment\n# HELPER not a help line\nDCGM_X{{UUID="{GPU}",Hostname="h"}} 1\n# EOF\n'
    result = parse(text)
    assert (result.samples, result.rejected) == (1, 0)


def test_only_newlines_end_lines():
    text = (
        f'DCGM_X{{UUID="{GPU}",Hostname="h",pod="a\u2028b"}} 1\r\n'
        f'DCGM_Y{{UUID="{GPU}",Hostname="h"}} 2'
    )
    result = parse(text)
    assert result.rejected == 0 and result.samples == 2
    assert result.workload_of(result.rows[0])["pod"] == "a\u2028b"
