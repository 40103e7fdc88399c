"""The live feed: channel group names, what workers publish, and what each client gets.

Workers announce each stored chunk (store.events.chunk_stored); `on_chunk_stored`,
connected in apps/read/apps.py, calls `publish_chunk` after its etcd transactions committed: one
message per chunk and group (the GPU's, its host's and its cluster's) that some gateway
subscribes to (asked of Redis first), each holding the new samples grouped per GPU.
Consumers keep a `Subscriptions` and use it to filter and de-duplicate (a client
subscribed to a GPU and to its host gets each sample once).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.conf import settings

from observability.clients import redis_client
from store.codec import dedupe
from store.write import GpuBatch
from timeparse.timestamps import format_timestamp

log = logging.getLogger(__name__)

KINDS = ("gpu", "host", "cluster")
EVENT_TYPE = "telemetry.samples"


def group_name(kind: str, value: str) -> str:
    """A Channels-safe group name (ASCII, < 100 chars) for any uuid, host or cluster.

    Values are hashed: hostile names (`../`, NUL, non-ASCII, very long) never
    reach the channel layer as they are.
    """
    digest = hashlib.blake2b(value.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
    return f"live.{kind}.{digest}"


# Publishing (workers) -------------------------------------------------------------
def gpu_payload(facts: dict[str, Any], rows: Iterable[tuple[int, str, float]]) -> dict[str, Any]:
    """One GPU's part of an event: routing fields plus its JSON, encoded once here.

    Consumers forward `json` as it is to every client that wants the whole GPU,
    so a hundred clients cost one encoding, not a hundred.
    """
    stamps: dict[int, str] = {}  # a GPU's samples share few timestamps: format each once
    names: dict[str, str] = {}
    parts = []
    for ts, metric, value in rows:
        stamp = stamps.get(ts)
        if stamp is None:
            stamp = stamps[ts] = format_timestamp(ts)
        name = names.get(metric)
        if name is None:
            name = names[metric] = _dumps(metric)
        # repr of a finite float is valid JSON; the pipeline stores finite values only
        parts.append(f'{{"timestamp":"{stamp}","metric_name":{name},"value":{value!r}}}')
    routing = {"uuid": facts["uuid"], "host": facts["host"], "cluster": facts["cluster"]}
    head = _dumps(routing)[:-1]
    return routing | {"json": f'{head},"samples":[{",".join(parts)}]}}'}


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def samples_message(chunk: str, fragments: Sequence[str], dropped: int) -> str:
    """The text of a `samples` message from per-GPU JSON fragments."""
    head = _dumps({"type": "samples", "chunk": chunk, "dropped": dropped})[:-1]
    return f'{head},"gpus":[{",".join(fragments)}]}}'


def groups_of(facts: dict[str, Any]) -> tuple[str, str, str]:
    """The groups a GPU's samples go to: its own, its host's and its cluster's."""
    return (
        group_name("gpu", facts["uuid"]),
        group_name("host", facts["host"]),
        group_name("cluster", facts["cluster"]),
    )


def chunk_events(
    chunk_id: str, gpus: Sequence[dict[str, Any]], heard: set[str] | None = None
) -> dict[str, dict[str, Any]]:
    """{group: event} for one chunk: one event per GPU, host and cluster group touched
    (only the groups in `heard`, when given)."""
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for gpu in gpus:
        for group in groups_of(gpu):
            if heard is None or group in heard:
                members[group].append(gpu)
    return {
        g: {"type": EVENT_TYPE, "chunk": chunk_id, "gpus": items} for g, items in members.items()
    }


def _group_channels() -> tuple[str, str] | None:
    """(Redis URL, channel prefix) of the pub/sub layer's groups; None for another layer.

    channels_redis' pub/sub layer publishes a group's messages on the Redis channel
    `<prefix>__group__<group>`, so Redis itself knows which groups a gateway listens to.
    """
    layer = settings.CHANNEL_LAYERS.get("default", {})
    if layer.get("BACKEND") != "channels_redis.pubsub.RedisPubSubChannelLayer":
        return None
    config = layer.get("CONFIG", {})
    hosts = config.get("hosts", [])
    if len(hosts) != 1:  # sharded: the layer hashes each group to a host
        return None
    host = hosts[0]
    if isinstance(host, dict) and set(host) != {"address"}:
        return None  # TLS or other connection options: asked of Redis as the layer would be
    address = host.get("address") if isinstance(host, dict) else host
    if not isinstance(address, str):
        return None
    return address, f"{config.get('prefix', 'asgi')}__group__"


