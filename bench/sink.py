"""A bare ASGI app: writes a request's body to a temporary file and answers its size.

bench/ingest.py serves it with uvicorn as the gateway is served, to measure the least
any upload path on this server can take (no Django, no check, no parse).
"""

from __future__ import annotations

import tempfile
from typing import Any

WRITE = 1024 * 1024  # bytes gathered before one write, as the gateway's spool does


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 0
    with tempfile.TemporaryFile() as spool:
        pending: list[bytes] = []  # written as received: no copy into a buffer
        held = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            held += len(body)
            pending.append(body)
            more = message.get("more_body", False)
            if held >= WRITE or not more:
                spool.writelines(pending)
                pending, held = [], 0
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": str(size).encode()})
