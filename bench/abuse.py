"""Hostile clients against a live gateway while a well-behaved client reads (issue 14).

    .venv/bin/python -m bench.abuse [--attack-mib 256] [--limit-mib 64] [--only NAME,...]

Starts etcd, Redis, a worker and one uvicorn gateway on loopback (tools/processes.py, as
the tests do), with a token, an upload limit of --limit-mib and a 2 s body grace, and loads
a small fleet. A good client then reads `GET /api/v1/gpus/{uuid}/telemetry` in a loop: first
with no attack (the baseline), then during each attack in turn. Per attack it prints

* the attacker's cost: bytes sent, seconds;
* the server's cost: gateway CPU seconds; the peak MB of request bodies spooled to disk
  (files the gateway holds open in its spool folder, sampled every 3 ms); all MB it handed
  to write() (/proc/PID/io wchar: spool, logs and its sockets to etcd and Redis, so never
  zero); RSS growth at its peak; the Redis pub/sub channels left once the attacker is gone;
* the good client's p99 during the attack and its ratio to the baseline p99.

Goals: disk below the upload limit, RSS below +100 MB, p99 below 3x the baseline. Every
loop is bounded (bytes, connections, seconds). Loopback only.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import requests

from bench import attacks
from bench.attacks import MiB, Outcome, ProcessMeter, SpoolWatch
from bench.harness import REPO, stack
from tools import processes
from tools.generate_sample import generate

GOAL_RSS_MB = 100
GOAL_P99_RATIO = 3.0


@dataclass
class Target:
    port: int
    base: str
    token: str
    meter: ProcessMeter
    redis_url: str
    gpu: str
    spool: str


class GoodClient:
    """Reads one GPU's telemetry page in a loop on a keep-alive session; records latencies."""

    def __init__(self, target: Target) -> None:
        self.url = f"{target.base}/api/v1/gpus/{target.gpu}/telemetry?limit=100"
        self.meter = target.meter
        self.latencies: list[float] = []
        self.errors = 0
        self.peak_rss = 0
        self._stop = threading.Event()

    def run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            started = time.perf_counter()
            try:
                ok = session.get(self.url, timeout=30).status_code == 200
            except requests.RequestException:
                ok = False
            self.latencies.append(time.perf_counter() - started)
            self.errors += not ok
            self.peak_rss = max(self.peak_rss, self.meter.read().rss)
            time.sleep(0.02)  # about 40 reads a second: a dashboard, not a load test

    def stop(self) -> None:
        self._stop.set()

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000 if ordered else 0


def measure(target: Target, attack: Callable[[], Outcome], min_seconds: float) -> dict:
    """Run `attack` while a good client reads; the server's and the client's figures."""
    channels_before = _channels(target)
    before = target.meter.read()
    client = GoodClient(target)
    reader = threading.Thread(target=client.run, daemon=True)
    reader.start()
    started = time.monotonic()
    with SpoolWatch(target.meter, target.spool) as spool:
        outcome = attack()
        time.sleep(max(0.0, min_seconds - (time.monotonic() - started)))
    client.stop()
    reader.join(60)
    after = target.meter.read()
    attacks.poll(lambda: _channels(target) <= channels_before, 10)
    return {
        "sent_mb": outcome.sent / MiB,
        "attack_s": outcome.seconds,
        "answers": outcome.answers,
        "cpu_s": after.cpu_s - before.cpu_s,
        "spool_mb": spool.peak / MiB,
        "written_mb": (after.written - before.written) / MiB,
        "rss_mb": max(0, max(client.peak_rss, after.rss) - before.rss) / MiB,
        "channels_left": _channels(target) - channels_before,
        "p99_ms": client.p99_ms(),
        "reads": len(client.latencies),
        "read_errors": client.errors,
    }


def _channels(target: Target) -> int:
    return len(redis.Redis.from_url(target.redis_url).pubsub_channels())


