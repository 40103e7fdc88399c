"""The read lane's store reads run on its own threads, never on the event loop's default pool.

A read stalled on an unreachable shard waits up to ETCD_TIMEOUT; on the default pool six of
them would also hold the guard's upload spooling and the compression of every answer.
"""

from __future__ import annotations

import asyncio
import threading

from django.http import HttpResponse

from telemetry_site import lane


def test_lane_reads_run_on_the_lanes_threads_and_leave_the_default_pool_free(settings):
    settings.READ_LANE_THREADS = 2
    lane._pool = None  # made again with this size
    release = threading.Event()
    seen: list[str] = []

    def stalled() -> HttpResponse:  # a read waiting on a shard that does not answer
        seen.append(threading.current_thread().name)
        release.wait(30)
        return HttpResponse(b"{}")

    async def scenario() -> tuple[str, list]:
        reads = [asyncio.create_task(lane._off_loop(stalled, None, False)) for _ in range(8)]
        deadline = asyncio.get_running_loop().time() + 10
        while len(seen) < 2:  # both of the lane's threads taken
            assert asyncio.get_running_loop().time() < deadline, "the lane's reads never started"
            await asyncio.sleep(0.01)
        # more stalled reads than the default pool has threads (6 on 2 cores), yet it answers
        spool = await asyncio.wait_for(asyncio.to_thread(lambda: "written"), timeout=5)
        release.set()
        return spool, await asyncio.gather(*reads)

    try:
        spool, answers = asyncio.run(scenario())
    finally:
        release.set()
        lane._pool = None
    assert spool == "written"
    assert [a.response.status_code for a in answers] == [200] * 8
    assert len(seen) == 8 and all(name.startswith("read-lane") for name in seen), seen
