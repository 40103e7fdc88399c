"""`manage.py stream` against the real pipeline (etcd, Redis, a Celery worker)."""

from __future__ import annotations

import io
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.ingest.jobs import JobSeries
from apps.ingest.management.commands.stream import Command as StreamCommand
from tests.api.api_support import all_gpus, expected_samples
from tests.helpers import wait_for, wait_job_done
from tests.sources.sources_support import Running, stored_by_gpu, stored_count
from tools.generate_sample import write
from workers import payload

SUMMARY = re.compile(r"stream: (?P<why>[^:]+): (?P<batches>\d+) batches, (?P<rows>\d+) rows sent")


@pytest.fixture
def small(tmp_path: Path) -> tuple[Path, int]:
    """2 hosts x 2 GPUs x 10 metrics x 4 times: 40 rows per time, 160 rows."""
    path = tmp_path / "stream.csv"
    return path, write(path, hosts=2, gpus_per_host=2, samples=4, seed=7)


def summary(out: str) -> re.Match[str]:
    match = SUMMARY.search(out)
    assert match, out
    return match


def test_it_streams_batches_stamped_with_the_time_they_are_sent(pipeline, small):
    path, _ = small
    api = APIClient()
    run = Running(
        StreamCommand(),
        "--file",
        str(path),
        "--batch-size",
        "20",
        "--interval",
        "100ms",
        "--no-progress",
        "--cluster",
        "replay",
    )
    wait_for(lambda: stored_count(api) >= 80, 60, "four batches stored")
    out = run.stop()
    ended_ms = int(time.time() * 1000)
    done = summary(out)
    batches, rows = int(done["batches"]), int(done["rows"])
    assert done["why"] == "stopped"
    assert batches >= 4 and rows == batches * 20

    job_id = re.search(r"last job (\S+)", out)[1]
    job = wait_job_done(api, job_id)
    assert (job["rows_accepted"], job["cluster"], job["format"]) == (rows, "replay", "dcgm")

    stored = stored_by_gpu(api)
    assert len(stored) == 4
    assert all(g["cluster"] == "replay" for g in all_gpus(api))
    stamps = Counter(ts for samples in stored.values() for ts, _ in samples)
    assert sum(stamps.values()) == rows  # nothing lost, nothing twice
    assert len(stamps) == batches  # one time per batch ...
    assert set(stamps.values()) == {20}  # ... shared by its 20 rows
    assert all(run.started_ms <= ts <= ended_ms for ts in stamps)  # processing time


def test_source_timestamps_keep_the_files_times(pipeline, small):
    path, rows = small
    out = io.StringIO()
    call_command(
        "stream",
        "--file",
        str(path),
        "--batch-size",
        "50",
        "--interval",
        "0",
        "--timestamps",
        "source",
        "--no-loop",
        "--no-progress",
        stdout=out,
    )
    done = summary(out.getvalue())
    assert (done["why"], done["batches"], done["rows"]) == ("end of the file", "4", str(rows))
    expected = expected_samples(path.read_bytes())
    api = APIClient()
    wait_for(lambda: stored_count(api) == rows, 60, "every row stored")
    assert stored_by_gpu(api) == expected


