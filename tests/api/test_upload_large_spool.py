"""A large raw upload is written to disk once by the gateway: its body spool becomes the
worker's file by a hard link, and by a copy only where the two folders lie on different
filesystems (measured by the bytes the gateway process writes, /proc/<pid>/io wchar). Its
parse goes to INGEST_PARSE_QUEUE when set: the workers that share the gateway's folder."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings

from tests.conftest import start_gateway, start_worker
from tests.helpers import wait_for
from tools.generate_sample import write as write_csv

SHM = Path("/dev/shm")
TMP = Path(django_settings.INGEST_SPOOL_DIR).parent  # where the worker's folder is made


def written(pid: int) -> int:
    """Bytes the process has passed to write() so far."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError(f"no wchar in /proc/{pid}/io")


@pytest.fixture(scope="module")
def body(tmp_path_factory) -> tuple[bytes, int]:
    """A DCGM export of ~6 MB (over the 2 MiB kept in memory) and its row count."""
    path = tmp_path_factory.mktemp("upload") / "large.csv"
    rows = write_csv(path, hosts=4, gpus_per_host=8, samples=50, seed=3)
    return path.read_bytes(), rows


@contextlib.contextmanager
def gateway_with(
    bodies: Path, logs: Path, etcd, redis_server, root: str, **more: str
) -> Iterator[tuple[str, int]]:
    bodies.mkdir(parents=True, exist_ok=True)
    env = {
        "ETCD_PREFIX": root,
        "FILE_UPLOAD_TEMP_DIR": str(bodies),
        "INGEST_SPOOL_DIR": str(django_settings.INGEST_SPOOL_DIR),  # the session worker's
        "INGEST_ASYNC_BYTES": "1000000",
        "TELEMETRY_WRITE_AUTH": "false",
        "THROTTLE_UPLOADS": "off",
        "THROTTLE_READS": "off",
        **more,
    }
    with start_gateway(logs, etcd.url, redis_server.url, **env) as svc:
        yield f"http://127.0.0.1:{svc.port}", svc.proc.pid


def upload_and_wait(url: str, pid: int, data: bytes, form: bool = False) -> tuple[dict, int]:
    """The finished job of an upload of `data` (raw, or as a multipart form's file), and the
    bytes the gateway wrote for it."""
    before = written(pid)
    if form:
        sent = {"files": {"file": ("large.csv", data, "text/csv")}}
    else:
        sent = {"data": data, "headers": {"Content-Type": "text/csv"}}
    response = requests.post(f"{url}/api/v1/csv/upload", timeout=120, **sent)
    assert response.status_code == 202, response.text
    accepted = written(pid) - before  # the upload is answered once its file is in place
    job_id = response.json()["id"]

    def finished() -> dict | None:
        job = requests.get(f"{url}/api/v1/ingest/jobs/{job_id}", timeout=30).json()
        assert job["state"] != "failed", job
        return job if job["state"] == "done" else None

    return wait_for(finished, 120, f"job {job_id} done"), accepted


