"""Remote write checks samples against the time policy as uploads do: a sample older than
every storage tier keeps, counted back from its GPU's newest, is refused and counted in the
job, never stored then deleted by the next compaction (real etcd, Redis, a Celery worker)."""

from __future__ import annotations

from django.conf import settings
from rest_framework.test import APIClient

from apps.ingest.remote_write import series_for
from tests.api.api_support import all_gpus, stored_samples
from tests.helpers import wait_for, wait_job_done
from tests.prometheus.test_remote_write_rules import GPU, T, dcgm, post, write_request

DAY = 86_400_000


def test_a_sample_older_than_every_tier_is_refused_and_counted_in_the_job(pipeline: str) -> None:
    now = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T, 41.0)])])
    late = write_request(
        [(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T - 400 * DAY, 30.0), (T - 3 * DAY, 35.0)])]
    )
    assert post(now).status_code == 204
    assert post(late).status_code == 204  # accepted as a whole: Prometheus must not retry it
    api = APIClient()
    wait_for(lambda: len(stored_samples(api, GPU)) == 2 if all_gpus(api) else False, 60, "kept")
    assert stored_samples(api, GPU) == {
        (T, "DCGM_FI_DEV_GPU_TEMP"): 41.0,
        (T - 3 * DAY, "DCGM_FI_DEV_GPU_TEMP"): 35.0,  # outside raw, kept by the rollups
    }
    series = series_for(settings.TELEMETRY_CLUSTER)
    series.close()
    assert series.refused_as_too_old == 1
    job = wait_job_done(api, series.last_job_id)
    assert (job["rows_accepted"], job["rows_rejected"]) == (2, 1)
    [error] = job["errors"]
    assert GPU in error["message"] and "older than every storage tier keeps" in error["message"]
    assert job["retention"]["refused_as_too_old"] == 1
    [raw] = job["retention"]["outside"]
    assert (raw["tier"], raw["rows"], raw["kept_in"]) == ("raw", 1, ["5m", "1h"])