class _Listeners:
    """Which groups a gateway subscribes to right now, asked of Redis (PUBSUB NUMSUB).

    Building a chunk's payloads cost ~40 % of a worker's CPU for storing it (a 300k-row
    upload: 0.8 s of 2.0 s), listened to or not, so a worker builds and publishes only what
    somebody listens to. One round trip per chunk; a Redis client per process. A Redis that
    does not answer is not asked again for QUIET_AFTER_FAILURE seconds: meanwhile every
    group is published to, as before this check existed.
    """

    TIMEOUT = 0.5  # seconds: NUMSUB is one small command on the live feed's own Redis
    QUIET_AFTER_FAILURE = 10.0

    def __init__(self) -> None:
        self._quiet_until: dict[str, float] = {}  # Redis URL -> when it may be asked again

    def heard(self, groups: Sequence[str]) -> set[str] | None:
        """The groups among `groups` with a subscriber; None when Redis cannot tell (then
        every group is published to, as a subscriber might be missed otherwise). Never
        raises: the chunk is stored already."""
        where = _group_channels()
        if where is None or time.monotonic() < self._quiet_until.get(where[0], 0.0):
            return None
        address, prefix = where
        try:
            client = redis_client(address, self.TIMEOUT)
            counts = client.pubsub_numsub(*(prefix + g for g in groups))
            return {g for g, (_, count) in zip(groups, counts, strict=True) if int(count) > 0}
        except Exception as exc:  # a bad URL, Redis away, an answer of another shape
            self._quiet_until[address] = time.monotonic() + self.QUIET_AFTER_FAILURE
            log.warning("live feed: cannot ask Redis who listens (%s); publishing to all", exc)
            return None


_listeners = _Listeners()


def chunk_to_publish(chunk_id: str, batches: Sequence[GpuBatch]) -> dict[str, dict[str, Any]]:
    """{group: event} of a stored chunk for the groups a gateway listens to: the JSON of a
    GPU nobody follows (by itself, its host or its cluster) is never built."""
    wanted = {g for b in batches for g in groups_of(b.facts)}
    heard = _listeners.heard(sorted(wanted)) if wanted else set()
    gpus = [
        gpu_payload(b.facts, dedupe(b.samples).rows())
        for b in batches
        if heard is None or not heard.isdisjoint(groups_of(b.facts))
    ]
    return chunk_events(chunk_id, gpus, heard) if gpus else {}