def test_a_large_upload_is_linked_to_the_workers_folder_not_copied(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    data, rows = body
    with gateway_with(tmp_path / "bodies", tmp_path, etcd, redis_server, etcd_root) as (url, pid):
        job, wrote = upload_and_wait(url, pid, data)
        assert job["rows_accepted"] == rows and job["rows_rejected"] == 0, job
        assert len(data) <= wrote < 1.5 * len(data), (wrote, len(data))
        # the body's own name is gone with its request; the worker deleted its link
        assert wait_for(lambda: not list((tmp_path / "bodies").iterdir()), 10, "bodies gone")


def test_a_large_multipart_uploads_file_is_linked_too(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    """Django's multipart parser writes the file part to disk (a second copy of the body,
    Django's own); the job links that file rather than writing a third."""
    data, rows = body
    with gateway_with(tmp_path / "bodies", tmp_path, etcd, redis_server, etcd_root) as (url, pid):
        job, wrote = upload_and_wait(url, pid, data, form=True)
        assert job["rows_accepted"] == rows and job["rows_rejected"] == 0, job
        assert 2 * len(data) <= wrote < 2.5 * len(data), (wrote, len(data))


@pytest.mark.skipif(
    not SHM.is_dir() or os.stat(SHM).st_dev == os.stat(TMP).st_dev,
    reason="needs /dev/shm on a filesystem other than INGEST_SPOOL_DIR's to refuse the link",
)
def test_across_filesystems_the_body_is_copied_and_every_row_kept(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    data, rows = body
    bodies = SHM / f"bodies-{etcd_root.strip('/')}"
    try:
        with gateway_with(bodies, tmp_path, etcd, redis_server, etcd_root) as (url, pid):
            job, wrote = upload_and_wait(url, pid, data)
            assert job["rows_accepted"] == rows and job["rows_rejected"] == 0, job
            assert wrote >= 2 * len(data), (wrote, len(data))
    finally:
        for leftover in bodies.glob("*"):
            leftover.unlink()
        bodies.rmdir()


def test_a_large_uploads_parse_goes_to_the_queue_of_the_workers_sharing_its_folder(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    """The parse is received by the worker of that queue (the session's worker, on the
    default queue, could read the file here: one machine)."""
    data, rows = body
    spool, queue = tmp_path / "uploads", f"uploads-{tmp_path.name}"
    spool.mkdir()
    env = {"INGEST_SPOOL_DIR": str(spool), "ETCD_PREFIX": etcd_root}
    with start_worker(tmp_path, etcd.url, redis_server.url, 1, queues=queue, **env) as parser:
        with gateway_with(
            tmp_path / "bodies",
            tmp_path,
            etcd,
            redis_server,
            etcd_root,
            **env,
            INGEST_PARSE_QUEUE=queue,
        ) as (url, pid):
            job, _ = upload_and_wait(url, pid, data)
            assert job["rows_accepted"] == rows and job["rows_rejected"] == 0, job
        assert "Task apps.ingest.parse_upload[" in parser.log_path.read_text()
    assert not list(spool.iterdir())


def test_a_large_upload_over_the_spool_budget_is_refused_and_nothing_kept(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    """Uploads waiting for their parse may hold INGEST_SPOOL_MAX_BYTES: one more is refused
    503 with Retry-After before its file is kept, and accepted once the waiting file is older
    than INGEST_JOB_STALE (deleted then: its parse never came)."""
    data, rows = body
    spool = tmp_path / "uploads"
    spool.mkdir()
    waiting = spool / "waiting.csv"  # an upload not parsed yet, as far as the budget goes
    waiting.write_bytes(b"x" * (len(data) // 2))
    env = {"INGEST_SPOOL_DIR": str(spool), "INGEST_SPOOL_MAX_BYTES": str(len(data) + 1000)}
    with gateway_with(tmp_path / "bodies", tmp_path, etcd, redis_server, etcd_root, **env) as (
        url,
        pid,
    ):
        response = requests.post(
            f"{url}/api/v1/csv/upload", data=data, headers={"Content-Type": "text/csv"}, timeout=60
        )
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"] == "30"
        assert "INGEST_SPOOL_MAX_BYTES" in response.json()["detail"]
        assert [p.name for p in spool.iterdir()] == ["waiting.csv"]
        assert requests.get(f"{url}/api/v1/ingest/jobs", timeout=30).json()["count"] == 0
        stale = time.time() - 3600  # older than INGEST_JOB_STALE (600 s): its job shows failed
        os.utime(waiting, (stale, stale))
        job, _ = upload_and_wait(url, pid, data)
        assert job["rows_accepted"] == rows
        assert not waiting.exists(), "a file left past INGEST_JOB_STALE is swept, not counted"


def _aged(path: Path, seconds: float) -> Path:
    path.write_bytes(b"timestamp,gpu_id\n")
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_bodies_a_killed_gateway_left_are_swept_at_start(
    worker, etcd, redis_server, etcd_root, tmp_path, body
):
    from telemetry_site.guard import BODY_PREFIX

    bodies = tmp_path / "bodies"
    bodies.mkdir()
    # the longest a body may take to arrive: 10 s + 64 MiB at 16 KiB/s, then 600 s to end
    limits = {
        "HTTP_BODY_GRACE": "10",
        "HTTP_BODY_MIN_RATE": "16384",
        "INGEST_MAX_UPLOAD_BYTES": str(64 * 1024**2),
        "INGEST_JOB_STALE": "600",
    }
    lifetime = 10 + 64 * 1024**2 / 16384 + 600
    dead = _aged(bodies / f"{BODY_PREFIX}dead", lifetime + 60)
    slow = _aged(bodies / f"{BODY_PREFIX}slow", lifetime - 60)  # may still be arriving
    foreign = _aged(bodies / "body-someone-elses", lifetime + 60)
    with gateway_with(bodies, tmp_path / "logs", etcd, redis_server, etcd_root, **limits) as (
        url,
        pid,
    ):
        assert not dead.exists()
        assert slow.exists() and foreign.exists()
        job, _ = upload_and_wait(url, pid, body[0])
        assert job["rows_accepted"] == body[1]
    # and the upload's own body is gone with its request
    assert sorted(p.name for p in bodies.iterdir()) == sorted([slow.name, foreign.name])


def test_a_sweep_deletes_only_our_bodies_older_than_any_request(tmp_path, settings):
    from telemetry_site.guard import BODY_PREFIX, body_lifetime, sweep_bodies

    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.HTTP_BODY_GRACE = 10.0
    settings.HTTP_BODY_MIN_RATE = 16384
    settings.INGEST_MAX_UPLOAD_BYTES = 100 * 16384
    settings.INGEST_JOB_STALE = 600.0
    assert body_lifetime() == 710.0
    old = _aged(tmp_path / f"{BODY_PREFIX}old", 711)
    young = _aged(tmp_path / f"{BODY_PREFIX}young", 700)
    (tmp_path / f"{BODY_PREFIX}folder").mkdir()
    os.utime(tmp_path / f"{BODY_PREFIX}folder", (0, 0))
    assert sweep_bodies() == 1
    assert not old.exists() and young.exists() and (tmp_path / f"{BODY_PREFIX}folder").is_dir()
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path / "missing")
    assert sweep_bodies() == 0


def test_a_multipart_file_part_is_named_as_a_body_and_swept_when_left(tmp_path, settings, rf):
    """Django writes a file part past FILE_UPLOAD_MAX_MEMORY_SIZE to disk; a gateway killed
    while it parsed one would leave it. It carries the bodies' prefix, so the sweep takes it."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from telemetry_site.guard import BODY_PREFIX, body_lifetime, sweep_bodies

    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    big = b"timestamp,gpu_id\n" + b"0" * (settings.FILE_UPLOAD_MAX_MEMORY_SIZE + 1)
    name = "export." + "c" * 300  # a client's extension is not kept: too long for a name
    request = rf.post("/api/v1/uploads", {"file": SimpleUploadedFile(name, big)})
    part = request.FILES["file"]
    path = Path(part.temporary_file_path())
    assert path.parent == tmp_path
    assert path.name.startswith(BODY_PREFIX) and path.name.endswith(".upload")
    assert path.read_bytes() == big
    assert sweep_bodies() == 0  # a part as young as a live request is never touched
    then = time.time() - body_lifetime() - 1
    os.utime(path, (then, then))  # as if its gateway had been killed long ago
    assert sweep_bodies() == 1 and not path.exists()
    part.close()  # Django's close allows for a file gone
