"""`make run`: the whole system on one machine, stopped with Ctrl-C.

Starts etcd and Redis under ./var/ unless ETCD_ENDPOINTS / CELERY_BROKER_URL
(or REDIS_URL) point elsewhere, migrates, starts a Celery worker and the ASGI
server, loads the bundled samples, prints the URLs, then waits.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from dotenv import dotenv_values

from tools import processes, services

REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var"
ENV_FILE = VAR / "local.env"
PY = sys.executable
# What the local env file keeps, when set: enough for manage.py, celery and uvicorn
# started by hand to reach the same stores with the same keys.
SHARED = (
    "DJANGO_SECRET_KEY",
    "DJANGO_DEBUG",
    "ETCD_ENDPOINTS",
    "ETCD_PREFIX",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "CHANNEL_REDIS_URL",
    "DATABASE_URL",
    "PORT",
    "PROMETHEUS_MULTIPROC_DIR",
)


ENV_FILE_HEADER = (
    "# Written by `make run` (tools/run.py) at each start: the settings of the stack it\n"
    "# started. manage.py, celery and uvicorn read it; variables set in the environment win.\n"
    "# The API token of user admin is in var/api-token.txt.\n"
)


class PortBusy(RuntimeError):
    """A port `make run` should listen on is taken; the message says what to do."""


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["DJANGO_SECRET_KEY"] = env.get("DJANGO_SECRET_KEY") or _secret_key()
    env.setdefault("DJANGO_DEBUG", "true")
    env.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
    env["PYTHONPATH"] = str(REPO)
    # One metrics folder for every process started here, emptied each run: /metrics on
    # the gateway then adds up the gateway, the worker's children and the ingests.
    metrics_dir = VAR / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
    return env


def _secret_key() -> str:
    """The previous run's key (sessions and admin logins survive a restart), else a new one."""
    previous = dotenv_values(ENV_FILE) if ENV_FILE.is_file() else {}
    return previous.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)


