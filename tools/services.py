"""Start and stop throwaway local etcd and Redis processes (stdlib only).

Used by the dev launcher (``make run``) and by the pytest fixtures, so it must not
import anything outside the standard library.

Contracts shared by every ``start_*`` function:

* The child runs in its own session (``start_new_session=True``) and gets SIGTERM when
  its parent dies (``PR_SET_PDEATHSIG``, Linux), from the moment ``_spawn`` returns: a
  Ctrl-C sent to the launcher's process group does not reach it, so the launcher can
  stop services in order. A launcher that ignores or blocks SIGTERM passes that on to
  its services (exec keeps both), and they then outlive it.
* stdout and stderr go to a log file next to the data directory. The file is
  opened in append mode; error messages quote only the part written by this start.
* The function returns only once the service answers a real protocol request
  (etcd ``/health``, Redis ``PING``); otherwise it kills what it started and raises
  ``RuntimeError`` naming the service and quoting the tail of its log.
* A port that is already taken is reported at once, before anything is spawned.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOCALHOST = "127.0.0.1"
ETCD_START_DEADLINE_S = 30.0
REDIS_START_DEADLINE_S = 15.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_LINES = 30
LOG_TAIL_MAX_CHARS = 4000
# 8 GiB is etcd's documented recommended maximum; larger values only log a warning.
ETCD_QUOTA_BACKEND_BYTES = 8 * 1024**3

APT_HINT = "sudo apt-get install -y etcd-server redis-server"


@dataclass
class Service:
    """A running local service started by this module.

    ``url`` is what clients are configured with: ``127.0.0.1:PORT`` for etcd (the
    ETCD_ENDPOINTS form), ``redis://127.0.0.1:PORT/0`` for Redis.
    """

    name: str
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    data_dir: Path
    log_path: Path
    url: str
    log_offset: int = field(default=0, repr=False)

    @property
    def running(self) -> bool:
        """True while the process has not exited."""
        return self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, wait up to ``timeout`` seconds, then SIGKILL. Idempotent.

        Always reaps the child, so no zombie is left behind.
        """
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the service's whole process group and reap it (fault tests)."""
        _kill_group(self.proc)

    def log_tail(self) -> str:
        """Last lines this start wrote to the log file."""
        return _read_log_tail(self.log_path, self.log_offset)

    def __enter__(self) -> Service:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def ensure_binaries() -> None:
    """Raise RuntimeError with the install command if etcd or redis-server is missing."""
    missing = [b for b in ("etcd", "redis-server") if shutil.which(b) is None]
    if missing:
        raise RuntimeError(f"{', '.join(missing)} not found on PATH; install with: {APT_HINT}")


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port that was free a moment ago.

    The port is released before returning, so another process may grab it; callers
    that start a server right away lose that race only in practice-irrelevant cases,
    and ``start_*`` reports it clearly if they do.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def is_port_free(host: str, port: int) -> bool:
    """True if nothing is bound to ``host:port``.

    SO_REUSEADDR is set, as etcd and Redis do, so that sockets of a stopped server
    lingering in TIME_WAIT do not count as "busy".
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def wait_for_port(
    host: str,
    port: int,
    deadline_s: float,
    proc: subprocess.Popen[bytes] | None = None,
    *,
    name: str | None = None,
    log_path: Path | None = None,
    log_offset: int = 0,
) -> None:
    """Block until ``host:port`` accepts a TCP connection.

    ``deadline_s`` is a duration in seconds from now. Raises RuntimeError if it
    passes, or as soon as ``proc`` (when given) exits. The message names the service
    (``name``, else the program of ``proc``, else ``host:port``) and quotes the tail
    of ``log_path`` when given.
    """
    _poll_until(
        lambda: _tcp_connects(host, port),
        what=f"TCP {host}:{port}",
        deadline=time.monotonic() + deadline_s,
        proc=proc,
        name=name or _default_name(proc, host, port),
        log_path=log_path,
        log_offset=log_offset,
    )


def start_etcd(
    data_dir: Path,
    port: int | None = None,
    peer_port: int | None = None,
    name: str = "default",
    extra_args: Sequence[str] = (),
) -> Service:
    """Start a single-member etcd on 127.0.0.1 and wait until it reports healthy.

    ``name`` is the etcd member name. The log goes to ``data_dir/../etcd-<name>.log``
    (``--log-outputs`` to a file is unreliable in etcd 3.4). Returns once the client
    port answers and ``GET /health`` says ``{"health":"true"}``, within 30 s.
    """
    client_port, peer_port = _pick_ports(port, peer_port)
    _require_free("etcd", LOCALHOST, client_port, peer_port)
    peer_url = f"http://{LOCALHOST}:{peer_port}"
    # etcd reads every ETCD_* variable as a flag and exits ("conflicting environment
    # variable ... is shadowed") when one duplicates a flag we pass; the app's own
    # ETCD_ENDPOINTS would at least log a warning. So the child never sees them.
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ETCD_") or k == "ETCD_UNSUPPORTED_ARCH"
    }
    argv = [
        *_etcd_member_argv(
            name, data_dir, client_port, peer_port, f"{name}={peer_url}", "etcd-cluster", "new"
        ),
        *extra_args,
    ]
    service = _spawn(
        "etcd",
        argv,
        data_dir=data_dir,
        log_path=data_dir.parent / f"etcd-{name}.log",
        port=client_port,
        url=f"{LOCALHOST}:{client_port}",
        env=env,
    )
    _await_ready(service, ETCD_START_DEADLINE_S, "GET /health", _etcd_healthy)
    return service


def start_redis(data_dir: Path, port: int | None = None, appendonly: bool = False) -> Service:
    """Start redis-server on 127.0.0.1 and wait until it answers PING, within 15 s.

    Without ``appendonly`` nothing is persisted (``--save ""``). The log goes to
    ``data_dir/../redis-<port>.log``.
    """
    port = port if port is not None else free_port()
    _require_free("redis", LOCALHOST, port)
    log_path = data_dir.parent / f"redis-{port}.log"
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        LOCALHOST,
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes" if appendonly else "no",
        "--daemonize",
        "no",
        "--logfile",
        str(log_path),
    ]
    if not appendonly:
        argv += ["--save", ""]
    service = _spawn(
        "redis",
        argv,
        data_dir=data_dir,
        log_path=log_path,
        port=port,
        url=f"redis://{LOCALHOST}:{port}/0",
        env=None,
    )
    _await_ready(service, REDIS_START_DEADLINE_S, "PING", _redis_pongs)
    return service


# --- internals -------------------------------------------------------------------


def _pick_ports(port: int | None, peer_port: int | None) -> tuple[int, int]:
    """Fill in missing ports with free ones that differ from each other."""
    client = port if port is not None else free_port()
    peer = peer_port
    while peer is None or peer == client:
        peer = free_port()
    return client, peer


def _require_free(name: str, host: str, *ports: int) -> None:
    """Fail fast on a busy port.

    Without this the readiness probe could succeed against the *other* process
    (e.g. an etcd already on that port answers /health) before ours dies.
    """
    busy = [p for p in ports if not is_port_free(host, p)]
    if busy:
        listed = ", ".join(f"{host}:{p}" for p in busy)
        raise RuntimeError(
            f"{name}: cannot start, {listed} already in use "
            "(stop whatever listens there or pick another port)"
        )


def _die_with_parent() -> None:
    """In the child, before exec: get SIGTERM when the parent dies (Linux).

    The child has its own session, so a signal to the parent's group does not
    reach it; without this, a test run or launcher killed hard would leave etcd,
    Redis and workers running. Used only where util-linux's `setpriv` is missing
    (`_with_death_signal`): Python code between fork and exec is unsafe in a
    process with threads, and a test process has gRPC's.
    """
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _with_death_signal(argv: list[str]) -> tuple[list[str], dict]:
    """`argv` and the Popen arguments that make it get SIGTERM when its parent dies:
    `setpriv --pdeathsig` in front (no Python runs in the forked child, so a parent
    with threads, gRPC's among them, cannot deadlock or crash it between fork and
    exec: a gateway started by the tests once died before serving with gRPC's
    "epoll_wait error: Bad file descriptor", most likely there), else
    `_die_with_parent` as the child's preexec_fn."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return argv, {"preexec_fn": _die_with_parent}
    return [setpriv, "--pdeathsig", "TERM", "--", *argv], {}


