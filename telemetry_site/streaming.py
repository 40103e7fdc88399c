"""Streamed answers served by the ASGI gateway without buffering them whole.

Views stream with plain (sync) iterators, which the test client and WSGI serve
directly. Under ASGI, Django serves a sync iterator by reading it into a list
first (and logs "StreamingHttpResponse must consume synchronous iterators" on
every such response), so a CSV export of a long window would sit in memory.
This middleware hands Django an async iterator instead, which pulls the view's
chunks in batches from a worker thread: memory stays at one batch.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from asgiref.sync import markcoroutinefunction, sync_to_async
from django.core.handlers.asgi import ASGIRequest

BATCH = 256  # chunks per thread hop: one hop per line would cost more than the line


async def pulled_in_batches(chunks: Iterable[Any]) -> AsyncIterator[Any]:
    """`chunks`, read BATCH at a time off the event loop (the iterator may block on etcd)."""
    iterator: Iterator[Any] = iter(chunks)
    take = sync_to_async(lambda: list(itertools.islice(iterator, BATCH)), thread_sensitive=False)
    # The view's generator is closed by the response (its resource closers), not here.
    while batch := await take():
        for chunk in batch:
            yield chunk


class AsyncStreaming:
    """Middleware: under ASGI, a response streaming a sync iterator streams an async one.

    Async only: a sync-only middleware inside (WhiteNoise) makes Django run the
    sync-capable ones around it in sync mode, where there is nothing to swap.
    Requests that came through WSGI (or the sync test client) keep their iterator.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: Any) -> Any:
        response = await self.get_response(request)
        streams_sync = getattr(response, "streaming", False) and not response.is_async
        if streams_sync and isinstance(request, ASGIRequest):
            response.streaming_content = pulled_in_batches(response.streaming_content)
        return response
