"""The attacks of issue 14, each a bounded loop against a loopback gateway, and a /proc meter.

Shared by tests/security (one test per attack) and bench/abuse.py (all of them while a
well-behaved client reads). Every attack returns what it cost the attacker; the server's
cost is read from /proc of the gateway process (`ProcessMeter`).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

CLK_TCK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


@dataclass
class Usage:
    cpu_s: float  # user + system time of the process
    rss: int  # resident set size, bytes
    written: int  # bytes handed to write() (disk spool, logs): /proc/PID/io wchar
    threads: int


class ProcessMeter:
    """CPU, RSS, bytes written and threads of one process, from /proc (Linux)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def read(self) -> Usage:
        with open(f"/proc/{self.pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)
        status = _keyed(f"/proc/{self.pid}/status", ":")
        io = _keyed(f"/proc/{self.pid}/io", ":")
        return Usage(
            cpu_s=cpu,
            rss=int(status["VmRSS"].split()[0]) * 1024,
            written=int(io["wchar"]),
            threads=int(status["Threads"]),
        )

    def spooled(self, directory: str) -> int:
        """Bytes in the files this process holds open under `directory` (deleted ones too).

        Request bodies are spooled to anonymous files (O_TMPFILE): invisible in the
        folder, visible through /proc/PID/fd while the request lives.
        """
        total = 0
        fds = f"/proc/{self.pid}/fd"
        try:
            names = os.listdir(fds)
        except OSError:
            return 0
        for name in names:
            try:
                if os.readlink(f"{fds}/{name}").startswith(directory):
                    total += os.stat(f"{fds}/{name}").st_size
            except OSError:
                continue  # closed meanwhile
        return total


class SpoolWatch:
    """The peak of `ProcessMeter.spooled` while it runs (sampled every few milliseconds)."""

    def __init__(self, meter: ProcessMeter, directory: str, every: float = 0.003) -> None:
        self.meter, self.directory, self.every = meter, directory, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SpoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.meter.spooled(self.directory))
            time.sleep(self.every)


