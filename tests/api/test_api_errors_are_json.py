"""Every answer under /api/ is JSON, whatever refused the request: no route, wrong
method, Django's own body limits, bad paging; 404s agree with each other."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tests.api.api_support import UPLOAD_URL, generated, upload


def detail_of(answer) -> str:
    assert answer["Content-Type"].startswith("application/json"), answer.content[:200]
    return answer.json()["detail"]


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize(
    ("method", "path", "hint"),
    [
        ("get", "/api/v1/nothing-here", None),
        ("get", "/api/v1/gpus/", "/api/v1/gpus"),
        ("post", "/api/v1/csv/upload/", "/api/v1/csv/upload"),
        ("delete", "/api/v2/gpus", None),
        ("get", "/api/schema", "/api/schema/"),
    ],
)
def test_it_answers_an_unknown_api_path_with_a_json_404(
    client, settings, debug, method, path, hint
):
    settings.DEBUG = debug  # make run's debug mode shows Django's HTML page otherwise
    answer = getattr(client, method)(path)
    assert answer.status_code == 404
    detail = detail_of(answer)
    assert path in detail
    if hint:
        assert f"did you mean {hint}?" in detail


def test_it_answers_a_wrong_method_with_a_json_405_and_allow(client):
    answer = client.put("/api/v1/gpus")
    assert answer.status_code == 405
    assert "PUT" in detail_of(answer)
    assert "GET" in answer["Allow"]


def test_pages_outside_the_api_keep_djangos_html_404(client):
    answer = client.get("/no-such-page")
    assert answer.status_code == 404
    assert not answer["Content-Type"].startswith("application/json")


@pytest.mark.parametrize("debug", [False, True])
def test_too_many_multipart_fields_is_a_json_400(client, settings, debug):
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    fields = {f"f{i}": "x" for i in range(20)}
    fields["file"] = SimpleUploadedFile("a.csv", generated(hosts=1, gpus_per_host=1, samples=1))
    answer = client.post(UPLOAD_URL, fields)
    assert answer.status_code == 400
    assert "fields" in detail_of(answer).lower()


def test_too_many_multipart_files_is_a_json_400(client, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FILES = 1
    files = [SimpleUploadedFile(f"{i}.csv", b"timestamp\n") for i in range(3)]
    answer = client.post(UPLOAD_URL, {"file": files})
    assert answer.status_code == 400
    assert "files" in detail_of(answer).lower()


@pytest.mark.parametrize(
    ("query", "name"),
    [
        ("limit=abc", "limit"),
        ("limit=0", "limit"),
        ("limit=100000", "limit"),
        ("offset=-1", "offset"),
        ("offset=1.5", "offset"),
    ],
)
@pytest.mark.parametrize("path", ["/api/v1/gpus", "/api/v1/hosts", "/api/v1/ingest/jobs"])
def test_it_refuses_a_bad_limit_or_offset_with_400_naming_it(etcd_root, api, path, query, name):
    answer = api.get(f"{path}?{query}")
    assert answer.status_code == 400, answer.content
    assert name in answer.json()


def test_an_unknown_host_is_a_404_like_an_unknown_gpu(etcd_root, api):
    host = api.get("/api/v1/hosts/nope/gpus")
    gpu = api.get("/api/v1/gpus/GPU-nope")
    assert host.status_code == gpu.status_code == 404
    assert "'nope'" in host.json()["detail"]


def test_it_lists_jobs_newest_first_in_pages_with_rfc3339_times(pipeline, api):
    ids = []
    for seed in range(3):
        answer = upload(api, generated(hosts=1, gpus_per_host=1, samples=2, seed=seed))
        assert answer.status_code == 202, answer.content
        assert answer.json()["created_at"].endswith("Z")
        ids.append(answer.json()["id"])
    page = api.get("/api/v1/ingest/jobs?limit=2").json()
    assert page["count"] == 3
    assert [job["id"] for job in page["results"]] == ids[::-1][:2]
    assert page["next"] and page["previous"] is None
    rest = api.get(page["next"]).json()
    assert [job["id"] for job in rest["results"]] == ids[:1]
    first = page["results"][0]
    assert first["created_at"][:2] == "20" and first["created_at"].endswith("Z")
    assert first["state"] in ("running", "done")
    one = api.get(f"/api/v1/ingest/jobs/{ids[0]}").json()
    assert one["created_at"] == rest["results"][0]["created_at"]
