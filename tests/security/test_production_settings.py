"""Production settings: check --deploy passes, and a missing secret stops the process."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

from telemetry_site.env import with_password

REPO = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_with_production_settings():
    done = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_HTTPS="true",
        DJANGO_ALLOWED_HOSTS="telemetry.example",
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "no issues" in done.stdout


def test_check_deploy_complains_without_https_settings():
    done = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="telemetry.example",
    )
    assert done.returncode != 0 and "SECURE_HSTS_SECONDS" in done.stderr + done.stdout


def test_missing_secret_key_stops_the_process_naming_the_variable():
    done = manage("check", DJANGO_DEBUG="false")
    assert done.returncode != 0 and "DJANGO_SECRET_KEY" in done.stderr


def test_bad_boolean_is_refused_not_guessed():
    done = manage("check", DJANGO_DEBUG="yes please")
    assert done.returncode != 0 and "DJANGO_DEBUG" in done.stderr


def test_secret_file_variant_is_read(tmp_path):
    secret = tmp_path / "key"
    secret.write_text(secrets.token_urlsafe(50) + "\n")
    done = manage("check", DJANGO_DEBUG="false", DJANGO_SECRET_KEY_FILE=str(secret))
    assert done.returncode == 0, done.stderr[-2000:]


def test_redis_password_goes_into_urls_without_one():
    assert with_password("redis://redis:6379/0", "p@ss/w") == "redis://:p%40ss%2Fw@redis:6379/0"
    assert with_password("redis://:given@redis:6379/0", "other") == "redis://:given@redis:6379/0"
    assert with_password("redis://redis:6379/0", "") == "redis://redis:6379/0"
