"""The remote write receiver's rules: token, bounded body, DCGM series only, retries once."""

from __future__ import annotations

import cramjam
import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.ingest.exposition import Limits, Sample, from_samples
from apps.ingest.remote_write import series_for
from tests.api.api_support import all_gpus, stored_samples
from tests.helpers import wait_for, wait_job_done
from tools import prometheus

URL = "/prometheus/api/v1/write"
GPU = "GPU-11112222-3333-4444-5555-666677778888"
T = 1_752_800_000_000


write_request = prometheus.remote_write_body


def dcgm(name: str, **extra: str) -> dict[str, str]:
    return {"__name__": name, "UUID": GPU, "gpu": "0", "Hostname": "node-9", **extra}


def post(body: bytes, client: Client | None = None, **headers: str):
    return (client or Client()).post(
        URL, body, content_type="application/x-protobuf", headers=headers
    )


def test_dcgm_series_are_stored_once_even_when_prometheus_retries(pipeline: str) -> None:
    body = write_request(
        [
            (dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T, 41.0), (T + 1000, 42.0)]),
            (dcgm("DCGM_FI_DEV_POWER_USAGE"), [(T, 150.5), (T + 1000, float("nan"))]),
            ({"__name__": "up", "job": "dcgm"}, [(T, 1.0)]),
            ({"__name__": "DCGM_FI_DEV_NVSWITCH_TEMPERATURE_CURRENT"}, [(T, 40.0)]),
        ]
    )
    for _ in range(2):  # a retry after a timeout sends the same request again
        assert post(body).status_code == 204
    api = APIClient()
    wait_for(lambda: len(stored_samples(api, GPU)) == 3 if all_gpus(api) else False, 60, "stored")
    assert stored_samples(api, GPU) == {
        (T, "DCGM_FI_DEV_GPU_TEMP"): 41.0,
        (T + 1000, "DCGM_FI_DEV_GPU_TEMP"): 42.0,
        (T, "DCGM_FI_DEV_POWER_USAGE"): 150.5,
    }
    assert [g["uuid"] for g in all_gpus(api)] == [GPU]


def test_bodies_that_are_not_remote_write_are_refused_with_400(pipeline: str) -> None:
    for body, named in (
        (b"", "empty body"),
        (b"not snappy at all", "snappy"),
        (bytes(cramjam.snappy.compress_raw(b"\xff\xff\xff")), "WriteRequest"),
        (b"\xff\xff\xff\xff\x7f" + b"x" * 10, "limit"),  # declares ~34 GB decompressed
    ):
        response = post(body)
        assert response.status_code == 400, body
        assert named in response.json()["detail"]


def test_a_body_over_the_limit_is_refused(pipeline: str, settings) -> None:
    settings.REMOTE_WRITE_MAX_BYTES = 64
    body = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T + i, 1.0) for i in range(50)])])
    assert post(body).status_code in (400, 413)


@pytest.mark.django_db
def test_writes_need_a_token_when_write_auth_is_on(pipeline: str, settings) -> None:
    settings.TELEMETRY_WRITE_AUTH = True
    body = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T, 41.0)])])
    assert post(body).status_code == 401
    assert post(body, Authorization="Bearer not-a-token").status_code == 401


@pytest.mark.django_db
def test_a_token_lets_prometheus_write(pipeline: str, settings) -> None:
    from django.contrib.auth import get_user_model
    from rest_framework.authtoken.models import Token

    settings.TELEMETRY_WRITE_AUTH = True
    user = get_user_model().objects.create_user("prometheus", password="x")
    token = Token.objects.create(user=user)
    body = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T, 41.0)])])
    assert post(body, Authorization=f"Bearer {token.key}").status_code == 204


OTHER_GPU = "GPU-99998888-7777-6666-5555-444433332222"


