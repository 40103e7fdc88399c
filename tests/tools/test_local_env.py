"""`make run`'s local env file: written whole, read by every entry point where the
environment has no value, and busy ports reported instead of silently reused."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from telemetry_site import localenv
from tools import run

REPO = Path(__file__).resolve().parents[2]


def test_the_file_round_trips_awkward_values_and_is_private(tmp_path):
    path = tmp_path / "var" / "local.env"
    values = {
        "DJANGO_SECRET_KEY": "a b'c\"$d#e\\f\nend",
        "ETCD_ENDPOINTS": "127.0.0.1:1",
        "REDIS_URL": "redis://:p$w#@127.0.0.1:2/0",
    }
    run.write_env_file({**values, "NOT_SHARED": "x"}, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert localenv.read(path) == values  # what every entry point reads
    plain = tmp_path / "plain.env"  # no quote nor backslash: a shell can source it too
    run.write_env_file({"REDIS_URL": values["REDIS_URL"], "PORT": "9"}, plain)
    sourced = subprocess.run(
        ["bash", "-c", f'. {plain} && printf %s "$REDIS_URL"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == values["REDIS_URL"]


def test_entry_points_take_the_file_where_the_environment_has_nothing(tmp_path):
    path = tmp_path / "local.env"
    run.write_env_file({"DJANGO_DEBUG": "true", "ETCD_PREFIX": "/from-file"}, path)
    code = (
        "import telemetry_site; from django.conf import settings; "
        "print(settings.DEBUG, settings.ETCD_PREFIX)"
    )
    base = {"PATH": os.environ["PATH"], "TELEMETRY_ENV_FILE": str(path), "PYTHONPATH": str(REPO)}
    base["DJANGO_SETTINGS_MODULE"] = "telemetry_site.settings"
    alone = subprocess.run(
        [sys.executable, "-c", code], env=base, capture_output=True, text=True, cwd=REPO
    )
    assert alone.stdout.split() == ["True", "/from-file"], alone.stderr[-2000:]
    mine = subprocess.run(
        [sys.executable, "-c", code],
        env={**base, "ETCD_PREFIX": "/mine"},
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert mine.stdout.split() == ["True", "/mine"], mine.stderr[-2000:]


def test_a_named_file_that_does_not_exist_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TELEMETRY_ENV_FILE", str(tmp_path / "missing.env"))
    with pytest.raises(ImproperlyConfigured, match=r"missing\.env"):
        localenv.load()


@pytest.mark.parametrize(
    ("variable", "hint"), [("ETCD_PORT", "ETCD_ENDPOINTS="), ("REDIS_PORT", "REDIS_URL=")]
)
def test_a_busy_store_port_is_reported_and_nothing_starts(variable, hint):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started: list = []
        with pytest.raises(run.PortBusy) as refused:
            run._start_stores({variable: str(port), "PORT": "0"}, started)
    message = str(refused.value)
    assert f"127.0.0.1:{port} ({variable}) is already in use" in message
    assert f"set {variable} to a free port" in message and hint in message
    assert started == []


def test_celery_takes_its_broker_from_the_file(tmp_path):
    path = tmp_path / "local.env"
    run.write_env_file({"DJANGO_DEBUG": "true", "REDIS_URL": "redis://127.0.0.1:1/7"}, path)
    code = "from telemetry_site.celery import app; print(app.conf.broker_url)"
    env = {"PATH": os.environ["PATH"], "TELEMETRY_ENV_FILE": str(path), "PYTHONPATH": str(REPO)}
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=REPO
    )
    assert shown.stdout.strip() == "redis://127.0.0.1:1/7", shown.stderr[-2000:]
