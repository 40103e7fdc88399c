"""Fixtures of the fault tests: each test runs its own etcd (one member or a cluster), its
own Redis, its own workers and gateways, and kills or restarts them for real.

Nothing here is mocked: the processes are the ones `make run` and the deployment start.
The session services of tests/conftest.py are never touched, and no session worker ever
sees a fault test's queue (each test has its own Redis).

Every test ends with `assert_stored_exactly`: each (uuid, ts, metric) of the uploaded file
is stored exactly once, with its exact value, counted twice over: in the raw blocks in
etcd (a chunk written twice with other block boundaries would show as a doubled sample)
and through the read path (the REST telemetry API, or `store.read` for large files).
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

import pytest
import requests
from rest_framework.test import APIClient

from store import client as etcd_client
from store import kv, window_ms
from store.codec import decode_block
from store.errors import StoreUnavailable
from store.keys import Keys
from store.read import read_samples
from tests.api.api_support import Expected, point_producer_at, upload
from tests.conftest import service_env, start_worker
from tests.helpers import wait_for
from timeparse.timestamps import parse_timestamp
from tools import services

TASK_LINE = re.compile(rb"Task workers\.persist_chunk\[([0-9a-f-]+)\] (received|succeeded|retry)")


class Lab:
    """The processes of one fault test; everything it starts is killed at teardown.

    This process (the in-process API client, the store reads of the checks, the
    Celery producer) is pointed at the lab's etcd and Redis through pytest-django's
    `settings`, which restores the session's values after the test.
    """

    def __init__(self, tmp: Path, settings, window_s: int = 3600) -> None:
        self.tmp = tmp
        self.settings = settings
        self.root = f"/faults-{uuid.uuid4().hex[:10]}"
        self.window_s = window_s
        self.etcd: list[services.Service] = []
        self.redis: services.Service | None = None
        self.workers: list[services.Service] = []
        self.gateways: list[services.Service] = []
        self._etcd_ports: tuple[int, int] | None = None
        self._redis_port: int | None = None
        settings.ETCD_PREFIX = self.root
        settings.ETCD_TIMEOUT = 2.0
        settings.BLOCK_WINDOW_SECONDS = window_s

    def use_window(self, seconds: int) -> None:
        """BLOCK_WINDOW_SECONDS here and in every process started after this call."""
        self.window_s = seconds
        self.settings.BLOCK_WINDOW_SECONDS = seconds

    # --- services ------------------------------------------------------------------
    @property
    def endpoints(self) -> str:
        return ",".join(m.url for m in self.etcd)

    def start_etcd(self, members: int = 1) -> list[services.Service]:
        """One member on fixed ports (so `restart_etcd` brings it back), or a cluster."""
        services.ensure_binaries()
        if members == 1:
            self._etcd_ports = (services.free_port(), services.free_port())
            self.etcd = [self._start_single()]
        else:
            self.etcd = services.start_etcd_cluster(self.tmp / "etcd", members)
        self.settings.ETCD_ENDPOINTS = [m.url for m in self.etcd]
        etcd_client.reset()
        return self.etcd

    def _start_single(self) -> services.Service:
        assert self._etcd_ports is not None
        port, peer = self._etcd_ports
        return services.start_etcd(self.tmp / "etcd", port=port, peer_port=peer)

    def restart_etcd(self) -> None:
        """Start the single member again on its ports and data directory."""
        self.etcd[0].kill()
        self.etcd = [self._start_single()]

    def start_redis(self, appendonly: bool = False) -> services.Service:
        self._redis_port = self._redis_port or services.free_port()
        self.redis = services.start_redis(
            self.tmp / "redis", port=self._redis_port, appendonly=appendonly
        )
        self.settings.CELERY_BROKER_URL = self.redis.url
        point_producer_at(self.redis.url)
        return self.redis

    def restart_redis(self, appendonly: bool = True) -> None:
        """SIGTERM Redis (it writes its AOF and exits), then start it on the same dir and port."""
        assert self.redis is not None
        self.redis.stop()
        assert self.redis.proc.returncode == 0, self.redis.log_tail()
        self.start_redis(appendonly=appendonly)

    def child_env(self, **extra: str) -> dict[str, str]:
        return {
            "ETCD_PREFIX": self.root,
            "ETCD_TIMEOUT": "1s",
            "BLOCK_WINDOW_SECONDS": str(self.window_s),
            **extra,
        }

    def start_worker(self, concurrency: int = 1, **env: str) -> services.Service:
        assert self.redis is not None and self.etcd
        worker = start_worker(
            self.tmp, self.endpoints, self.redis.url, concurrency, **self.child_env(**env)
        )
        self.workers.append(worker)
        return worker

    def start_gateway(self, endpoints: str | None = None, **env: str) -> services.Service:
        assert self.redis is not None and self.etcd
        port = services.free_port()
        gateway = services.start_command(
            f"gateway-{len(self.gateways)}",
            [
                sys.executable,
                "-m",
                "uvicorn",
                "telemetry_site.asgi:application",
                "--host",
                services.LOCALHOST,
                "--port",
                str(port),
            ],
            log_path=self.tmp / f"gateway-{len(self.gateways)}.log",
            env=service_env(endpoints or self.endpoints, self.redis.url, **self.child_env(**env)),
            ready=lambda: services.http_ok(services.LOCALHOST, port),
            port=port,
            url=f"http://{services.LOCALHOST}:{port}",
        )
        self.gateways.append(gateway)
        return gateway

    def close(self) -> None:
        for svc in [*self.gateways, *self.workers]:
            svc.kill()
        if self.redis is not None:
            self.redis.kill()
        for member in self.etcd:
            member.kill()
        etcd_client.reset()

    # --- this process's view ----------------------------------------------------------
    def upload(self, data: bytes, name: str = "faults.csv") -> dict:
        """Upload through the in-process API (the gateway's code); the 202 body."""
        response = upload(APIClient(), data, name)
        assert response.status_code == 202, response.content
        return response.json()

    def chunks_done(self, job_id: str) -> int:
        return len(kv.get_prefix(f"{self.root}/chunks/{job_id}/"))

    def wait_chunks_done(self, job_id: str, chunks: int, deadline_s: float = 60) -> int:
        """Wait for every chunk marker; returns how many polls found etcd unavailable.

        A poll that fails is not fatal: right after an etcd member dies, the first
        request of a client that used it fails, and the next goes to another member.
        """
        unavailable = 0

        def done() -> bool:
            nonlocal unavailable
            try:
                return self.chunks_done(job_id) == chunks
            except StoreUnavailable:
                unavailable += 1
                return False

        wait_for(done, deadline_s, f"the {chunks} chunk markers of job {job_id}")
        return unavailable

    def job(self, job_id: str) -> dict:
        response = APIClient().get(f"/api/v1/ingest/jobs/{job_id}")
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def lab(settings, tmp_path: Path) -> Iterator[Lab]:
    from telemetry_site.celery import app

    old_broker = app.conf.broker_url
    state = Lab(tmp_path, settings)
    try:
        yield state
    finally:
        state.close()
        point_producer_at(old_broker)


# --- the exact count check --------------------------------------------------------------


def stored_block_samples(root: str) -> Counter[tuple[str, int, str, float]]:
    """Every sample row of the raw blocks under `root`, counted (uuid, ts, metric, value).

    A file uploaded again (after a 503) stores its samples under the new upload's
    order too, and the newest upload wins (store/order.py): copies of a sample in an
    older upload's blocks are not counted; copies within one upload are.
    """
    by_upload: dict[tuple[str, int], Counter] = {}
    for item in kv.get_prefix(f"{root}/blocks/"):
        block_uuid = item.key.removeprefix(f"{root}/blocks/").split("/", 1)[0]
        group = by_upload.setdefault((block_uuid, Keys.parse_block(item.key).upload), Counter())
        for ts, metric, value in decode_block(item.value).rows():
            group[(block_uuid, ts, metric, value)] += 1
    counts: Counter[tuple[str, int, str, float]] = Counter()
    taken: set[tuple[str, int, str]] = set()
    for _, group in sorted(by_upload.items(), key=lambda kv_: kv_[0][1], reverse=True):
        fresh = {k: n for k, n in group.items() if k[:3] not in taken}
        counts.update(fresh)
        taken.update(k[:3] for k in group)
    return counts


def rest_samples(get_json: Callable[[str, dict], dict], uuids: list[str]) -> Counter:
    """Samples as the REST telemetry API returns them, counted (uuid, ts, metric, value)."""
    counts: Counter[tuple[str, int, str, float]] = Counter()
    for gpu in uuids:
        body = get_json(f"/api/v1/gpus/{gpu}/telemetry", {"limit": 10_000})
        assert body["next"] is None, "more than one page: use fewer samples per GPU"
        for r in body["results"]:
            counts[(gpu, parse_timestamp(r["timestamp"]), r["metric_name"], r["value"])] += 1
    return counts


def in_process_get(path: str, params: dict) -> dict:
    response = APIClient().get(path, params)
    assert response.status_code == 200, (path, response.content)
    return response.json()


def gateway_get(gateway: services.Service) -> Callable[[str, dict], dict]:
    def get(path: str, params: dict) -> dict:
        response = requests.get(f"{gateway.url}{path}", params=params, timeout=30)
        assert response.status_code == 200, (path, response.text)
        return response.json()

    return get


def assert_exact(counts: Counter, expected: Expected, where: str) -> None:
    want = Counter(
        {(u, ts, m, v): 1 for u, samples in expected.items() for (ts, m), v in samples.items()}
    )
    if counts == want:
        return
    missing = want - counts
    extra = counts - want
    doubled = sorted(k for k, c in counts.items() if c > 1)
    raise AssertionError(
        f"{where}: {sum(want.values())} samples expected, {sum(counts.values())} found; "
        f"{sum(missing.values())} missing (e.g. {sorted(missing)[:3]}), "
        f"{sum(extra.values())} unexpected or doubled (e.g. {sorted(extra)[:3]}), "
        f"{len(doubled)} stored more than once (e.g. {doubled[:3]})"
    )


def read_path_samples(root: str, uuids: list[str]) -> Counter:
    """Samples as `store.read.read_samples` (the API's read path) returns them, counted."""
    keys = Keys(root)

    def read(gpu: str) -> list[tuple[str, int, str, float]]:
        samples = read_samples(keys, gpu, -(2**62), 2**62, window_ms())
        return [(gpu, ts, metric, value) for ts, metric, value in samples.rows()]

    counts: Counter[tuple[str, int, str, float]] = Counter()
    with ThreadPoolExecutor(8) as pool:  # one window per etcd read: parallel GPUs
        for rows in pool.map(read, uuids):
            counts.update(rows)
    return counts


def assert_stored_exactly(
    root: str,
    expected: Expected,
    get_json: Callable[[str, dict], dict] | None = in_process_get,
) -> int:
    """Every expected sample stored exactly once with its exact value, and nothing else.

    Checked in the raw blocks of `root`, then through the REST API (`get_json`, which
    must list exactly the file's GPUs) or, when `get_json` is None (large files: the
    API takes ~80 ms per 1000 samples), through `store.read.read_samples`, the read
    path behind the API. Returns the number of samples.
    """
    assert_exact(stored_block_samples(root), expected, "raw blocks in etcd")
    if get_json is None:
        assert_exact(read_path_samples(root, sorted(expected)), expected, "store.read reads")
        return sum(len(v) for v in expected.values())
    listed = get_json("/api/v1/gpus", {"limit": 1000})
    assert sorted(g["uuid"] for g in listed["results"]) == sorted(expected)
    assert_exact(rest_samples(get_json, sorted(expected)), expected, "REST telemetry API")
    return sum(len(v) for v in expected.values())


# --- processes and worker logs ----------------------------------------------------------


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (Linux /proc), e.g. a Celery worker's pool processes."""
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return sorted(children)


def sigkill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def task_events(worker: services.Service) -> list[tuple[str, str]]:
    """(task id, event) in log order: received, succeeded, retry."""
    data = worker.log_path.read_bytes()[worker.log_offset :]
    return [(m[1].decode(), m[2].decode()) for m in TASK_LINE.finditer(data)]


def event_times(worker: services.Service, task: str, event: str) -> list[float]:
    """Wall-clock times (from the log line's timestamp) of a task's events in a worker log."""
    line = re.compile(
        rb"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) .*Task workers\.persist_chunk\["
        + re.escape(task.encode())
        + rb"\] "
        + re.escape(event.encode()),
        re.MULTILINE,
    )
    data = worker.log_path.read_bytes()[worker.log_offset :]
    return [
        datetime.strptime(m[1].decode(), "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for m in line.finditer(data)
    ]


def log_text(worker: services.Service) -> str:
    return worker.log_path.read_bytes()[worker.log_offset :].decode(errors="replace")


def tcp_peers(pids: list[int]) -> Counter[int]:
    """Remote 127.0.0.1 ports of the established TCP connections that `pids` hold.

    Linux only: socket inodes from /proc/PID/fd matched against /proc/net/tcp.
    Shows which etcd member each process's gRPC channel is connected to.
    """
    inodes: dict[str, int] = {}
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes[target[8:-1]] = pid
    ports: Counter[int] = Counter()
    # gRPC opens dual-stack sockets: 127.0.0.1 appears v4-mapped in /proc/net/tcp6.
    loopback = ("0100007F", "0000000000000000FFFF00000100007F")
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            remote, state, inode = fields[2], fields[3], fields[9]
            address, _, port = remote.partition(":")
            if state == "01" and inode in inodes and address in loopback:
                ports[int(port, 16)] += 1
    return ports


def chunk_markers(root: str, job_id: str) -> dict[int, dict]:
    return {
        int(item.key.rsplit("/", 1)[1]): json.loads(item.value)
        for item in kv.get_prefix(f"{root}/chunks/{job_id}/")
    }