def attack_table(target: Target, attack_bytes: int) -> dict[str, Callable[[], Outcome]]:
    auth = {"Authorization": f"Bearer {target.token}", "Content-Type": "text/csv"}
    port = target.port

    def slow_clients() -> Outcome:
        with concurrent.futures.ThreadPoolExecutor(50) as pool:
            outs = list(
                pool.map(
                    lambda _: attacks.slow_body(port, "/api/v1/csv/upload", 10_000, 0.5, 30, auth),
                    range(50),
                )
            )
        return _sum(outs)

    def nested_sockets() -> Outcome:
        frames = [attacks.subscribe_frame(0, 300), attacks.nested_frame(100_000)]
        frames.append(attacks.nested_frame(30_000))
        return _sum([attacks.ws_frames(port, frames) for _ in range(5)])

    def subscription_flood() -> Outcome:
        frames = [attacks.subscribe_frame(i * 300, 300) for i in range(30)]
        return attacks.ws_frames(port, frames)

    return {
        "anonymous chunked upload": lambda: attacks.chunked_post(
            port, "/api/v1/csv/upload", attack_bytes
        ),
        "chunked body to /health": lambda: attacks.chunked_post(port, "/health", attack_bytes),
        "chunked upload with token": lambda: attacks.chunked_post(
            port, "/api/v1/csv/upload", attack_bytes, headers=auth, timeout=120
        ),
        "50 slow bodies (1 B/0.5 s)": slow_clients,
        "GraphQL fragment chain n=30": lambda: attacks.graphql(
            target.base, attacks.fragment_chain(30), timeout=60
        ),
        "GraphQL first: 10000.0, 49 aliases": lambda: attacks.graphql(
            target.base, attacks.float_first_aliases(49), {"b": 10000.0}, timeout=60
        ),
        "WS 100k nested brackets x5": nested_sockets,
        "WS 30 x 300 subscriptions": subscription_flood,
        "200 wrong logins, 4 at once": lambda: attacks.login_flood(target.base, 200),
    }


def _sum(outs: list[Outcome]) -> Outcome:
    total = Outcome()
    for out in outs:
        total.sent += out.sent
        total.seconds = max(total.seconds, out.seconds)
        total.answers += out.answers
    return total


def summary(answers: list) -> str:
    """The distinct answers an attacker got: statuses, or WebSocket message types."""
    seen: dict[str, int] = {}
    for answer in answers:
        if isinstance(answer, tuple):
            key = str(answer[0])
        elif isinstance(answer, str) and answer.startswith("{"):
            key = json.loads(answer).get("type", "?")
        else:
            key = str(answer)[:12]
        seen[key] = seen.get(key, 0) + 1
    return " ".join(f"{k}x{n}" if n > 1 else k for k, n in seen.items())


def prepare(st, limit_mib: int) -> Target:
    """Migrate, make a user and token, start worker and gateway, load a small fleet."""
    run = dict(cwd=REPO, env=st.env, check=True, timeout=300, capture_output=True, text=True)
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], **run)
    code = (
        "from django.contrib.auth import get_user_model; "
        "get_user_model().objects.create_user('bench', password='x')"
    )
    subprocess.run([sys.executable, "manage.py", "shell", "-c", code], **run)
    token = subprocess.run(
        [sys.executable, "manage.py", "api_token", "bench"], **run
    ).stdout.strip()
    st.start_worker(2)
    spool = st.tmp / "spool"
    spool.mkdir()
    env = st.env | {"TMPDIR": str(spool), "FILE_UPLOAD_TEMP_DIR": str(spool)}
    svc = processes.start_gateway(st.tmp / "gateway.log", env)
    st.started.append(svc)
    base = f"http://127.0.0.1:{svc.port}"
    data = "\n".join(generate(hosts=4, gpus_per_host=4, samples=60, seed=7)) + "\n"
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "text/csv"}
    job = requests.post(f"{base}/api/v1/csv/upload", data=data, headers=auth, timeout=60)
    job.raise_for_status()
    gpu = data.splitlines()[1].split(",")[4].strip('"')
    url = f"{base}/api/v1/gpus/{gpu}/telemetry?limit=100"
    ready = attacks.poll(lambda: bool(requests.get(url, timeout=10).json().get("results")), 60)
    if not ready:
        raise RuntimeError(f"the fleet never became readable at {url}")
    meter = ProcessMeter(svc.proc.pid)
    return Target(svc.port, base, token, meter, st.redis.url, gpu, str(spool))


