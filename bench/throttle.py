"""The reads throttle's cost per request: DRF's class on Django's LocMemCache (before) and
the site's (apps/accounts/throttles.py), in the same run.

    .venv/bin/python -m bench.throttle [--rate 6000] [--reps 2000]

One caller (one client address) asks the `reads` scope, limited to --rate requests a
minute; for each history length (the caller's requests still in the period) the check is
timed over --reps requests at that length: a caller asking steadily at that many a
minute (allowed), and one at the limit asking again at once (refused). In process, no
services: the throttle reads nothing else. Prints µs of CPU a request and before / ours.
"""

from __future__ import annotations

import argparse
import os
import time


def _setup(rate: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "telemetry_site.settings")
    os.environ.setdefault("DJANGO_SECRET_KEY", "bench-only")
    os.environ["THROTTLE_READS"] = f"{rate}/min"
    import django

    django.setup()


def per_request_us(kind: type, history: int, rate: int, reps: int) -> tuple[float, bool]:
    """CPU µs of one check by a caller with `history` requests in the period: one asking
    steadily at `history` a minute (each request one more, one past the period), or, at
    the rate, one refused again and again (a refusal adds nothing)."""
    from rest_framework.request import Request
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    class View(APIView):
        throttle_scope = "reads"

    gap = 0.0 if history >= rate else 60.0 / history
    clock = [1_000_000.0]
    request, view = Request(APIRequestFactory().get("/x", REMOTE_ADDR="10.1.2.3")), View()

    def ask() -> bool:
        throttle = kind()
        throttle.timer = lambda: clock[0]
        return throttle.allow_request(request, view)

    kind.cache.clear()
    for _ in range(history):  # the caller's earlier requests, spread over the period
        clock[0] += 60.0 / history
        ask()
    allowed = True
    started = time.process_time()
    for _ in range(reps):
        clock[0] += gap
        allowed = ask()
    return (time.process_time() - started) / reps * 1e6, allowed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=6000)
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()
    _setup(args.rate)
    from rest_framework import throttling

    from apps.accounts import throttles

    lengths = sorted({10, 100, 1000, args.rate // 2, args.rate})
    print(f"reads throttle at {args.rate}/min, {args.reps} requests per row, CPU µs a request")
    print("| requests in the period | answer | DRF on LocMemCache | ours | before / ours |")
    print("|---:|---|---:|---:|---:|")
    for n in lengths:
        before, allowed = per_request_us(throttling.ScopedRateThrottle, n, args.rate, args.reps)
        ours, same = per_request_us(throttles.ScopedRateThrottle, n, args.rate, args.reps)
        assert allowed == same, (n, allowed, same)
        answer = "allowed" if allowed else "refused (429)"
        print(f"| {n:,} | {answer} | {before:.1f} | {ours:.1f} | {before / ours:.1f}x |")


if __name__ == "__main__":
    main()
