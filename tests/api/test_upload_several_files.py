"""A multipart upload holding several files is refused whole, never cut down to one."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile

from tests.api.api_support import UPLOAD_URL, generated, keys_under


def files(*names: str) -> list[SimpleUploadedFile]:
    data = generated(hosts=1, gpus_per_host=1, samples=2, seed=4)
    return [SimpleUploadedFile(name, data) for name in names]


def test_two_files_in_the_file_field_are_refused_and_nothing_is_stored(pipeline, api):
    response = api.post(UPLOAD_URL, {"file": files("a.csv", "b.csv")}, format="multipart")
    assert response.status_code == 400
    message = response.json()["file"][0]
    assert "one file per upload" in message and "2 files" in message
    assert "'a.csv'" in message and "'b.csv'" in message
    assert keys_under("jobs") == [] and keys_under("blocks") == []


def test_a_second_file_under_another_field_is_refused_too(pipeline, api):
    [one] = files("a.csv")
    [other] = files("f99.csv")
    response = api.post(UPLOAD_URL, {"file": one, "extra": other}, format="multipart")
    assert response.status_code == 400
    assert "'f99.csv'" in response.json()["file"][0]
    assert keys_under("jobs") == []


def test_one_file_is_still_accepted(pipeline, api):
    [one] = files("a.csv")
    response = api.post(UPLOAD_URL, {"file": one}, format="multipart")
    assert response.status_code == 202, response.content
