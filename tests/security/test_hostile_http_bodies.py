"""Attacks with request bodies: each is refused from its headers, or cut as it arrives.

Measured on a real uvicorn gateway: bytes it wrote (/proc/PID/io, spool included),
threads, and what the attacker could send. Issue 14, points 1 and the slow client.
"""

from __future__ import annotations

import concurrent.futures
import socket
import time

import requests

from bench.attacks import MiB, chunked_post, established, slow_body
from tests.api.api_support import generated
from tests.security.conftest import UPLOAD_LIMIT

ATTACK = 64 * MiB  # 8 x the gateway's upload limit


def headers_only(port: int, headers: dict[str, str], length: int | str) -> bytes:
    """Send a request's headers declaring `length` bytes, none of them; return the answer."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(
            f"POST /api/v1/csv/upload HTTP/1.1\r\nHost: x\r\n{head}"
            f"Content-Length: {length}\r\n\r\n".encode()
        )
        answer = b""
        while chunk := sock.recv(65536):  # the refusal says `Connection: close`
            answer += chunk
        return answer


def test_an_anonymous_chunked_upload_is_refused_before_its_body_is_read(hostile_gateway):
    before = hostile_gateway.meter.read()
    out = chunked_post(hostile_gateway.port, "/api/v1/csv/upload", ATTACK)
    after = hostile_gateway.meter.read()
    assert out.answers == [401]
    assert after.written - before.written < 1 * MiB, after.written - before.written
    assert out.sent < 16 * MiB  # what socket buffers took before the answer came back


def test_a_body_sent_to_a_route_that_takes_none_is_refused_unread(hostile_gateway):
    before = hostile_gateway.meter.read()
    out = chunked_post(hostile_gateway.port, "/health", ATTACK)
    after = hostile_gateway.meter.read()
    assert out.answers == [413]
    assert after.written - before.written < 1 * MiB, after.written - before.written
    body = requests.post(f"{hostile_gateway.url}/api/v1/gpus", data=b"x" * 10, timeout=10)
    assert body.status_code == 413 and "no request body" in body.json()["detail"]


def test_a_chunked_upload_with_a_token_is_cut_at_the_limit(hostile_gateway, attack_token):
    auth = {"Authorization": f"Bearer {attack_token}", "Content-Type": "text/csv"}
    before = hostile_gateway.meter.read()
    out = chunked_post(hostile_gateway.port, "/api/v1/csv/upload", ATTACK, headers=auth)
    after = hostile_gateway.meter.read()
    assert out.answers == [413]
    written = after.written - before.written
    assert written < UPLOAD_LIMIT + 1 * MiB, written
    assert not any(hostile_gateway.spool.iterdir()), "a spool file was left behind"

    # 10 GiB declared, nothing sent: the header alone must be enough to refuse
    declared = headers_only(hostile_gateway.port, auth, 10 * 1024**3)
    assert declared.startswith(b"HTTP/1.1 413"), declared
    assert b"INGEST_MAX_UPLOAD_BYTES" in declared

    fine = requests.post(
        f"{hostile_gateway.url}/api/v1/csv/upload",
        headers=auth,
        data=generated(hosts=1, gpus_per_host=1, samples=2),
        timeout=30,
    )
    assert fine.status_code == 202, fine.text


def test_a_wrong_token_is_refused_before_the_body(hostile_gateway):
    before = hostile_gateway.meter.read()
    out = chunked_post(
        hostile_gateway.port, "/api/v1/csv/upload", ATTACK, headers={"Authorization": "Bearer nope"}
    )
    assert out.answers == [401]
    assert hostile_gateway.meter.read().written - before.written < 1 * MiB


def test_slow_bodies_are_cut_off_without_holding_threads(hostile_gateway, attack_token):
    threads = hostile_gateway.meter.read().threads
    connected = established(hostile_gateway.port)
    auth = {"Authorization": f"Bearer {attack_token}"}
    with concurrent.futures.ThreadPoolExecutor(20) as pool:
        slow = [
            pool.submit(
                slow_body, hostile_gateway.port, "/api/v1/csv/upload", 10_000, 0.5, 30, auth
            )
            for _ in range(20)
        ]
        deadline = time.monotonic() + 10
        while established(hostile_gateway.port) < connected + 20:  # all sending now
            assert time.monotonic() < deadline, "the slow clients never all connected"
            time.sleep(0.02)
        started = time.monotonic()
        assert requests.get(f"{hostile_gateway.url}/health", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0
        # a thread per slow client would be 20 more; the guard holds none while it waits
        assert hostile_gateway.meter.read().threads < threads + 10
        outcomes = [f.result() for f in slow]
    # HTTP_BODY_GRACE=2s and 16 KiB/s: one byte each half second is cut after about 2 s
    assert all(o.answers == [408] for o in outcomes), [o.answers for o in outcomes]
    assert max(o.seconds for o in outcomes) < 6, [o.seconds for o in outcomes]


def test_a_content_length_of_thousands_of_digits_is_refused_not_a_crash(hostile_gateway):
    # int() refuses strings of over 4,300 digits with a ValueError; the guard must answer
    for length in ("9" * 5000, "0" * 5000 + "5"):
        answer = headers_only(hostile_gateway.port, {"Content-Type": "text/csv"}, length)
        status = int(answer.split(b" ", 2)[1])
        assert status in (400, 401, 413), answer[:200]
    assert requests.get(f"{hostile_gateway.url}/health", timeout=10).status_code == 200
