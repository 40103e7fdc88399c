"""WebSocket consumers: thin; the protocol's logic lives in apps.read.live."""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import Any

from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from apps.accounts.auth import may_read
from apps.read.live import CommandError, Subscriptions, command_id, parse_command, samples_message
from observability.metrics import WEBSOCKET_CLIENTS

log = logging.getLogger(__name__)


class TelemetryConsumer(AsyncJsonWebsocketConsumer):
    """`/ws/telemetry/`: subscribe by GPU, host or cluster; `/ws/gpus/{uuid}/` pre-subscribes.

    Outgoing sample messages wait in a bounded per-client buffer; when a slow
    client lets it fill, the oldest message is dropped and the next message
    sent carries `dropped` (how many were lost). Ingest never waits for clients.

    However the connection ends (the client closes, the server closes, the TCP
    connection drops, the server shuts down, a bug raises), `_release` runs: its
    groups are left in the channel layer (Redis) and the client gauge goes down.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._release()

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
        await self._release()

    async def _release(self) -> None:
        """Idempotent: undo what connect and the commands did, whatever state they left."""
        if getattr(self, "counted", False):
            WEBSOCKET_CLIENTS.dec()
            self.counted = False
        sender = getattr(self, "sender", None)
        if sender is not None:
            sender.cancel()
        groups, self.groups_joined = getattr(self, "groups_joined", set()), set()
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # Redis gone: its subscriptions went with it
                log.warning("live feed: leaving group %s failed", group, exc_info=True)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        try:
            command = parse_command(text_data if text_data is not None else (bytes_data or b""))
        except CommandError as exc:
            await self.send_json({"type": "error", "error": str(exc), "id": None})
            return
        try:
            await self._command(command)
        except Exception:  # a bug must cost this command, not the connection and its cleanup
            log.exception("live feed: a client command failed")
            await self.send_json({"type": "error", "error": "internal error", "id": None})

    async def _command(self, command: Any) -> None:
        try:
            request_id = command_id(command)
            action, join, leave = self.subs.apply(command)
        except CommandError as exc:
            await self.send_json({"type": "error", "error": str(exc), "id": _safe_id(command)})
            return
        for group in join:
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.add(group)
        for group in leave:
            await self.channel_layer.group_discard(group, self.channel_name)
            self.groups_joined.discard(group)
        answer = {"type": "ack", "action": action, "id": request_id, "counts": self.subs.counts()}
        if action == "list":  # the whole list only when asked: at most LIVE_MAX_SUBSCRIPTIONS
            answer["subscriptions"] = self.subs.describe()
        await self.send_json(answer)

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


def _safe_id(command: Any) -> str | int | None:
    try:
        return command_id(command)
    except CommandError:
        return None