COLUMNS = (
    ("attack", 36),
    ("sent MB", 8),
    ("att. s", 7),
    ("answers", 16),
    ("CPU s", 6),
    ("spool MB", 8),
    ("wrote MB", 8),
    ("RSS MB", 7),
    ("chan.", 6),
    ("p99 ms", 7),
    ("x base", 7),
    ("goals", 6),
)


def line(values: list) -> str:
    cells = []
    for (_, width), value in zip(COLUMNS, values, strict=True):
        text = f"{value:.2f}" if isinstance(value, float) else str(value)
        cells.append(text.ljust(width) if width >= 16 else text.rjust(width))
    return " ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--attack-mib", type=int, default=256, help="body size of body attacks")
    parser.add_argument("--limit-mib", type=int, default=64, help="INGEST_MAX_UPLOAD_BYTES")
    parser.add_argument("--baseline-s", type=float, default=8.0)
    parser.add_argument("--only", default="", help="comma-separated attack names (substrings)")
    parser.add_argument(
        "--logins-unpaced", action="store_true", help="THROTTLE_LOGINS(_PROCESS)=off: as before"
    )
    args = parser.parse_args()
    env = {
        "TELEMETRY_WRITE_AUTH": "true",
        "INGEST_MAX_UPLOAD_BYTES": str(args.limit_mib * MiB),
        "HTTP_BODY_GRACE": "2s",
    }
    if args.logins_unpaced:
        env |= {"THROTTLE_LOGINS": "off", "THROTTLE_LOGINS_PROCESS": "off"}
    with stack(**env) as st:
        target = prepare(st, args.limit_mib)
        measure(target, lambda: Outcome(), 2.0)  # warm-up: first reads fill caches
        base = measure(target, lambda: Outcome(), args.baseline_s)
        print(f"gateway pid {target.meter.pid}; upload limit {args.limit_mib} MiB")
        print(
            f"baseline (no attack, {args.baseline_s:g} s): good client p99 {base['p99_ms']:.1f} ms "
            f"over {base['reads']} reads; gateway CPU {base['cpu_s']:.2f} s, "
            f"wrote {base['written_mb']:.2f} MB (sockets to etcd/Redis included)"
        )
        print(line([name for name, _ in COLUMNS]))
        failed = 0
        for name, attack in attack_table(target, args.attack_mib * MiB).items():
            if args.only and not any(p in name for p in args.only.split(",")):
                continue
            r = measure(target, attack, min_seconds=5.0)
            ratio = r["p99_ms"] / base["p99_ms"] if base["p99_ms"] else 0.0
            ok = (
                r["spool_mb"] <= args.limit_mib
                and r["rss_mb"] <= GOAL_RSS_MB
                and ratio <= GOAL_P99_RATIO
                and r["channels_left"] <= 0
                and r["read_errors"] == 0
            )
            failed += not ok
            print(
                line(
                    [
                        name,
                        r["sent_mb"],
                        r["attack_s"],
                        summary(r["answers"])[:16],
                        r["cpu_s"],
                        r["spool_mb"],
                        r["written_mb"],
                        r["rss_mb"],
                        r["channels_left"],
                        r["p99_ms"],
                        ratio,
                        "met" if ok else "MISSED",
                    ]
                )
            )
        again = measure(target, lambda: Outcome(), args.baseline_s)
        print(
            f"baseline again after the attacks: p99 {again['p99_ms']:.1f} ms over "
            f"{again['reads']} reads (run-to-run noise on this machine)"
        )
        print(f"{failed} attack(s) missed a goal" if failed else "every attack within the goals")


if __name__ == "__main__":
    main()