def test_a_bad_sample_is_rejected_alone_and_the_others_are_stored(pipeline: str, settings) -> None:
    """A negative or far-future timestamp used to fail the worker's whole chunk: every
    GPU's good samples of the request were lost though the request was answered 204."""
    other = {**dcgm("DCGM_FI_DEV_GPU_TEMP"), "UUID": OTHER_GPU}
    body = write_request(
        [
            (dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T, 41.0), (-5, 1.0), (2**63 - 1, 2.0)]),
            (other, [(T, 50.0), (T + 3_600_000_000_000, 3.0)]),  # ~114 years ahead
            (dcgm("DCGM_a/b"), [(T, 4.0)]),  # not a Prometheus metric name
            (dcgm("DCGM_" + "x" * 5000), [(T, 5.0)]),  # longer than MAX_METRIC_NAME
        ]
    )
    assert post(body).status_code == 204
    api = APIClient()

    def both_stored() -> bool:
        return len(all_gpus(api)) == 2 and all(stored_samples(api, g) for g in (GPU, OTHER_GPU))

    wait_for(both_stored, 60, "the good samples stored")
    assert stored_samples(api, GPU) == {(T, "DCGM_FI_DEV_GPU_TEMP"): 41.0}
    assert stored_samples(api, OTHER_GPU) == {(T, "DCGM_FI_DEV_GPU_TEMP"): 50.0}
    series = series_for(settings.TELEMETRY_CLUSTER)
    series.close()
    job = wait_job_done(api, series.last_job_id)
    assert (job["rows_accepted"], job["rows_rejected"]) == (2, 5)


ON_GPU = {"UUID": GPU, "Hostname": "node-9"}


def test_each_bad_sample_is_counted_with_its_reason() -> None:
    """The rule of from_samples (pure): each bad sample rejected alone, named."""
    now = T + 60_000
    samples = [
        Sample("DCGM_FI_DEV_GPU_TEMP", ON_GPU, 41.0, T),
        Sample("DCGM_FI_DEV_GPU_TEMP", ON_GPU, 1.0, -5),
        Sample("DCGM_FI_DEV_GPU_TEMP", ON_GPU, 2.0, 2**63 - 1),
        Sample("DCGM_FI_DEV_GPU_TEMP", ON_GPU, 3.0, now + 301_000),
        Sample("DCGM_a/b", ON_GPU, 4.0, T),
        Sample("DCGM_" + "x" * 5000, ON_GPU, 5.0, T),
        Sample("DCGM_FI_DEV_POWER_USAGE", ON_GPU, 6.0, T),
        Sample("DCGM_FI_DEV_GPU_UTIL", ON_GPU, 7.0, T),
    ]
    limits = Limits(latest_ms=now + 300_000, max_metrics_per_gpu=2)
    out = from_samples(samples, cluster="c", scraped_at=now, limits=limits)
    assert out.samples == 2 and out.rejected == 6
    assert [(r.ts, r.values) for r in out.rows] == [
        (T, [("DCGM_FI_DEV_GPU_TEMP", 41.0), ("DCGM_FI_DEV_POWER_USAGE", 6.0)])
    ]
    reasons = [e.message for e in out.errors]
    assert [e.line for e in out.errors] == [2, 3, 4, 5, 6, 8]
    assert "out of range" in reasons[0] and "out of range" in reasons[1]
    assert "INGEST_MAX_FUTURE" in reasons[2]
    assert "not a valid Prometheus metric name" in reasons[3]
    assert "longer than" in reasons[4]
    assert "INGEST_MAX_METRICS_PER_GPU" in reasons[5]


def test_a_gpu_past_the_metrics_limit_keeps_its_first_metrics(pipeline: str, settings) -> None:
    settings.INGEST_MAX_METRICS_PER_GPU = 2
    names = ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_GPU_UTIL"]
    body = write_request([(dcgm(n), [(T, float(i))]) for i, n in enumerate(names)])
    assert post(body).status_code == 204
    api = APIClient()
    wait_for(lambda: bool(all_gpus(api)) and bool(stored_samples(api, GPU)), 60, "stored")
    assert stored_samples(api, GPU) == {
        (T, "DCGM_FI_DEV_GPU_TEMP"): 0.0,
        (T, "DCGM_FI_DEV_POWER_USAGE"): 1.0,
    }


def test_a_request_over_the_samples_cap_is_refused_before_it_is_decoded(
    pipeline: str, settings
) -> None:
    settings.REMOTE_WRITE_MAX_SAMPLES = 100
    ok = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T + i, 1.0) for i in range(100)])])
    over = write_request([(dcgm("DCGM_FI_DEV_GPU_TEMP"), [(T + i, 1.0) for i in range(101)])])
    response = post(over)
    assert response.status_code == 400
    assert "REMOTE_WRITE_MAX_SAMPLES" in response.json()["detail"]
    assert post(ok).status_code == 204
