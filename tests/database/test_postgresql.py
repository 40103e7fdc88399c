"""PostgreSQL through DATABASE_URL: users, tokens and the inventory shared by every process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import requests

from tests.api.api_support import generated
from tests.conftest import REPO, service_env
from tests.helpers import wait_for
from tools import processes, services


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_inventory_and_admin_tests_pass_on_postgresql(postgres: services.Service) -> None:
    """The same test files as on SQLite, in a pytest run whose DATABASE_URL is PostgreSQL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env["DATABASE_URL"] = postgres.url
    files = ["tests/admin/test_admin_inventory.py", "tests/admin/test_admin_jobs.py"]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", *files],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    summary = done.stdout.strip().splitlines()[-1]
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, summary
    assert "postgresql" in check_engine(postgres)


def check_engine(postgres: services.Service) -> str:
    env = {**os.environ, "DATABASE_URL": postgres.url}
    code = "from django.db import connection; print(connection.vendor)"
    return manage(env, "shell", "-c", code)


def test_workers_and_gateways_share_users_tokens_and_the_inventory(
    postgres: services.Service, tmp_path: Path
) -> None:
    """A token made by one process authorises uploads at two gateways; the GPUs a worker
    mirrors are what the other gateway's admin lists."""
    services.ensure_binaries()
    with (
        services.start_etcd(tmp_path / "etcd") as etcd,
        services.start_redis(tmp_path / "redis") as redis,
    ):
        env = service_env(
            etcd.url,
            redis.url,
            DATABASE_URL=postgres.url,
            ETCD_PREFIX="/pg-shared",
            TELEMETRY_WRITE_AUTH="true",
            DJANGO_SUPERUSER_USERNAME="ops",
            DJANGO_SUPERUSER_PASSWORD="a-long-test-password-1",
            DJANGO_SUPERUSER_EMAIL="ops@example.com",
        )
        manage(env, "migrate", "--noinput", "-v", "0")
        manage(env, "createsuperuser", "--noinput")
        token = manage(env, "api_token", "ops").strip()
        worker = processes.start_worker(tmp_path / "worker.log", env, 1)
        one = processes.start_gateway(tmp_path / "gw1.log", env)
        two = processes.start_gateway(tmp_path / "gw2.log", env)
        try:
            base1 = f"http://127.0.0.1:{one.port}"
            base2 = f"http://127.0.0.1:{two.port}"
            data = generated(hosts=1, gpus_per_host=3, samples=4, seed=61, cluster_prefix="pg")
            csv = {"Content-Type": "text/csv"}
            auth = {"Authorization": f"Bearer {token}", **csv}
            for base in (base1, base2):
                url = f"{base}/api/v1/csv/upload"
                refused = requests.post(url, data=data, headers=csv, timeout=30)
                assert refused.status_code in (401, 403), refused.text
                answer = requests.post(url, data=data, headers=auth, timeout=30)
                assert answer.status_code == 202, answer.text
            job = answer.json()["id"]
            wait_for(
                lambda: (
                    requests.get(f"{base1}/api/v1/ingest/jobs/{job}", timeout=10).json()["state"]
                    == "done"
                ),
                60,
                "the upload stored",
            )
            uuids = {
                g["uuid"]
                for g in requests.get(f"{base2}/api/v1/gpus", timeout=10).json()["results"]
            }
            assert len(uuids) == 3
            admin = requests.Session()
            login = f"{base2}/admin/login/"
            admin.get(login, timeout=10)
            form = {
                "username": "ops",
                "password": "a-long-test-password-1",
                "csrfmiddlewaretoken": admin.cookies["csrftoken"],
                "next": "/admin/gpus/gpu/",
            }
            page = admin.post(login, data=form, headers={"Referer": login}, timeout=10)
            assert page.status_code == 200 and "/admin/login/" not in page.url, page.text[:500]
            wait_for(
                lambda: all(
                    u in admin.get(f"{base2}/admin/gpus/gpu/", timeout=10).text for u in uuids
                ),
                30,
                "the worker's mirror in the other gateway's admin",
            )
        finally:
            for svc in (two, one, worker):
                svc.stop()
