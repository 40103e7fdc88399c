"""tools.generate_sample: layout of the DCGM export, determinism, gzip."""

from __future__ import annotations

import csv
import gzip
import io
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

from tools.generate_sample import (  # noqa: E402
    LONG_HEADER,
    METRICS,
    WIDE_HEADER,
    generate,
    main,
    write,
)

SMALL = {"hosts": 2, "gpus_per_host": 3, "samples": 4, "seed": 7}
UUID_RE = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
LABEL_RE = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"')


def _rows(lines: list[str]) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO("\n".join(lines) + "\n")))


def _parse_labels(raw: str) -> dict[str, str]:
    """labels_raw after CSV unquoting is plain Prometheus ``k="v",…``."""
    pairs = LABEL_RE.findall(raw)
    assert ",".join(f'{k}="{v}"' for k, v in pairs) == raw  # nothing left unparsed
    return dict(pairs)


@pytest.mark.parametrize(("hosts", "gpus", "samples"), [(1, 1, 1), (2, 3, 4), (3, 8, 5)])
def test_long_row_count(hosts: int, gpus: int, samples: int) -> None:
    lines = list(generate(hosts=hosts, gpus_per_host=gpus, samples=samples, seed=1))
    assert lines[0] == LONG_HEADER
    assert len(lines) - 1 == hosts * gpus * samples * len(METRICS) == hosts * gpus * samples * 10


def test_every_long_field_is_quoted() -> None:
    lines = list(generate(**SMALL))
    for line in lines[1:]:
        fields = next(csv.reader([line]))
        assert len(fields) == 12
        # Re-quoting every field (doubling inner quotes) must reproduce the line exactly.
        assert line == ",".join('"' + f.replace('"', '""') + '"' for f in fields)


def test_labels_raw_parses_back() -> None:
    lines = list(generate(**SMALL))
    assert '""535.129.03""' in lines[1]  # doubled quotes on the wire
    for row in _rows(lines):
        labels = _parse_labels(row["labels_raw"])
        assert labels == {
            "DCGM_FI_DRIVER_VERSION": "535.129.03",
            "Hostname": row["Hostname"],
            "UUID": row["uuid"],
            "__name__": row["metric_name"],
            "device": row["device"],
            "gpu": row["gpu_id"],
            "instance": f"{row['Hostname']}:9400",
            "job": "dgx_dcgm_exporter",
            "modelName": row["modelName"],
        }


def test_long_values_and_identity_are_plausible() -> None:
    rows = _rows(list(generate(hosts=3, gpus_per_host=8, samples=20, seed=3)))
    assert {r["metric_name"] for r in rows} == set(METRICS)
    assert {r["Hostname"] for r in rows} == {"demo-node-01", "demo-node-02", "demo-node-03"}
    assert all(UUID_RE.match(r["uuid"]) and TS_RE.match(r["timestamp"]) for r in rows)
    assert len({r["uuid"] for r in rows}) == 24
    assert {(r["container"], r["pod"], r["namespace"]) for r in rows} == {("", "", "")}
    by = {m: [r["value"] for r in rows if r["metric_name"] == m] for m in METRICS}
    assert all(0 <= int(v) <= 100 for v in by["DCGM_FI_DEV_GPU_UTIL"])
    assert all(20 <= int(v) <= 85 for v in by["DCGM_FI_DEV_GPU_TEMP"])
    assert all(
        60 < float(v) < 700 and len(v.partition(".")[2]) <= 3 for v in by["DCGM_FI_DEV_POWER_USAGE"]
    )
    used, free = by["DCGM_FI_DEV_FB_USED"], by["DCGM_FI_DEV_FB_FREE"]
    assert {int(u) + int(f) for u, f in zip(used, free, strict=True)} == {81007}


