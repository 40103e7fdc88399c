"""tools.services against real etcd and redis-server processes."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import wait_for
from tools.services import (
    Service,
    ensure_binaries,
    free_port,
    is_port_free,
    start_etcd,
    start_redis,
    wait_for_port,
)

try:
    ensure_binaries()
except RuntimeError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(str(exc), allow_module_level=True)


@pytest.fixture
def started() -> Iterator[list[Service]]:
    """Services appended here are stopped even if the test fails."""
    services: list[Service] = []
    yield services
    for service in services:
        service.stop()


def _etcd_health(port: int) -> dict[str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/health")
        return json.loads(conn.getresponse().read())
    finally:
        conn.close()


def _redis_command(port: int, *parts: str) -> bytes:
    wire = f"*{len(parts)}\r\n" + "".join(f"${len(p)}\r\n{p}\r\n" for p in parts)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(wire.encode())
        return sock.recv(1024)


def _refuses(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536
    assert is_port_free("127.0.0.1", port)


def test_etcd_starts_answers_health_and_frees_port(
    tmp_path: Path, started: list[Service], monkeypatch: pytest.MonkeyPatch
) -> None:
    # etcd exits when an ETCD_* variable duplicates a flag; the app's env has some.
    monkeypatch.setenv("ETCD_NAME", "should-be-ignored")
    monkeypatch.setenv("ETCD_ENDPOINTS", "127.0.0.1:1")
    etcd = start_etcd(tmp_path / "etcd")
    started.append(etcd)

    assert etcd.url == f"127.0.0.1:{etcd.port}"
    assert _etcd_health(etcd.port)["health"] == "true"
    assert etcd.log_path.is_file()
    assert os.getpgid(etcd.proc.pid) == etcd.proc.pid  # own process group

    etcd.stop()
    assert etcd.proc.returncode is not None  # reaped: no zombie
    assert _refuses(etcd.port)
    assert is_port_free("127.0.0.1", etcd.port)
    etcd.stop()  # idempotent


def test_etcd_restarts_on_same_data_dir(tmp_path: Path, started: list[Service]) -> None:
    first = start_etcd(tmp_path / "etcd")
    started.append(first)
    first.stop()
    second = start_etcd(tmp_path / "etcd", port=first.port)
    started.append(second)
    assert _etcd_health(second.port)["health"] == "true"


def test_redis_answers_ping_and_stop_ends_it(tmp_path: Path, started: list[Service]) -> None:
    redis = start_redis(tmp_path / "redis")
    started.append(redis)

    assert redis.url == f"redis://127.0.0.1:{redis.port}/0"
    assert _redis_command(redis.port, "PING") == b"+PONG\r\n"
    assert _redis_command(redis.port, "CONFIG", "GET", "appendonly").endswith(b"no\r\n")

    redis.stop()
    assert redis.proc.returncode == 0
    assert _refuses(redis.port)
    redis.stop()


def test_redis_appendonly(tmp_path: Path, started: list[Service]) -> None:
    redis = start_redis(tmp_path / "redis", appendonly=True)
    started.append(redis)
    assert _redis_command(redis.port, "CONFIG", "GET", "appendonly").endswith(b"yes\r\n")


def test_kill_is_immediate_and_reaps(tmp_path: Path, started: list[Service]) -> None:
    redis = start_redis(tmp_path / "redis")
    started.append(redis)
    redis.kill()
    assert redis.proc.returncode == -9
    redis.stop()  # no-op after kill


def test_etcd_on_busy_port_raises_fast(tmp_path: Path, started: list[Service]) -> None:
    first = start_etcd(tmp_path / "a")
    started.append(first)

    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=rf"etcd: .*127\.0\.0\.1:{first.port} already in use"):
        start_etcd(tmp_path / "b", port=first.port)
    assert time.monotonic() - t0 < 5
    assert first.running  # the original is untouched


def test_redis_on_busy_port_raises_fast(tmp_path: Path, started: list[Service]) -> None:
    first = start_redis(tmp_path / "a")
    started.append(first)
    with pytest.raises(RuntimeError, match=r"redis: .*already in use"):
        start_redis(tmp_path / "b", port=first.port)


def test_etcd_that_exits_reports_log_tail(tmp_path: Path) -> None:
    t0 = time.monotonic()
    with pytest.raises(RuntimeError) as info:
        start_etcd(tmp_path / "etcd", extra_args=["--no-such-flag"])
    message = str(info.value)
    assert message.startswith("etcd: exited with code")
    assert "no-such-flag" in message  # quoted from the log
    assert time.monotonic() - t0 < 10


def test_wait_for_port_deadline_names_service(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("line one\nboom\n")
    port = free_port()
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"(?s)^thing: .*deadline.*boom"):
        wait_for_port("127.0.0.1", port, 0.3, name="thing", log_path=log)
    assert time.monotonic() - t0 < 3


def test_wait_for_port_sees_exited_process() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    with pytest.raises(RuntimeError, match="exited with code 0"):
        wait_for_port("127.0.0.1", free_port(), 30, proc)


def _gone(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by init counts as exited)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            return any(line.split() == ["State:", "Z", "(zombie)"] for line in status)
    except FileNotFoundError:
        return True


def test_a_service_gets_sigterm_when_the_process_that_started_it_dies(tmp_path: Path) -> None:
    """A launcher killed hard (SIGKILL: no cleanup runs) leaves no service behind: each one
    asks for SIGTERM when its parent dies (setpriv --pdeathsig, no Python in the child)."""
    # the launcher clears its signal mask first: a mask is inherited across fork and exec,
    # and somewhere in the whole suite SIGTERM ends up blocked in the test process
    code = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "signal.pthread_sigmask(signal.SIG_SETMASK, [])\n"
        "signal.signal(signal.SIGTERM, signal.SIG_DFL)\n"
        "from tools import services\n"
        "tmp = Path(sys.argv[1])\n"
        "svc = services._spawn('sleeper', ['sleep', '120'], data_dir=tmp, "
        "log_path=tmp / 'sleeper.log', port=0, url='', env=None)\n"
        "first = open(f'/proc/{svc.proc.pid}/cmdline', 'rb').read().split(b'\\0')[0]\n"
        "print(svc.proc.pid, first.decode(), flush=True)\n"
        "time.sleep(120)\n"
    )
    repo = Path(__file__).resolve().parents[2]
    launcher = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, cwd=repo
    )
    try:
        pid_text, running = launcher.stdout.readline().decode().split()  # type: ignore[union-attr]
        pid = int(pid_text)
        # `_spawn` must not return before the signal is asked for: it returned when
        # `setpriv` was exec'd, and up to 1 launcher in 5 killed then left the service
        # running on a busy machine (CI met it once); the launcher looked at once
        assert running == "sleep"
        launcher.kill()
        launcher.wait(10)
        wait_for(lambda: _gone(pid), 10, "the service's end after its launcher was killed")
    finally:
        launcher.kill()
