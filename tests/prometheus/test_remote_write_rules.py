"""The remote write receiver's rules: token, bounded body, DCGM series only, retries once."""

from __future__ import annotations

import cramjam
import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.ingest.prompb import remote_pb2
from tests.api.api_support import all_gpus, stored_samples
from tests.helpers import wait_for

URL = "/prometheus/api/v1/write"
GPU = "GPU-11112222-3333-4444-5555-666677778888"
T = 1_752_800_000_000


def write_request(series: list[tuple[dict[str, str], list[tuple[int, float]]]]) -> bytes:
    request = remote_pb2.WriteRequest()
    for labels, points in series:
        ts = request.timeseries.add()
        for name, value in sorted(labels.items()):
            ts.labels.add(name=name, value=value)
        for t, v in points:
            ts.samples.add(timestamp=t, value=v)
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))


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
