"""Live feed latency: from the upload request to each sample received on a WebSocket.

    .venv/bin/python -m bench.live [--samples 1000] [--clients 1,100]

Starts etcd, Redis, a 2-process worker and one gateway; for each client count,
connects that many clients subscribed to the benchmark's cluster, uploads a CSV
of --samples rows and records, per sample and client, the time from just
before the request to its arrival. Prints p50/p99 and, as the in-run baseline,
the upload request's own duration (the floor: parse and enqueue) and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import requests
import websockets

from bench.harness import stack
from tools.generate_sample import generate


def csv_bytes(samples: int, seed: int) -> bytes:
    gpus = max(1, samples // 100)
    lines = generate(
        hosts=gpus, gpus_per_host=1, samples=10, seed=seed, cluster_prefix=f"lat{seed}"
    )
    return ("\n".join(lines) + "\n").encode()


async def client(
    port: int,
    cluster: str,
    expected: int,
    arrivals: list[float],
    ready: asyncio.Event,
    counter: list[int],
    total: int,
) -> None:
    async with websockets.connect(
        f"ws://127.0.0.1:{port}/ws/telemetry/", max_size=None, compression=None
    ) as ws:
        await ws.send(json.dumps({"action": "subscribe", "clusters": [cluster]}))
        await ws.recv()
        counter[0] += 1
        if counter[0] == total:
            ready.set()
        got = 0
        while got < expected:
            message = await asyncio.wait_for(ws.recv(), timeout=60)
            now = time.perf_counter()
            # counting, not parsing: the clients share this process's CPU with the
            # measurement, and a full json.loads per client would inflate it
            n = message.count('"metric_name"')
            arrivals.extend([now] * n)
            got += n


async def one_round(port: int, n_clients: int, samples: int, seed: int) -> dict[str, float]:
    data = csv_bytes(samples, seed)
    expected = data.count(b"\n") - 1
    arrivals: list[float] = []
    ready = asyncio.Event()
    counter = [0]
    tasks = [
        asyncio.create_task(client(port, "bench", expected, arrivals, ready, counter, n_clients))
        for _ in range(n_clients)
    ]
    await asyncio.wait_for(ready.wait(), timeout=60)
    t0 = time.perf_counter()
    response = await asyncio.to_thread(
        requests.post,
        f"http://127.0.0.1:{port}/api/v1/csv/upload?cluster=bench",
        data=data,
        headers={"Content-Type": "text/csv"},
        timeout=120,
    )
    upload_s = time.perf_counter() - t0
    response.raise_for_status()
    await asyncio.gather(*tasks)
    lat = sorted((a - t0) * 1000 for a in arrivals)
    return {
        "clients": n_clients,
        "samples": len(lat),
        "upload_ms": upload_s * 1000,
        "p50_ms": statistics.median(lat),
        "p99_ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))],
    }


HEADER = ("clients", "samples", "upload ms", "p50 ms", "p99 ms", "p99/upload")


def row(values: tuple) -> str:
    return " ".join(f"{v:>10.1f}" if isinstance(v, float) else f"{v:>10}" for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--clients", default="1,100")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds; medians shown")
    args = parser.parse_args()
    with stack() as st:
        st.start_worker(2)
        port = st.start_gateway()
        print(row(HEADER))
        for i, n in enumerate(int(c) for c in args.clients.split(",")):
            asyncio.run(one_round(port, n, args.samples, seed=100 + i))  # warm-up
            runs = [
                asyncio.run(one_round(port, n, args.samples, seed=200 + 10 * i + r))
                for r in range(args.rounds)
            ]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                row(
                    (
                        n,
                        int(med["samples"]),
                        med["upload_ms"],
                        med["p50_ms"],
                        med["p99_ms"],
                        med["p99_ms"] / med["upload_ms"],
                    )
                )
            )


if __name__ == "__main__":
    main()