_PR_SET_PDEATHSIG = 1
HANDOVER_DEADLINE_S = 5.0


def _await_handover(proc: subprocess.Popen[bytes], setpriv: str) -> None:
    """Return once `setpriv` has set the death signal and exec'd the service.

    Popen returns when `setpriv` itself is exec'd, before it asks for the signal: a
    launcher killed in that gap left the service running for good (up to 20 times in
    100 when killed right after Popen on a busy machine, measured). The command line is
    read: the name changes only after the exec's close-on-exec pipe closed (Popen can
    return while it is still the parent's); the executable cannot be read once `user=`
    switched to another user without CAP_SYS_PTRACE, and is setpriv's own for a
    multi-call binary. Past the deadline or the child's exit, return anyway: the caller's
    readiness probe reports a service that never came up.
    """
    deadline = time.monotonic() + HANDOVER_DEADLINE_S
    ours = setpriv.encode()
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline:
                first = cmdline.read().split(b"\0", 1)[0]
        except OSError:
            return  # gone, or /proc hidden from us: nothing to wait on
        if first and first != ours:  # empty while an exec swaps the process image
            return
        time.sleep(0.001)


def _spawn(
    name: str,
    argv: list[str],
    *,
    data_dir: Path,
    log_path: Path,
    port: int,
    url: str,
    env: dict[str, str] | None,
    popen_kwargs: dict | None = None,
) -> Service:
    """Launch ``argv`` in a new session with output appended to ``log_path``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        offset = log.tell()
        try:
            if shutil.which(argv[0], path=(env or os.environ).get("PATH")) is None:
                raise FileNotFoundError(argv[0])
            # set after a `user=` switch (in setpriv, or as preexec_fn), so it survives it
            command, death = _with_death_signal(argv)
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                **death,
                **(popen_kwargs or {}),
            )
        except FileNotFoundError as exc:
            raise RuntimeError(f"{name}: {argv[0]} not found; install with: {APT_HINT}") from exc
    if command[0] != argv[0]:
        _await_handover(proc, command[0])
    # The child holds its own copy of the log fd; ours is closed by the with-block.
    return Service(name, proc, LOCALHOST, port, data_dir, log_path, url, offset)


def _await_ready(
    service: Service, deadline_s: float, what: str, probe: Callable[[str, int], bool]
) -> None:
    """Wait for the port, then for ``probe``; kill the service on failure."""
    deadline = time.monotonic() + deadline_s
    common = {
        "deadline": deadline,
        "proc": service.proc,
        "name": service.name,
        "log_path": service.log_path,
        "log_offset": service.log_offset,
    }
    try:
        _poll_until(
            lambda: _tcp_connects(service.host, service.port),
            what=f"TCP {service.host}:{service.port}",
            **common,
        )
        _poll_until(lambda: probe(service.host, service.port), what=what, **common)
    except BaseException:
        # Also on KeyboardInterrupt: never leave a half-started service behind.
        service.kill()
        raise


def _poll_until(
    check: Callable[[], bool],
    *,
    what: str,
    deadline: float,
    proc: subprocess.Popen[bytes] | None,
    name: str,
    log_path: Path | None,
    log_offset: int,
) -> None:
    """Call ``check`` every POLL_INTERVAL_S until true; raise on exit or deadline."""
    while True:
        if proc is not None and proc.poll() is not None:
            reason = f"exited with code {proc.returncode} before {what} answered"
            raise RuntimeError(_failure_message(name, reason, log_path, log_offset))
        if check():
            return
        if time.monotonic() >= deadline:
            reason = f"{what} did not answer before the deadline"
            raise RuntimeError(_failure_message(name, reason, log_path, log_offset))
        time.sleep(POLL_INTERVAL_S)


def _failure_message(name: str, reason: str, log_path: Path | None, offset: int) -> str:
    if log_path is None:
        return f"{name}: {reason}"
    tail = _read_log_tail(log_path, offset) or "(log is empty)"
    return f"{name}: {reason}; last lines of {log_path}:\n{tail}"


def _read_log_tail(log_path: Path, offset: int) -> str:
    """Last LOG_TAIL_LINES lines written after ``offset``, capped in size."""
    try:
        with open(log_path, "rb") as f:
            f.seek(offset)
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])[-LOG_TAIL_MAX_CHARS:]


def _default_name(proc: subprocess.Popen[bytes] | None, host: str, port: int) -> str:
    if proc is not None:
        args = proc.args
        first = args[0] if isinstance(args, list | tuple) else args
        return Path(str(first)).name
    return f"{host}:{port}"


def _tcp_connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _etcd_healthy(host: str, port: int) -> bool:
    """GET /health on the client URL. http.client, not urllib: no proxy env lookup."""
    conn = http.client.HTTPConnection(host, port, timeout=2)
    try:
        conn.request("GET", "/health")
        resp = conn.getresponse()
        body = resp.read()
        return resp.status == 200 and json.loads(body).get("health") == "true"
    except (OSError, http.client.HTTPException, ValueError):
        return False
    finally:
        conn.close()


def _redis_pongs(host: str, port: int) -> bool:
    """Send a RESP ``PING``; true on ``+PONG`` (``-LOADING`` etc. mean not yet)."""
    try:
        with socket.create_connection((host, port), timeout=2) as sock:
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return _recv_line(sock) == b"+PONG"
    except OSError:
        return False


def _recv_line(sock: socket.socket) -> bytes:
    """Read one CRLF-terminated RESP line (replies to PING are tiny)."""
    buf = b""
    while not buf.endswith(b"\r\n") and len(buf) < 4096:
        chunk = sock.recv(4096)
        if not chunk:
            break
        buf += chunk
    return buf.rstrip(b"\r\n")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the process group led by ``proc`` and reap ``proc``.

    The group, not just the pid: Redis forks children for AOF rewrites. Only
    signalled while unreaped, so the pid/pgid cannot have been reused.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


__all__ = [
    "Service",
    "ensure_binaries",
    "free_port",
    "is_port_free",
    "start_etcd",
    "start_redis",
    "wait_for_port",
]


def spawn_as(
    name: str, argv: list[str], *, data_dir: Path, log_path: Path, port: int, popen_kwargs: dict
) -> Service:
    """Launch a service process with extra Popen arguments (``user=``, ``group=``).

    Same contract as the services here (own session, dies with this process); the
    caller waits for readiness. ``url`` is left empty for the caller to fill in.
    """
    return _spawn(
        name,
        argv,
        data_dir=data_dir,
        log_path=log_path,
        port=port,
        url="",
        env=None,
        popen_kwargs=popen_kwargs,
    )


def start_command(
    name: str,
    argv: list[str],
    *,
    log_path: Path,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    deadline_s: float = 60.0,
    port: int = 0,
    url: str = "",
) -> Service:
    """Start any long-running command (a Celery worker, an ASGI server) like the services.

    Returns once ``ready()`` is true; raises RuntimeError quoting the log tail if the
    process exits or the deadline passes first (and kills it).
    """
    service = _spawn(
        name, argv, data_dir=log_path.parent, log_path=log_path, port=port, url=url, env=env
    )
    try:
        _poll_until(
            ready,
            what="readiness",
            deadline=time.monotonic() + deadline_s,
            proc=service.proc,
            name=name,
            log_path=log_path,
            log_offset=service.log_offset,
        )
    except BaseException:
        service.kill()
        raise
    return service


def log_contains(service_log: Path, offset: int, marker: bytes) -> bool:
    """True once ``marker`` appears in the log after ``offset`` (readiness lines)."""
    try:
        with open(service_log, "rb") as fh:
            fh.seek(offset)
            return marker in fh.read()
    except FileNotFoundError:
        return False


def http_ok(host: str, port: int, path: str = "/health") -> bool:
    """True when GET ``path`` answers 200 (an ASGI server's readiness)."""
    conn = http.client.HTTPConnection(host, port, timeout=1.0)
    try:
        conn.request("GET", path)
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def child_env(etcd_url: str, broker_url: str, repo: Path, **extra: str) -> dict[str, str]:
    """Environment for a project process (worker, gateway) pointed at these services.

    Inherited ETCD_* and CELERY_* variables are dropped so that nothing from the
    caller's shell overrides the services given here.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCD_", "CELERY_"))}
    env.update(
        ETCD_ENDPOINTS=etcd_url,
        CELERY_BROKER_URL=broker_url,
        REDIS_URL=broker_url,
        PYTHONPATH=str(repo),
        DJANGO_SETTINGS_MODULE="telemetry_site.settings",
    )
    env.update(extra)
    return env


# --- etcd clusters (fault and multi-instance tests) ---------------------------------


def start_etcd_cluster(base_dir: Path, n: int = 3, token: str | None = None) -> list[Service]:
    """Start an ``n``-member etcd cluster on 127.0.0.1 and wait until every member is healthy.

    Member ``i`` is named ``m{i}``, keeps its data in ``base_dir/m{i}`` and logs to
    ``base_dir/etcd-m{i}.log``; each has its own client and peer port, and
    ``--initial-cluster`` lists every member's peer URL. ``[s.url for s in members]``
    is the ``ETCD_ENDPOINTS`` list. A member reports healthy only once the cluster has
    a leader, so this returns when the cluster can serve writes (within 30 s), or kills
    every member it started and raises RuntimeError quoting the log of the one that
    failed.
    """
    if n < 1:
        raise ValueError("an etcd cluster needs at least one member")
    ports: list[int] = []
    while len(ports) < 2 * n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    client_ports, peer_ports = ports[:n], ports[n:]
    _require_free("etcd cluster", LOCALHOST, *ports)
    names = [f"m{i}" for i in range(n)]
    initial = ",".join(
        f"{name}=http://{LOCALHOST}:{peer}" for name, peer in zip(names, peer_ports, strict=True)
    )
    token = token or f"etcd-{os.getpid()}-{client_ports[0]}"
    members: list[Service] = []
    try:
        for name, client_port, peer_port in zip(names, client_ports, peer_ports, strict=True):
            argv = _etcd_member_argv(
                name, base_dir / name, client_port, peer_port, initial, token, "new"
            )
            members.append(
                _spawn(
                    "etcd",
                    argv,
                    data_dir=base_dir / name,
                    log_path=base_dir / f"etcd-{name}.log",
                    port=client_port,
                    url=f"{LOCALHOST}:{client_port}",
                    env=_etcd_child_env(),
                )
            )
        for member in members:
            _await_ready(member, ETCD_START_DEADLINE_S, "GET /health", _etcd_healthy)
    except BaseException:
        for member in members:
            member.kill()
        raise
    return members


def etcd_status(member: Service, timeout: float = 2.0) -> dict | None:
    """``POST /v3/maintenance/status`` on a member's HTTP/JSON gateway; None if it does not answer.

    The answer carries ``header.member_id`` (this member) and ``leader`` (the member
    it follows), both as decimal strings.
    """
    conn = http.client.HTTPConnection(member.host, member.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        conn.request("POST", "/v3/maintenance/status", body=b"{}", headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 200:
            return None
        status = json.loads(body)
        return status if isinstance(status, dict) else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def etcd_leader(members: Sequence[Service], deadline_s: float = 15.0) -> Service:
    """The running member that the running members agree is the leader.

    Polls until a member says it is the leader (its own id equals the leader id it
    reports) and no other running member names another leader; RuntimeError after
    ``deadline_s`` seconds (an election in progress, or no quorum).
    """
    deadline = time.monotonic() + deadline_s
    while True:
        statuses = [(m, etcd_status(m)) for m in members if m.running]
        answered = [(m, s) for m, s in statuses if s is not None]
        leaders = {str(s.get("leader", "")) for _, s in answered}
        if len(leaders) == 1 and "0" not in leaders and "" not in leaders:
            (leader_id,) = leaders
            for member, status in answered:
                if str(status.get("header", {}).get("member_id", "")) == leader_id:
                    return member
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"etcd cluster: no agreed leader within {deadline_s}s "
                f"(answers: {[s for _, s in statuses]})"
            )
        time.sleep(POLL_INTERVAL_S)


def _etcd_child_env() -> dict[str, str]:
    """The caller's environment without ETCD_* (etcd reads those as flags; see start_etcd)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ETCD_") or k == "ETCD_UNSUPPORTED_ARCH"
    }


