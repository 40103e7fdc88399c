"""The read lane against Django's stack, in one process: CPU time per request.

    .venv/bin/python -m bench.lane [--gpus 8] [--hours 6] [--reps 300] [--rounds 5] [--lane-only]

Loads bench/storage.py's data set into etcd (as bench/read.py does), then drives the
gateway's ASGI application in process, without a socket: the same request through the
body guard and the read lane (as shipped) and through the body guard and Django alone
(READ_LANE=off). Rounds alternate between the two; each round runs --reps requests and
takes the process CPU time (time.process_time: every thread of the process, so the
handler threads and the store calls count) and the wall time; the best round of each
side is printed with the ratio, and the etcd requests one request of it makes (the
lane's). --lane-only drops Django's side, to compare two versions of the lane run
one after the other. CPU time is what a loaded 2-core
machine cannot blur: wall-clock figures come from bench/read.py on a quiet machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from bench.harness import stack
from bench.read import UTIL, iso, load_stack, raw_window
from bench.storage import BENCH_TIERS, END_MS, OURS_ROOT, STEP_MS, log, make_dataset

App = Callable[..., Any]


def scope(path: str, query: dict[str, str] | None = None, headers: dict[str, str] | None = None):
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": urllib.parse.urlencode(query or {}).encode(),
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000")]
        + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: App, request: dict) -> tuple[int, dict[bytes, bytes]]:
    """One request through `app`; the status and headers (the body is read and dropped)."""
    given = False
    start: dict = {}

    async def receive() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # no disconnect while the answer is sent
        return {}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            start.update(message)

    await app(request, receive, send)
    return start["status"], dict(start["headers"])


def queries(uuid: str, hours: float) -> dict[str, dict]:
    day_start, day_end = raw_window(min(24.0, hours))
    hour_start, hour_end = raw_window(1.0)
    tele = f"/api/v1/gpus/{uuid}/telemetry"
    day = {"start_time": iso(day_start), "end_time": iso(day_end)}
    hour = {"start_time": iso(hour_start), "end_time": iso(hour_end), "limit": "all"}
    return {
        "floor: GET /health": scope("/health"),
        "1 GPU, 10 metrics, 1 h raw, JSON rows": scope(tele, hour),
        "1 GPU, 1 metric, whole window as 5-minute averages": scope(
            tele, {**day, "metric": UTIL, "step": "5m"}
        ),
        "GPU list (200)": scope("/api/v1/gpus", {"limit": "1000"}),
        "GPU list polled with If-None-Match (304)": "304",
        "Prometheus instant query of GPU_UTIL": scope(
            "/prometheus/api/v1/query", {"query": UTIL, "time": str((END_MS - STEP_MS) / 1000)}
        ),
    }


def best(
    loop: asyncio.AbstractEventLoop, app: App, request: dict, reps: int
) -> tuple[float, float]:
    """(CPU ms, wall ms) per request of one round."""
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(reps):
        loop.run_until_complete(call(app, request))
    return (
        (time.process_time() - cpu) * 1000 / reps,
        (time.perf_counter() - wall) * 1000 / reps,
    )


def _taken(loop: asyncio.AbstractEventLoop, app: App, request: dict) -> bool:
    """Whether the lane answered `request` itself (its counter moved)."""
    from observability.metrics import READ_LANE_ANSWERS

    def total() -> float:
        return sum(s.value for m in READ_LANE_ANSWERS.collect() for s in m.samples)

    before = total()
    loop.run_until_complete(call(app, request))
    return total() > before


def etcd_requests() -> float:
    """etcd requests this process has made so far (store/kv.py times each one)."""
    from observability.metrics import ETCD_SECONDS

    return sum(
        s.value for m in ETCD_SECONDS.collect() for s in m.samples if s.name.endswith("_count")
    )


def round_trips(loop: asyncio.AbstractEventLoop, app: App, request: dict) -> float:
    before = etcd_requests()
    loop.run_until_complete(call(app, request))
    return etcd_requests() - before


def run(args: argparse.Namespace) -> str:
    data = make_dataset(args.gpus, args.hours, args.hours / 24, args.seed)
    env = {"STORAGE_TIERS": BENCH_TIERS, "ETCD_TIMEOUT": "600", "ETCD_PREFIX": OURS_ROOT}
    with stack(**env) as st:
        load_stack(st, data)
        os.environ.update(st.env)
        from telemetry_site.asgi import django_application
        from telemetry_site.guard import BodyGuard
        from telemetry_site.lane import ReadLane

        sides = {  # as telemetry_site/asgi.py wires them with READ_LANE on and off
            "lane": BodyGuard(ReadLane(django_application, django_application)),
            "django": BodyGuard(django_application),
        }
        if args.lane_only:
            del sides["django"]
        loop = asyncio.new_event_loop()
        plan = queries(data[0].gpu.uuid, args.hours)
        fleet = plan["GPU list (200)"]
        _, headers = loop.run_until_complete(call(sides["lane"], fleet))
        plan["GPU list polled with If-None-Match (304)"] = scope(
            "/api/v1/gpus", {"limit": "1000"}, {"If-None-Match": headers[b"ETag"].decode()}
        )
        rows = []
        for name, request in plan.items():
            results: dict[str, list[tuple[float, float]]] = {s: [] for s in sides}
            for side, app in sides.items():
                status, _ = loop.run_until_complete(call(app, request))
                assert status in (200, 304), (name, side, status)
                assert side != "lane" or _taken(loop, app, request), f"the lane left {name}"
                best(loop, app, request, max(args.reps // 10, 1))  # warm-up
            for _ in range(args.rounds):
                for side, app in sides.items():
                    results[side].append(best(loop, app, request, args.reps))
            trips = round_trips(loop, sides["lane"], request)
            lane, lane_wall = min(results["lane"]), min(w for _, w in results["lane"])
            if args.lane_only:
                rows.append(f"| {name} | {lane[0]:.2f} | {lane_wall:.2f} | {trips:g} |")
            else:
                django = min(results["django"])
                django_wall = min(w for _, w in results["django"])
                rows.append(
                    f"| {name} | {django[0]:.2f} | {lane[0]:.2f} | **{django[0] / lane[0]:.1f}x** "
                    f"| {django_wall:.2f} | {lane_wall:.2f} | {trips:g} |"
                )
            log(rows[-1])
    head = [
        f"Data: {args.gpus} GPUs x 10 metrics x {args.hours:g} h at 10 s; best of {args.rounds} "
        f"alternated rounds of {args.reps} requests, in process (no socket), ms per request.",
        "",
        "| request | Django CPU | lane CPU | Django / lane | Django wall | lane wall "
        "| etcd requests |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    if args.lane_only:
        head[-2:] = ["| request | lane CPU | lane wall | etcd requests |", "|---|---:|---:|---:|"]
    return "\n".join(head + rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--lane-only", action="store_true", help="only the lane (to compare two versions)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    print(run(args))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