def test_long_row_order_is_timestamp_metric_host_gpu() -> None:
    rows = _rows(list(generate(**SMALL)))
    keys = [
        (r["timestamp"], METRICS.index(r["metric_name"]), r["Hostname"], int(r["gpu_id"]))
        for r in rows
    ]
    assert keys == sorted(keys)
    assert rows[0]["timestamp"] == "2025-07-18T20:00:00Z"
    assert rows[-1]["timestamp"] == "2025-07-18T20:00:30Z"  # 4 samples, 10 s apart


def test_fractional_timestamps_and_offsets() -> None:
    lines = generate(**SMALL, start="2025-07-18T22:00:00.5+02:00", interval_seconds=0.25)
    stamps = list(dict.fromkeys(r["timestamp"] for r in _rows(list(lines))))
    assert stamps == [
        "2025-07-18T20:00:00.5Z",
        "2025-07-18T20:00:00.75Z",
        "2025-07-18T20:00:01Z",
        "2025-07-18T20:00:01.25Z",
    ]


def test_wide_format() -> None:
    lines = list(generate(**SMALL, fmt="wide"))
    assert lines[0] == WIDE_HEADER
    rows = _rows(lines)
    assert len(rows) == 2 * 3 * 4
    assert all(int(r["memory_used_mb"]) + int(r["memory_free_mb"]) == 81007 for r in rows)
    # Same seed: the wide row of a GPU carries the long file's values for it.
    long_rows = _rows(list(generate(**SMALL)))
    util = {
        (r["timestamp"], r["uuid"]): r["value"]
        for r in long_rows
        if r["metric_name"] == "DCGM_FI_DEV_GPU_UTIL"
    }
    assert all(util[(r["timestamp"], r["uuid"])] == r["gpu_utilization"] for r in rows)


def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    assert main(["--hosts", "2", "--samples", "3", "--seed", "5", "--output", str(a)]) == 0
    assert main(["--hosts", "2", "--samples", "3", "--seed", "5", "--output", str(b)]) == 0
    assert main(["--hosts", "2", "--samples", "3", "--seed", "6", "--output", str(c)]) == 0
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    assert a.read_text() == "\n".join(generate(hosts=2, samples=3, seed=5)) + "\n"


def test_gzip_output_is_readable_and_reproducible(tmp_path: Path) -> None:
    plain, gz1, gz2 = tmp_path / "p.csv", tmp_path / "x.csv.gz", tmp_path / "y.csv.gz"
    for path in (plain, gz1, gz2):
        assert write(path, **SMALL) == 2 * 3 * 4 * 10
    assert gz1.read_bytes()[:2] == b"\x1f\x8b"
    assert gzip.decompress(gz1.read_bytes()) == plain.read_bytes()
    assert gz1.read_bytes() == gz2.read_bytes()  # no mtime/name in the gzip header


def test_stdout_default(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--hosts", "1", "--gpus-per-host", "1", "--samples", "1"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == LONG_HEADER
    assert len(out.splitlines()) == 11


def test_bundled_samples_match_their_documented_commands(tmp_path: Path) -> None:
    long_, wide = tmp_path / "dcgm_sample.csv", tmp_path / "wide_sample.csv"
    main(["--hosts", "4", "--gpus-per-host", "8", "--samples", "30", "--seed", "1",
          "--cluster-prefix", "demo-node", "--format", "long", "--output", str(long_)])  # fmt: skip
    main(["--hosts", "2", "--gpus-per-host", "4", "--samples", "10", "--seed", "2",
          "--cluster-prefix", "demo-wide", "--format", "wide", "--output", str(wide)])  # fmt: skip
    assert long_.read_bytes() == (REPO / "samples" / "dcgm_sample.csv").read_bytes()
    assert wide.read_bytes() == (REPO / "samples" / "wide_sample.csv").read_bytes()


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="time zone"):
        list(generate(start="2025-07-18T20:00:00"))
    with pytest.raises(ValueError, match="fmt"):
        list(generate(fmt="xml"))
    with pytest.raises(SystemExit):
        main(["--interval-seconds", "0"])
