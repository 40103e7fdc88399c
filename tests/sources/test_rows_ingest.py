"""service.ingest_rows / Job / JobSeries: the ingest path for rows parsed elsewhere."""

from __future__ import annotations

import io

import pytest
from rest_framework.test import APIClient

from apps.ingest.jobs import Job, JobSeries
from apps.ingest.parsing import Parser, Row, RowError, open_text
from apps.ingest.service import NothingAccepted, ingest_rows
from store import default_keys, window_ms
from store.compaction import compact
from store.keys import Keys
from store.tiers import tiers
from tests.api.api_support import expected_samples, generated, keys_under
from tests.helpers import wait_job_done
from tests.sources.sources_support import stored_by_gpu


def parsed(data: bytes) -> tuple[Parser, list[Row]]:
    parser = Parser(open_text(io.BytesIO(data)))
    return parser, list(parser)


def test_ingest_rows_stores_the_rows_as_one_job(pipeline):
    data = generated(hosts=2, gpus_per_host=2, samples=5, seed=5)
    parser, rows = parsed(data)
    job = ingest_rows(
        rows,
        lambda row: parser.facts(row, "rows"),
        source="test rows",
        cluster="rows",
        fmt="dcgm",
        rejected=2,
        errors=[RowError(7, "bad"), RowError(9, "worse")],
    )
    assert (job["rows_read"], job["rows_accepted"], job["rows_rejected"]) == (202, 200, 2)
    assert job["errors"] == [{"line": 7, "message": "bad"}, {"line": 9, "message": "worse"}]
    api = APIClient()
    done = wait_job_done(api, job["id"])
    assert (done["source"], done["cluster"], done["format"]) == ("test rows", "rows", "dcgm")
    assert stored_by_gpu(api) == expected_samples(data)


def test_ingest_rows_with_nothing_writes_nothing(pipeline):
    with pytest.raises(NothingAccepted):
        ingest_rows([], lambda row: {}, source="empty", rejected=3)
    assert keys_under("jobs") == []


def test_a_rows_job_that_never_sent_a_chunk_is_not_written(pipeline):
    job = Job(source="idle", cluster=None, fmt="dcgm")
    assert job.close() is None
    assert keys_under("jobs") == []


def test_a_series_job_that_refused_every_row_is_saved_failed_with_its_errors(pipeline):
    series = JobSeries(source="all bad", cluster="c", fmt="dcgm", span=3600)
    series.send([], lambda row: {}, rejected=2, errors=[RowError(3, "bad"), RowError(4, "worse")])
    series.close()
    assert (series.jobs_closed, series.jobs_failed) == (0, 1)
    (key,) = keys_under("jobs")
    job = APIClient().get(f"/api/v1/ingest/jobs/{key.rsplit('/', 1)[1]}").json()
    assert (job["state"], job["rows_read"], job["rows_rejected"]) == ("failed", 2, 2)
    assert "no row accepted" in job["error"] and series.last_job_id == job["id"]
    assert job["errors"] == [{"line": 3, "message": "bad"}, {"line": 4, "message": "worse"}]


def test_a_failed_send_marks_the_job_failed_and_the_series_opens_a_new_one(pipeline):
    data = generated(hosts=1, gpus_per_host=2, samples=2, seed=6)
    parser, rows = parsed(data)
    series = JobSeries(source="flaky", cluster="c", fmt="dcgm", span=3600)

    def facts(row: Row) -> dict:
        return parser.facts(row, "c")

    series.send(rows[:10], facts)
    first = series.last_job_id

    def broken(row: Row) -> dict:
        raise ConnectionError("the broker went away")

    with pytest.raises(ConnectionError):
        series.send(rows[10:], broken)
    series.send(rows[10:], facts)
    series.close()
    assert series.last_job_id != first
    assert (series.jobs_closed, series.jobs_failed) == (1, 1)
    api = APIClient()
    failed = api.get(f"/api/v1/ingest/jobs/{first}").json()
    assert failed["state"] == "failed" and "broker went away" in failed["error"]
    assert wait_job_done(api, series.last_job_id)["rows_accepted"] == len(rows) - 10
    assert stored_by_gpu(api) == expected_samples(data)


def test_a_series_starts_a_new_job_when_its_span_is_over(pipeline):
    data = generated(hosts=1, gpus_per_host=2, samples=3, seed=8)
    parser, rows = parsed(data)
    now = [0.0]
    series = JobSeries(source="span", cluster="c", fmt="dcgm", span=60, clock=lambda: now[0])

    def facts(row: Row) -> dict:
        return parser.facts(row, "c")

    for part in range(3):  # t = 0, 30, 60: the third send opens a second job
        series.send(rows[part * 20 : (part + 1) * 20], facts)
        now[0] += 30
    assert series.jobs_closed == 1
    now[0] += 60
    series.tick()  # the second job's span is over, no send needed to close it
    assert series.jobs_closed == 2
    api = APIClient()
    jobs = sorted(keys_under("jobs"))
    assert len(jobs) == 2
    accepted = [wait_job_done(api, key.rsplit("/", 1)[1])["rows_accepted"] for key in jobs]
    assert accepted == [40, 20]


def test_span_zero_is_one_job_per_send(pipeline):
    data = generated(hosts=1, gpus_per_host=1, samples=2, seed=9)
    parser, rows = parsed(data)
    series = JobSeries(source="each", cluster="c", fmt="dcgm", span=0)
    for row in rows[:3]:
        series.send([row], lambda r: parser.facts(r, "c"))
    assert series.jobs_closed == 3
    assert len(keys_under("jobs")) == 3


def test_a_series_is_one_upload_so_compaction_leaves_a_block_per_window(pipeline):
    """A live source sends a job a minute; with an upload sequence per job, compaction kept
    one block per job in every window (one per upload, store/order.py), for good."""
    data = generated(hosts=1, gpus_per_host=1, samples=3, seed=10)
    parser, rows = parsed(data)
    series = JobSeries(source="live", cluster="c", fmt="dcgm", span=0)
    ids = []
    for row in rows:
        series.send([row], lambda r: parser.facts(r, "c"))
        ids.append(series.last_job_id)
    api = APIClient()
    jobs = [wait_job_done(api, job_id) for job_id in ids]
    assert len(jobs) == len(rows) > 2 and len({job["upload_seq"] for job in jobs}) == 1
    names = [Keys.parse_block(key) for key in keys_under("blocks")]
    orders = sorted((name.upload, name.chunk) for name in names)
    assert orders == [(jobs[0]["upload_seq"], n) for n in range(len(rows))]  # numbered on

    compact(default_keys(), tiers(), retention=False)
    expected = expected_samples(data)
    windows = {ts // window_ms() for samples in expected.values() for ts, _ in samples}
    assert len(keys_under("blocks")) == len(windows) < len(rows)
    assert stored_by_gpu(api) == expected
