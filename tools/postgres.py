"""Start a throwaway local PostgreSQL (stdlib only), like tools/services.py does etcd and Redis.

Debian's `postgresql` package puts the server under /usr/lib/postgresql/<major>/bin (not on
PATH). The cluster is made with `initdb` in a fresh folder, trusts connections from
127.0.0.1 only (a test server, never exposed) and listens on a free port. PostgreSQL
refuses to run as root: when this process is root, the server runs as the `postgres`
user (the package creates it), in a folder of its own under the system temp folder
(a pytest or mkdtemp folder is private to root); `service.data_dir` is that folder,
for the caller to remove after stopping the server.

The returned `services.Service` has `url` = `postgres://postgres@127.0.0.1:PORT/telemetry`
(a DATABASE_URL); the server dies with this process, like every service started here.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from tools import services

START_DEADLINE_S = 60.0
DATABASE = "telemetry"
APT_HINT = "sudo apt-get install -y postgresql"


def bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _major(path: str) -> int:
    part = Path(path).parents[1].name
    return int(part) if part.isdigit() else 0


def _as_user() -> dict:
    """Popen arguments that run the server as `postgres` when we are root."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError(f"running as root and no `postgres` user; {APT_HINT}") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def _server_dir(base_dir: Path) -> Path:
    """Where the server's files go: `base_dir`, or a postgres-owned temp folder as root."""
    if os.geteuid() != 0:
        return base_dir
    pw = pwd.getpwnam("postgres")
    path = Path(tempfile.mkdtemp(prefix="telemetry-pg-"))
    os.chown(path, pw.pw_uid, pw.pw_gid)
    return path


def start_postgres(base_dir: Path, port: int | None = None) -> services.Service:
    """initdb in `base_dir/data` (when empty), start the server, create the database.

    Returns once the database accepts connections; raises RuntimeError naming the
    problem (binaries missing, start failed with the log's tail) otherwise.
    """
    binaries = bin_dir()
    if binaries is None:
        raise RuntimeError(f"PostgreSQL binaries not found; install with: {APT_HINT}")
    port = port if port is not None else services.free_port()
    base_dir.mkdir(parents=True, exist_ok=True)
    user = _as_user()
    server_dir = _server_dir(base_dir)
    data = server_dir / "data"
    sockets = server_dir / "sockets"
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [str(binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"],
            check=True,
            capture_output=True,
            timeout=120,
            **user,
        )
    log_path = base_dir / "postgres.log"
    argv = [str(binaries / "postgres"), "-D", str(data), "-p", str(port)]
    argv += ["-c", f"listen_addresses={services.LOCALHOST}", "-k", str(sockets)]
    argv += ["-c", "fsync=off", "-c", "max_connections=200"]  # a test server: speed over safety
    if not sockets.exists():
        subprocess.run(["mkdir", str(sockets)], check=True, **user)
    service = services.spawn_as(
        "postgres", argv, data_dir=server_dir, log_path=log_path, port=port, popen_kwargs=user
    )
    service.url = f"postgres://postgres@{services.LOCALHOST}:{port}/{DATABASE}"
    try:
        _wait_ready(binaries, port, service)
        _create_database(binaries, port)
    except BaseException:
        service.kill()
        raise
    return service


def _wait_ready(binaries: Path, port: int, service: services.Service) -> None:
    deadline = time.monotonic() + START_DEADLINE_S
    probe = [str(binaries / "pg_isready"), "-h", services.LOCALHOST, "-p", str(port), "-q"]
    while subprocess.run(probe, check=False, timeout=10).returncode != 0:
        if service.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"postgres did not start; last lines:\n{service.log_tail()}")
        time.sleep(services.POLL_INTERVAL_S)


def _create_database(binaries: Path, port: int) -> None:
    argv = [str(binaries / "createdb"), "-h", services.LOCALHOST, "-p", str(port)]
    done = subprocess.run(
        [*argv, "-U", "postgres", DATABASE], check=False, capture_output=True, timeout=60
    )
    if done.returncode != 0 and b"already exists" not in done.stderr:
        raise RuntimeError(f"createdb failed: {done.stderr.decode(errors='replace')}")
