"""WebSocket consumers: thin; the protocol's logic lives in apps.read.live."""

from __future__ import annotations

import asyncio
import collections
import json
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.accounts.auth import may_read
from apps.read.live import CommandError, Subscriptions, samples_message
from observability.metrics import WEBSOCKET_CLIENTS


class TelemetryConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/telemetry/`: subscribe by GPU, host or cluster; `/ws/gpus/{uuid}/` pre-subscribes.

    Outgoing sample messages wait in a bounded per-client buffer; when a slow
    client lets it fill, the oldest message is dropped and the next message
    sent carries `dropped` (how many were lost). Ingest never waits for clients.
    """

    async def connect(self) -> None:
        if not may_read(self.scope.get("user")):
            # 4401: the WebSocket analogue of HTTP 401 (application close codes are 4000-4999)
            await self.close(code=4401)
            return
        self.subs = Subscriptions()
        self.pending: collections.deque[tuple[str, list[str]]] = collections.deque(
            maxlen=settings.LIVE_CLIENT_BUFFER
        )
        self.dropped = 0
        self.wakeup = asyncio.Event()
        self.groups_joined: set[str] = set()
        await self.accept()
        WEBSOCKET_CLIENTS.inc()
        self.counted = True
        self.sender = asyncio.create_task(self._send_loop())
        uuid = self.scope.get("url_route", {}).get("kwargs", {}).get("uuid")
        if uuid:
            await self._command({"action": "subscribe", "gpus": [uuid]})

    async def disconnect(self, code: int) -> None:
        if getattr(self, "counted", False):
            WEBSOCKET_CLIENTS.dec()
            self.counted = False
        if hasattr(self, "sender"):
            self.sender.cancel()
        for group in getattr(self, "groups_joined", ()):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            command = json.loads(text_data if text_data is not None else (bytes_data or b""))
        except (ValueError, UnicodeDecodeError) as exc:
            await self.send_json({"type": "error", "error": f"not valid JSON: {exc}"})
            return
        await self._command(command)

    async def _command(self, command: Any) -> None:
        request_id = command.get("id") if isinstance(command, dict) else None
        try:
            action, join, leave = self.subs.apply(command)
        except CommandError as exc:
            await self.send_json({"type": "error", "error": str(exc), "id": request_id})
            return
        for group in join:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
        for group in leave:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)
        await self.send_json(
            {
                "type": "ack",
                "action": action,
                "id": request_id,
                "subscriptions": self.subs.describe(),
            }
        )

    async def telemetry_samples(self, event: dict[str, Any]) -> None:
        fragments = self.subs.filter(event)
        if not fragments:
            return
        if len(self.pending) == self.pending.maxlen:
            self.dropped += 1
        self.pending.append((event["chunk"], fragments))
        self.wakeup.set()

    async def _send_loop(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                chunk, fragments = self.pending.popleft()
                dropped, self.dropped = self.dropped, 0
                await self.send(text_data=samples_message(chunk, fragments, dropped))
