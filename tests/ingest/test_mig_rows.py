"""MIG instances in CSV are records of their own, named and described as the scrape path does."""

from __future__ import annotations

from apps.ingest.exposition import parse_exposition
from tests.ingest.ingest_support import (
    HOST,
    TS_MS,
    TS_TEXT,
    UUID,
    csv_text,
    labels_raw,
    long_csv,
    long_row,
    parse_all,
)


def mig_labels(gi: str, profile: str) -> str:
    return labels_raw(GPU_I_ID=gi, GPU_I_PROFILE=profile)


def test_long_rows_with_mig_labels_become_one_record_per_instance():
    rows_in = [
        long_row(value="10", labels_raw=mig_labels("1", "1g.10gb")),
        long_row(value="20", labels_raw=mig_labels("2", "3g.40gb")),
        long_row(value="30"),  # the parent GPU itself
    ]
    parser, rows = parse_all(long_csv(rows_in))
    assert [(r.uuid, r.values[0][1]) for r in rows] == [
        (f"MIG-{UUID}-1", 10.0),
        (f"MIG-{UUID}-2", 20.0),
        (UUID, 30.0),
    ]
    facts = parser.facts(rows[1], "c")
    assert facts["uuid"] == f"MIG-{UUID}-2"
    assert facts["labels"]["UUID"] == UUID
    assert (facts["labels"]["GPU_I_ID"], facts["labels"]["GPU_I_PROFILE"]) == ("2", "3g.40gb")


def test_the_same_instance_is_named_as_the_scrape_path_names_it():
    _parser, rows = parse_all(long_csv([long_row(labels_raw=mig_labels("4", "2g.20gb"))]))
    scrape = parse_exposition(
        f'DCGM_FI_DEV_GPU_UTIL{{gpu="0",UUID="{UUID}",GPU_I_ID="4",'
        f'GPU_I_PROFILE="2g.20gb",Hostname="{HOST}"}} 42 {TS_MS}\n',
        cluster="c",
        scraped_at=TS_MS,
    )
    assert [r.uuid for r in rows] == [r.uuid for r in scrape.rows]


def test_instance_columns_in_the_long_format():
    header = ["timestamp", "metric_name", "uuid", "Hostname", "GPU_I_ID", "GPU_I_PROFILE", "value"]
    rows_in = [
        [TS_TEXT, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", UUID, HOST, "1", "1g.10gb", "0.5"],
        [TS_TEXT, "DCGM_FI_PROF_GR_ENGINE_ACTIVE", UUID, HOST, "2", "1g.10gb", "0.7"],
    ]
    parser, rows = parse_all(csv_text(header, rows_in).encode())
    assert [r.uuid for r in rows] == [f"MIG-{UUID}-1", f"MIG-{UUID}-2"]
    labels = parser.facts(rows[0], "c")["labels"]
    assert (labels["UUID"], labels["GPU_I_ID"], labels["GPU_I_PROFILE"]) == (UUID, "1", "1g.10gb")


def test_instance_columns_in_the_wide_format_are_not_metrics():
    header = ["timestamp", "uuid", "hostname", "GPU_I_ID", "GPU_I_PROFILE", "gpu_utilization"]
    rows_in = [
        [TS_TEXT, UUID, HOST, "1", "1g.10gb", "40"],
        [TS_TEXT, UUID, HOST, "2", "3g.40gb", "60"],
    ]
    parser, rows = parse_all(csv_text(header, rows_in, quote_all=False).encode())
    assert [(r.uuid, r.values) for r in rows] == [
        (f"MIG-{UUID}-1", [("DCGM_FI_DEV_GPU_UTIL", 40.0)]),
        (f"MIG-{UUID}-2", [("DCGM_FI_DEV_GPU_UTIL", 60.0)]),
    ]
    assert parser.facts(rows[1], "c")["labels"]["GPU_I_PROFILE"] == "3g.40gb"


def test_rows_of_different_instances_at_the_same_time_are_never_merged():
    rows_in = [
        long_row(value=str(gi), labels_raw=mig_labels(str(gi), "1g.10gb")) for gi in range(7)
    ]
    _parser, rows = parse_all(long_csv(rows_in * 2))
    by_uuid: dict[str, list[float]] = {}
    for row in rows:
        by_uuid.setdefault(row.uuid, []).append(row.values[0][1])
    assert by_uuid == {f"MIG-{UUID}-{gi}": [float(gi), float(gi)] for gi in range(7)}


def test_a_uuid_that_already_names_an_instance_is_kept():
    mig = f"MIG-{UUID}-3"
    _parser, rows = parse_all(long_csv([long_row(uuid=mig, labels_raw=mig_labels("3", "x"))]))
    assert rows[0].uuid == mig


def test_an_instance_id_that_cannot_be_a_key_refuses_the_row():
    parser, rows = parse_all(long_csv([long_row(labels_raw=mig_labels("1/../x", "p"))]))
    assert rows == []
    assert "uuid" in parser.errors[0].message