def test_two_shards_send_each_row_exactly_once_per_pass(pipeline, tmp_path, monkeypatch):
    path = tmp_path / "shards.csv"
    rows = write(path, hosts=3, gpus_per_host=4, samples=5, seed=11)
    from telemetry_site.celery import app

    sent: Counter = Counter()
    jobs_of_gpu: dict[str, set[str]] = {}
    lock = threading.Lock()
    real = app.send_task

    def spy(name, args=None, **kwargs):
        chunk = payload.decode(args[0])
        with lock:
            for batch in chunk.batches:
                jobs_of_gpu.setdefault(batch.facts["uuid"], set()).add(chunk.job)
                s = batch.samples
                for ts, metric in zip(s.ts.tolist(), s.metric.tolist(), strict=True):
                    sent[(batch.facts["uuid"], s.names[metric], ts)] += 1
        return real(name, args=args, **kwargs)

    monkeypatch.setattr(app, "send_task", spy)
    common = ("--file", str(path), "--batch-size", "30", "--interval", "0")
    common += ("--timestamps", "source", "--no-loop", "--no-progress", "--job-span", "1h")
    shards = [Running(StreamCommand(), *common, "--shard", f"{i}/2") for i in range(2)]
    outs = [shard.join() for shard in shards]
    sent_rows = [int(summary(out)["rows"]) for out in outs]
    assert all(n > 0 for n in sent_rows)  # both shards had work
    assert sum(sent_rows) == rows

    expected = expected_samples(path.read_bytes())
    keys = {(uuid, metric, ts) for uuid, s in expected.items() for ts, metric in s}
    assert set(sent) == keys
    assert set(sent.values()) == {1}  # each row once, across the two streamers
    assert all(len(jobs) == 1 for jobs in jobs_of_gpu.values())  # a GPU belongs to one shard
    api = APIClient()
    wait_for(lambda: stored_count(api) == rows, 60, "both shards stored")
    assert stored_by_gpu(api) == expected


def test_max_batches_stops_it_and_loops_start_over(pipeline, small):
    path, _ = small  # 160 rows, batches of 60: 60, 60, 40 | 60, ...
    out = io.StringIO()
    call_command(
        "stream",
        "--file",
        str(path),
        "--batch-size",
        "60",
        "--interval",
        "0",
        "--max-batches",
        "5",
        "--timestamps",
        "source",
        "--no-progress",
        stdout=out,
    )
    done = summary(out.getvalue())
    assert (done["why"], done["batches"], done["rows"]) == ("5 batches sent", "5", "280")


def test_it_refuses_a_missing_file_a_bad_header_and_a_bad_shard(pipeline, tmp_path, small):
    path, _ = small
    with pytest.raises(CommandError, match=r"missing\.csv"):
        call_command("stream", "--file", str(tmp_path / "missing.csv"), "--no-progress")
    bad = tmp_path / "bad.csv"
    bad.write_text("when,what\n1,2\n")
    with pytest.raises(CommandError, match="metric_name"):
        call_command("stream", "--file", str(bad), "--no-progress")
    with pytest.raises(CommandError, match="i/n"):
        call_command("stream", "--file", str(path), "--shard", "2", "--no-progress")
    with pytest.raises(CommandError, match="cluster"):
        call_command("stream", "--file", str(path), "--cluster", "a/b", "--no-progress")


def test_it_reads_its_defaults_from_settings(pipeline, small, settings):
    path, _ = small
    settings.CSV_FILE = str(path)
    settings.BATCH_SIZE = 40
    settings.STREAM_INTERVAL = 0.0
    out = io.StringIO()
    call_command("stream", "--no-loop", "--timestamps", "source", "--no-progress", stdout=out)
    assert f"stream: {path} (dcgm), 40 rows every 0s" in out.getvalue()
    assert summary(out.getvalue())["batches"] == "4"


def test_a_stop_during_a_send_finishes_that_batch_first(pipeline, small, monkeypatch):
    path, _ = small
    sending, release = threading.Event(), threading.Event()
    real = JobSeries.send
    calls = []

    def slow(self, rows, facts, **kwargs):
        calls.append(len(rows))
        if len(calls) == 2:  # hold the second batch in hand
            sending.set()
            release.wait(30)
        return real(self, rows, facts, **kwargs)

    monkeypatch.setattr(JobSeries, "send", slow)
    run = Running(
        StreamCommand(),
        *("--file", str(path), "--batch-size", "20", "--interval", "0"),
        *("--timestamps", "source", "--no-progress"),
    )
    assert sending.wait(30), run.output()
    run.command.request_stop()  # what SIGTERM does
    release.set()
    done = summary(run.join())
    assert (done["why"], done["batches"], done["rows"]) == ("stopped", "2", "40")
    api = APIClient()
    wait_for(lambda: stored_count(api) == 40, 60, "both batches stored")