def write_env_file(env: dict[str, str], path: Path = ENV_FILE) -> None:
    """Keep the stack's settings where a second terminal's commands find them.

    Read back by telemetry_site.localenv in every process (variables set in the
    environment win). Mode 600, since it holds the secret key; written whole to a
    temporary file and renamed, so no reader sees half of it. Values are
    single-quoted by dotenv's rules (a shell can source the file too, unless a
    value holds a quote or a backslash).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(ENV_FILE_HEADER)
        for name in SHARED:
            if env.get(name):
                fh.write(f"{name}={_quoted(env[name])}\n")
    os.replace(tmp, path)


def _quoted(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _free_port(variable: str, default: int, env: dict[str, str], what: str) -> int:
    """The port to start `what` on; PortBusy when something already listens there.

    A busy port is never silently reused: the server there may be another
    project's, holding other data, or an older run's that nothing will stop.
    """
    port = _port(env, variable, default)
    if not services.is_port_free("127.0.0.1", port):
        raise PortBusy(
            f"127.0.0.1:{port} ({variable}) is already in use, so {what} cannot start there. "
            f"Stop what listens there (`ss -ltnp 'sport = :{port}'` shows it), "
            f"or set {variable} to a free port{_use_existing(what, port)}."
        )
    return port


def _port(env: dict[str, str], variable: str, default: int) -> int:
    raw = env.get(variable, "").strip() or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise PortBusy(f"{variable}={raw!r} is not a port number")
    return int(raw)


def _use_existing(what: str, port: int) -> str:
    if what == "etcd":
        return f", or ETCD_ENDPOINTS=127.0.0.1:{port} to use that etcd"
    if what == "redis":
        return f", or REDIS_URL=redis://127.0.0.1:{port}/0 to use that Redis"
    return ""


def _start_stores(env: dict[str, str], started: list[services.Service]) -> None:
    etcd_port = redis_port = None
    # Every port is checked before anything starts: nothing to undo on a busy one.
    if not env.get("ETCD_ENDPOINTS"):
        etcd_port = _free_port("ETCD_PORT", 2379, env, "etcd")
    if not (env.get("CELERY_BROKER_URL") or env.get("REDIS_URL")):
        redis_port = _free_port("REDIS_PORT", 6379, env, "redis")
    _free_port("PORT", 8000, env, "gateway")
    if etcd_port is not None:
        started.append(services.start_etcd(VAR / "etcd", port=etcd_port, peer_port=etcd_port + 1))
        print(f"etcd started on 127.0.0.1:{etcd_port} (data in var/etcd)")
        env["ETCD_ENDPOINTS"] = f"127.0.0.1:{etcd_port}"
    if redis_port is not None:
        started.append(services.start_redis(VAR / "redis", port=redis_port, appendonly=True))
        print(f"redis started on 127.0.0.1:{redis_port} (data in var/redis)")
        env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"


def _manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([PY, "manage.py", *args], cwd=REPO, env=env, check=True)


def _ensure_admin(env: dict[str, str]) -> str:
    """Create the local admin user `admin` once; returns how to log in.

    The password is random, made on first use and kept in var/admin-password.txt
    (mode 600). Production creates its user from DJANGO_SUPERUSER_* instead
    (docs/DASHBOARD.md).
    """
    password_file = VAR / "admin-password.txt"
    made = not password_file.exists()
    if not made:
        password = password_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(15)
        fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
    argv = ["createsuperuser", "--noinput", "--username", "admin", "--email", "admin@localhost"]
    done = subprocess.run(
        [PY, "manage.py", *argv],
        cwd=REPO,
        env={**env, "DJANGO_SUPERUSER_PASSWORD": password},
        capture_output=True,
        text=True,
    )
    if done.returncode != 0 and "already taken" not in done.stderr:
        raise RuntimeError(f"could not create the admin user: {done.stderr.strip()}")
    if done.returncode != 0 and made:
        return "user admin existed already: set its password with `manage.py changepassword admin`"
    return f"user admin, password in {password_file.relative_to(REPO)}"


def _start_apps(env: dict[str, str], started: list[services.Service]) -> int:
    port = int(env.get("PORT", "8000"))
    # embedded beat: the periodic compaction (one worker only; see docs/OPERATIONS.md)
    beat = ["--beat", "--schedule", str(VAR / "celerybeat-schedule")]
    workers = int(env.get("WORKERS", "2"))
    started.append(processes.start_worker(VAR / "worker.log", env, workers, extra_args=beat))
    print(f"worker started (log var/worker.log, {env.get('WORKERS', '2')} processes)")
    host = env.get("HOST", "127.0.0.1")
    started.append(processes.start_gateway(VAR / "gateway.log", env, port, host))
    print(f"gateway started on port {port} (log var/gateway.log)")
    return port


def main() -> int:
    VAR.mkdir(exist_ok=True)
    services.ensure_binaries()
    env = _env()
    started: list[services.Service] = []
    try:
        _start_stores(env, started)
        write_env_file(env)
        print(f"settings for commands in other terminals: {ENV_FILE.relative_to(REPO)}")
        _manage(env, "migrate", "--no-input", "-v", "0")
        admin_login = _ensure_admin(env)
        token_file = VAR / "api-token.txt"
        _manage(env, "api_token", "admin", "--write", str(token_file))
        port = _start_apps(env, started)
        _manage(
            env,
            "ingest",
            "--wait",
            "samples/dcgm_sample.csv",
            "samples/wide_sample.csv",
            "--cluster",
            "demo",
        )
        # Workers mirror GPUs into the admin's table as they register them; a sync also
        # picks up GPUs stored by an earlier run into a database made since.
        _manage(env, "sync_inventory")
        base = f"http://127.0.0.1:{port}"
        print(
            f"\nReady. Open:\n  {base}/  (dashboard)\n  {base}/admin/  ({admin_login})"
            f"\n  {base}/api/v1/gpus\n  {base}/api/v1/hosts\n  {base}/api/v1/clusters"
            f"\n  {base}/swagger/\n  {base}/health  {base}/ready\n"
            f'Upload more:  curl -H "Authorization: Bearer $(cat {token_file.relative_to(REPO)})" '
            f"-F file=@your.csv {base}/api/v1/csv/upload\n"
            "Press Ctrl-C to stop everything started here."
        )
        while True:
            signal.pause()
    except PortBusy as exc:
        print(f"make run: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping...")
    finally:
        for svc in reversed(started):
            svc.stop()
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    sys.exit(main())