class _Publisher:
    """One event loop thread per process for channel-layer sends.

    Keeping the loop alive keeps the layer's Redis connection alive: a fresh
    loop per chunk (plain async_to_sync) would reconnect every time. Created
    lazily and per pid, so a forked worker child never uses its parent's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(
                    target=loop.run_forever, name="live-publisher", daemon=True
                ).start()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    def send(self, events: dict[str, dict[str, Any]], timeout: float = 10.0) -> None:
        from channels.layers import get_channel_layer

        layer = get_channel_layer()

        async def send_all() -> None:
            await asyncio.gather(*(layer.group_send(g, e) for g, e in events.items()))

        asyncio.run_coroutine_threadsafe(send_all(), self._ensure()).result(timeout)


_publisher = _Publisher()


def enabled() -> bool:
    """Whether workers publish at all (ENABLE_WEBSOCKET): no payload is built when off."""
    return bool(settings.ENABLE_WEBSOCKET)


def publish_chunk(chunk_id: str, events: dict[str, dict[str, Any]]) -> int:
    """Send a chunk's events to the channel layer; returns how many. Never raises.

    The samples are already stored: a broken channel layer costs live updates,
    never data, so errors are logged and swallowed.
    """
    if not settings.ENABLE_WEBSOCKET or not events:
        return 0
    try:
        _publisher.send(events)
    except Exception:
        log.exception("live feed: publishing chunk %s failed; its samples are stored", chunk_id)
        return 0
    return len(events)


def on_chunk_stored(*, chunk_id: str, batches: Sequence[GpuBatch], fresh: bool, **_: Any) -> None:
    """store.events.chunk_stored receiver (in workers): publish a newly stored chunk.

    A redelivered chunk was published the first time; with the feed off no payload is built.
    """
    if not (fresh and enabled()):
        return
    try:
        events = chunk_to_publish(chunk_id, batches)
    except Exception:  # stored already: a live update lost, never the chunk
        log.exception("live feed: chunk %s could not be prepared; its samples are stored", chunk_id)
        return
    publish_chunk(chunk_id, events)


# Subscriptions (consumers) -------------------------------------------------------------
class CommandError(ValueError):
    """A client command that cannot be carried out; the message goes back to the client."""


MAX_ID_CHARS = 100


def parse_command(raw: str | bytes) -> Any:
    """A client frame as JSON; CommandError (never RecursionError or MemoryError) otherwise.

    Frames over LIVE_MAX_FRAME_BYTES are refused unread; orjson refuses nesting past
    1024 levels with a plain decode error, where json.loads recurses until Python's
    stack limit and raises RecursionError.
    """
    if len(raw) > settings.LIVE_MAX_FRAME_BYTES:
        raise CommandError(
            f"a command is at most {settings.LIVE_MAX_FRAME_BYTES} bytes (LIVE_MAX_FRAME_BYTES)"
        )
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise CommandError(f"not valid JSON: {exc}") from None


def command_id(command: Any) -> str | int | None:
    """The `id` a client gave a command, checked before it is echoed back."""
    value = command.get("id") if isinstance(command, dict) else None
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return value
    raise CommandError(f"'id' must be a number or a string of at most {MAX_ID_CHARS} characters")


@dataclass
class Subscriptions:
    """One client's targets, each with a metric filter (None: every metric)."""

    targets: dict[tuple[str, str], frozenset[str] | None] = field(default_factory=dict)
    _seen: OrderedDict[tuple[str, str], None] = field(default_factory=OrderedDict)
    seen_limit: int = 4096

    def apply(self, command: Any) -> tuple[str, list[str], list[str]]:
        """Carry out a subscribe/unsubscribe command; returns (action, groups to join, to leave)."""
        if not isinstance(command, dict):
            raise CommandError(
                'a command is a JSON object, e.g. {"action": "subscribe", "gpus": ["GPU-…"]}'
            )
        action = command.get("action")
        if action not in ("subscribe", "unsubscribe", "list"):
            raise CommandError(f"unknown action {action!r}: use subscribe, unsubscribe or list")
        if action == "list":
            return action, [], []
        targets = _targets(command)
        metrics = _metrics(command)
        if action == "subscribe":
            return action, self._add(targets, metrics), []
        return action, [], self._remove(targets)

    def _add(self, targets: list[tuple[str, str]], metrics: frozenset[str] | None) -> list[str]:
        new = {t for t in targets if t not in self.targets}
        cap = settings.LIVE_MAX_SUBSCRIPTIONS
        if len(self.targets) + len(new) > cap:
            raise CommandError(
                f"a connection holds at most {cap} subscriptions (LIVE_MAX_SUBSCRIPTIONS); "
                f"this one holds {len(self.targets)} and the command adds {len(new)}: "
                "unsubscribe first"
            )
        join = [group_name(*t) for t in new]
        for t in targets:
            self.targets[t] = metrics
        return join

    def _remove(self, targets: list[tuple[str, str]]) -> list[str]:
        leave = [group_name(*t) for t in targets if t in self.targets]
        for t in targets:
            self.targets.pop(t, None)
        return leave

    def counts(self) -> dict[str, int]:
        """Subscriptions per kind: what an acknowledgement says (bounded, unlike the list)."""
        out = {f"{k}s": 0 for k in KINDS}
        for kind, _ in self.targets:
            out[f"{kind}s"] += 1
        return out

    def describe(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {f"{k}s": [] for k in KINDS}
        for (kind, value), metrics in sorted(self.targets.items()):
            out[f"{kind}s"].append({"name": value, "metrics": sorted(metrics) if metrics else None})
        return out

    def filter(self, event: dict[str, Any]) -> list[str]:
        """JSON fragments of the GPUs of an event this client wants and has not had yet."""
        out = []
        for gpu in event["gpus"]:
            key = (event["chunk"], gpu["uuid"])
            if key in self._seen:
                continue
            wanted = self._wanted_metrics(gpu)
            if wanted is False:
                continue
            self._remember(key)
            if wanted is None:
                out.append(gpu["json"])
                continue
            body = json.loads(gpu["json"])
            body["samples"] = [s for s in body["samples"] if s["metric_name"] in wanted]
            if body["samples"]:
                out.append(_dumps(body))
        return out

    def _wanted_metrics(self, gpu: dict[str, Any]) -> frozenset[str] | bool | None:
        """None: all metrics; a set: those; False: this GPU is not subscribed."""
        matched = False
        wanted: set[str] = set()
        for target in (("gpu", gpu["uuid"]), ("host", gpu["host"]), ("cluster", gpu["cluster"])):
            if target not in self.targets:
                continue
            matched = True
            metrics = self.targets[target]
            if metrics is None:
                return None
            wanted |= metrics
        return frozenset(wanted) if matched else False

    def _remember(self, key: tuple[str, str]) -> None:
        self._seen[key] = None
        if len(self._seen) > self.seen_limit:
            self._seen.popitem(last=False)


def _names(command: dict[str, Any], field_name: str) -> list[str]:
    value = command.get(field_name, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CommandError(f"{field_name!r} must be a list of non-empty strings")
    if any(len(v) > 200 for v in value):
        raise CommandError(f"{field_name!r} holds a name longer than 200 characters")
    return value


def _targets(command: dict[str, Any]) -> list[tuple[str, str]]:
    targets = [(kind, v) for kind in KINDS for v in _names(command, f"{kind}s")]
    if not targets:
        raise CommandError("name at least one of 'gpus', 'hosts' or 'clusters'")
    return targets  # how many a connection may hold: Subscriptions._add


def _metrics(command: dict[str, Any]) -> frozenset[str] | None:
    if "metrics" not in command or command["metrics"] is None:
        return None
    names = _names(command, "metrics")
    return frozenset(names) if names else None