def _etcd_member_argv(
    name: str,
    data_dir: Path,
    client_port: int,
    peer_port: int,
    initial_cluster: str,
    token: str,
    state: str,
) -> list[str]:
    client_url = f"http://{LOCALHOST}:{client_port}"
    peer_url = f"http://{LOCALHOST}:{peer_port}"
    return [
        "etcd",
        f"--name={name}",
        f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}",
        f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}",
        f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={initial_cluster}",
        f"--initial-cluster-token={token}",
        f"--initial-cluster-state={state}",
        "--auto-compaction-mode=periodic",
        "--auto-compaction-retention=1h",
        # keep the raft log (held in memory) short after bulk loads; 3.4 defaults to 100,000
        "--snapshot-count=10000",
        f"--quota-backend-bytes={ETCD_QUOTA_BACKEND_BYTES}",
        "--logger=zap",
    ]


def etcd_move_leader(members: Sequence[Service], target: Service, deadline_s: float = 15.0) -> None:
    """Make ``target`` the leader (etcd's MoveLeader, asked of the current leader).

    Returns once the members agree that ``target`` leads; RuntimeError otherwise.
    """
    deadline = time.monotonic() + deadline_s
    while True:
        leader = etcd_leader(members, deadline_s=max(deadline - time.monotonic(), 0.1))
        if leader is target:
            return
        status = etcd_status(target)
        if status is not None:
            body = json.dumps({"targetID": status["header"]["member_id"]}).encode()
            conn = http.client.HTTPConnection(leader.host, leader.port, timeout=5)
            try:
                headers = {"Content-Type": "application/json"}
                conn.request("POST", "/v3/maintenance/transfer-leadership", body, headers)
                conn.getresponse().read()
            except (OSError, http.client.HTTPException):
                pass
            finally:
                conn.close()
        if time.monotonic() >= deadline:
            raise RuntimeError(f"etcd cluster: {target.url} did not become the leader")
        time.sleep(POLL_INTERVAL_S)