def established(port: int) -> int:
    """TCP connections accepted on `port` and still open (the server's side), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            next(fh)  # the header line
            for line in fh:
                fields = line.split()
                local, state = fields[1], fields[3]
                if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # ESTABLISHED
                    count += 1
    return count


def _keyed(path: str, sep: str) -> dict[str, str]:
    out = {}
    with open(path) as fh:
        for line in fh:
            key, _, value = line.partition(sep)
            out[key.strip()] = value.strip()
    return out


@dataclass
class Outcome:
    """What an attack cost its sender and what it got back."""

    sent: int = 0  # bytes sent
    seconds: float = 0.0
    answers: list[Any] = field(default_factory=list)  # statuses, or messages


# Logins -------------------------------------------------------------------------------
def login_flood(base: str, attempts: int, at_once: int = 4) -> Outcome:
    """`attempts` wrong passwords POSTed to the admin's login form, `at_once` at a time, each
    sender with its CSRF cookie and token and a new X-Forwarded-For every time."""
    started = time.monotonic()
    out = Outcome()

    lock = threading.Lock()

    def sender(first: int) -> list[int]:
        session = requests.Session()
        page = session.get(f"{base}/admin/login/", timeout=30).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
        form = {"csrfmiddlewaretoken": token.group(1) if token else "", "next": "/admin/"}
        codes = []
        for i in range(first, first + attempts // at_once):  # a new address every attempt
            data = {**form, "username": f"admin{i % 3}", "password": f"guess-{i}"}
            address = f"198.51.{100 + i // 250}.{i % 250}"
            headers = {"X-Forwarded-For": address, "Referer": base}
            got = session.post(f"{base}/admin/login/", data=data, headers=headers, timeout=120)
            codes.append(got.status_code)
            with lock:
                out.sent += len(got.request.body or b"")
        return codes

    firsts = [k * (attempts // at_once) for k in range(at_once)]
    with concurrent.futures.ThreadPoolExecutor(at_once) as pool:
        for codes in pool.map(sender, firsts):
            out.answers += codes
    out.seconds = time.monotonic() - started
    return out


# HTTP bodies ----------------------------------------------------------------------------
def chunked_post(
    port: int,
    path: str,
    total: int,
    headers: dict[str, str] | None = None,
    chunk: int = 256 * 1024,
    timeout: float = 30.0,
) -> Outcome:
    """POST up to `total` bytes as a chunked body (no Content-Length); stops when answered.

    Returns the bytes the server let us send and its status (0: none before we finished).
    """
    out = Outcome()
    started = time.monotonic()
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "Transfer-Encoding: chunked"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    block = f"{chunk:x}\r\n".encode() + b"1" * chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        sock.setblocking(False)
        reply = b""
        try:
            while out.sent < total:
                reply += _drain(sock)
                if b"\r\n" in reply:
                    break
                _send_some(sock, block, deadline=started + timeout)
                out.sent += chunk
            else:
                _send_some(sock, b"0\r\n\r\n", deadline=started + timeout)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed on us: what we want
        sock.setblocking(True)
        reply += _read_status_line(sock, reply)
    out.seconds = time.monotonic() - started
    out.answers.append(_status(reply))
    return out


def _send_some(sock: socket.socket, data: bytes, deadline: float) -> None:
    view = memoryview(data)
    while view:
        if time.monotonic() > deadline:
            raise TimeoutError("the server stopped reading and never answered")
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            time.sleep(0.001)


def _drain(sock: socket.socket) -> bytes:
    try:
        data = sock.recv(65536)
    except BlockingIOError:
        return b""
    if data == b"":
        raise ConnectionResetError("closed")
    return data


def _read_status_line(sock: socket.socket, have: bytes) -> bytes:
    more = b""
    try:
        while b"\r\n" not in have + more:
            data = sock.recv(65536)
            if not data:
                break
            more += data
    except OSError:
        pass
    return more


def _status(reply: bytes) -> int:
    parts = reply.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def slow_body(
    port: int,
    path: str,
    declared: int,
    byte_every: float,
    timeout: float,
    headers: dict[str, str] | None = None,
) -> Outcome:
    """Declare `declared` bytes, then send one byte every `byte_every` s until answered."""
    out = Outcome()
    started = time.monotonic()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/csv\r\n{extra}"
        f"Content-Length: {declared}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=byte_every) as sock:
        sock.sendall(head.encode())
        reply = b""
        while time.monotonic() - started < timeout and out.sent < declared:
            try:
                reply += sock.recv(65536)
                break  # answered (or closed) before we were done
            except TimeoutError:
                pass
            try:
                sock.sendall(b"1")
                out.sent += 1
            except OSError:
                break
        sock.settimeout(5)
        reply += _read_status_line(sock, reply)
    out.seconds = time.monotonic() - started
    out.answers.append(_status(reply))
    return out


# GraphQL ---------------------------------------------------------------------------------
def fragment_chain(n: int) -> str:
    """`fragment F1 on Query { ...F2 ...F2 }` n deep: 2^n paths for a naive walk."""
    parts = ["query Chain { ...F1 }"]
    for i in range(1, n):
        parts.append(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}")
    parts.append(f"fragment F{n} on Query {{ __typename }}")
    return "\n".join(parts)


def float_first_aliases(aliases: int) -> str:
    """`aliases` copies of gpus(first: $b) with telemetry(first: $b) inside."""
    body = " ".join(
        f"a{i}: gpus(first: $b) {{ edges {{ node {{ uuid telemetry(first: $b) "
        f"{{ edges {{ node {{ value }} }} }} }} }} }}"
        for i in range(aliases)
    )
    return f"query Float($b: Int) {{ {body} }}"


def graphql(base: str, query: str, variables: dict | None = None, timeout: float = 30) -> Outcome:
    out = Outcome()
    started = time.monotonic()
    payload = json.dumps({"query": query, "variables": variables or {}})
    out.sent = len(payload)
    try:
        response = requests.post(
            f"{base}/graphql",
            data=payload,
            headers={"Content-Type": "application/json"},
            timeout=timeout,
        )
        out.answers.append((response.status_code, len(response.content), response.text[:100_000]))
    except requests.Timeout:
        out.answers.append((0, 0, "timed out"))
    out.seconds = time.monotonic() - started
    return out


# WebSocket ------------------------------------------------------------------------------
def nested_frame(depth: int) -> str:
    return "[" * depth + "]" * depth


def ws_frames(port: int, frames: list[str], wait: float = 10.0) -> Outcome:
    """Send each frame on one socket and collect one answer per frame (text, or the close)."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    out = Outcome()
    started = time.monotonic()
    with connect(f"ws://127.0.0.1:{port}/ws/telemetry/", max_size=None, open_timeout=10) as ws:
        for frame in frames:
            try:
                ws.send(frame)
                out.sent += len(frame)
                out.answers.append(ws.recv(timeout=wait))
            except (ConnectionClosed, TimeoutError) as exc:
                out.answers.append(f"closed: {exc!r}")
                break
    out.seconds = time.monotonic() - started
    return out


def subscribe_frame(start: int, count: int, prefix: str = "GPU-flood-") -> str:
    gpus = [f"{prefix}{i:08d}{'x' * 150}" for i in range(start, start + count)]
    return json.dumps({"action": "subscribe", "gpus": gpus})


def ws_abrupt(port: int, frames: list[str], wait: float = 10.0) -> Outcome:
    """Send frames (reading each answer), then drop the TCP connection without a close frame."""
    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    out = Outcome()
    started = time.monotonic()
    with (
        contextlib.suppress(ConnectionClosed, OSError),
        connect(f"ws://127.0.0.1:{port}/ws/telemetry/", max_size=None, open_timeout=10) as ws,
    ):
        for frame in frames:
            ws.send(frame)
            out.sent += len(frame)
            out.answers.append(ws.recv(timeout=wait))
        ws.socket.shutdown(socket.SHUT_RDWR)  # no close frame: a crashed client, a cut cable
    out.seconds = time.monotonic() - started
    return out


def poll(check: Callable[[], bool], deadline_s: float, every: float = 0.1) -> bool:
    """True as soon as `check()` is; False when the deadline passes first."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()
