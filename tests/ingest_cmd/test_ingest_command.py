"""`manage.py ingest`: the shell's way in, same pipeline as the upload API."""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from tests.api.api_support import all_gpus, expected_samples, keys_under, stored_samples
from tools.generate_sample import write


def run(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("ingest", *args, "--no-progress", "--timeout", "90", stdout=out, stderr=err)
    return out.getvalue()


@pytest.fixture
def sample(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "cmd.csv"
    return path, write(path, hosts=2, gpus_per_host=2, samples=6, seed=21)


def test_it_prints_the_summary_and_waits_until_the_job_is_done(pipeline, sample):
    path, rows = sample
    out = run(str(path), "--wait", "--cluster", "shell")
    summary = re.search(
        rf"(\S+): job (\S+): {rows} rows read, {rows} accepted, 0 rejected, "
        r"([\d,]+) rows/s, (\d+) chunk\(s\) queued",
        out,
    )
    assert summary, out
    assert summary.group(1) == str(path)
    assert f"job {summary.group(2)}: done" in out

    api = APIClient()
    job = api.get(f"/api/v1/ingest/jobs/{summary.group(2)}").json()
    assert (job["state"], job["rows_accepted"], job["cluster"]) == ("done", rows, "shell")
    expected = expected_samples(path.read_bytes())
    gpus = all_gpus(api)
    assert len(gpus) == 4
    for gpu in gpus:
        assert gpu["cluster"] == "shell"
        assert stored_samples(api, gpu["uuid"]) == expected[gpu["uuid"]]


def test_it_prints_rejected_rows_with_their_line_numbers(pipeline, sample):
    path, rows = sample
    lines = path.read_text().splitlines()
    lines[3] = lines[3].replace('"2025-07-18T20:00:00Z"', '"not a time"', 1)
    path.write_text("\n".join(lines) + "\n")
    out = run(str(path), "--wait")
    assert f"{rows} rows read, {rows - 1} accepted, 1 rejected" in out
    assert "line 4: timestamp 'not a time'" in out


def test_it_fails_on_a_bad_header_naming_the_missing_columns(pipeline, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("when,what,gpu\n2025-07-18T20:00:00Z,x,1\n")
    with pytest.raises(CommandError) as failure:
        run(str(path), "--wait")
    message = str(failure.value)
    for column in ("timestamp", "metric_name", "uuid", "hostname", "value"):
        assert column in message
    assert str(path) in message
    assert keys_under("jobs") == []


def test_it_names_each_refused_file_and_still_ingests_the_good_ones(pipeline, sample, tmp_path):
    path, _ = sample
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(CommandError) as failure:
        run(str(empty), str(path), "--wait")
    assert "1 of 2" in str(failure.value)
    assert "empty.csv" in str(failure.value)
    assert len(keys_under("jobs")) == 1


def test_it_reads_stdin_for_a_dash(pipeline, sample, monkeypatch):
    path, rows = sample
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
    out = run("-", "--wait")
    assert "-: job" in out
    assert f"{rows} rows read, {rows} accepted, 0 rejected" in out
    assert len(all_gpus(APIClient())) == 4
