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

from tools import processes, services

REPO = Path(__file__).resolve().parents[1]
VAR = REPO / "var"
PY = sys.executable


def _env() -> dict[str, str]:
    env = dict(os.environ)
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


def _start_stores(env: dict[str, str], started: list[services.Service]) -> None:
    if not env.get("ETCD_ENDPOINTS"):
        port = int(env.get("ETCD_PORT", "2379"))
        if services.is_port_free("127.0.0.1", port):
            started.append(services.start_etcd(VAR / "etcd", port=port, peer_port=port + 1))
            print(
                f"etcd started on 127.0.0.1:{port} (data in var/etcd, log {started[-1].log_path})"
            )
        else:
            print(f"127.0.0.1:{port} is taken: using the etcd already listening there")
        env["ETCD_ENDPOINTS"] = f"127.0.0.1:{port}"
    if not (env.get("CELERY_BROKER_URL") or env.get("REDIS_URL")):
        port = int(env.get("REDIS_PORT", "6379"))
        if services.is_port_free("127.0.0.1", port):
            started.append(services.start_redis(VAR / "redis", port=port, appendonly=True))
            print(f"redis started on 127.0.0.1:{port} (data in var/redis)")
        else:
            print(f"127.0.0.1:{port} is taken: using the Redis already listening there")
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"


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
