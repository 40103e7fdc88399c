"""A fleet of etcd shards for tests: real etcd processes, Redis and workers of their own.

Not a test module. `Fleet` starts a default shard and named shards (one member or
a 3-member cluster each), its own Redis (so no session worker takes its chunks)
and workers that get ETCD_SHARDS; this process is pointed at the same services
through pytest-django's `settings`, restored after the test.
"""

from __future__ import annotations

import base64
import http.client
import json
import uuid
from pathlib import Path

from store import client as etcd_client
from tests.api.api_support import point_producer_at
from tests.conftest import service_env, start_gateway, start_worker
from tools import services


def shard_spec(shards: dict[str, list[services.Service]]) -> str:
    """ETCD_SHARDS text for named shards."""
    return ";".join(
        f"{name}={','.join(m.url for m in members)}" for name, members in shards.items()
    )


def etcd_keys(member: services.Service, prefix: str) -> list[str]:
    """Keys under `prefix`, read from one member through etcd's own JSON gateway.

    Straight to the etcd process (not through the store), so a test sees where data
    really is.
    """
    end = bytearray(prefix.encode())
    end[-1] += 1
    body = json.dumps(
        {
            "key": base64.b64encode(prefix.encode()).decode(),
            "range_end": base64.b64encode(bytes(end)).decode(),
            "keys_only": True,
        }
    )
    conn = http.client.HTTPConnection(member.host, member.port, timeout=10)
    try:
        conn.request("POST", "/v3/kv/range", body, {"Content-Type": "application/json"})
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    return [base64.b64decode(kv["key"]).decode() for kv in answer.get("kvs", [])]


class Fleet:
    def __init__(self, tmp: Path, settings) -> None:
        self.tmp = tmp
        self.settings = settings
        self.root = f"/shards-{uuid.uuid4().hex[:10]}"
        self.default: list[services.Service] = []
        self.shards: dict[str, list[services.Service]] = {}
        self.ports: dict[str, tuple[int, int]] = {}
        self.redis: services.Service | None = None
        self.started: list[services.Service] = []
        self.gateways: list[services.Service] = []
        settings.ETCD_PREFIX = self.root
        settings.ETCD_TIMEOUT = 2.0

    # --- etcd ------------------------------------------------------------------------
    def start_etcd(self, name: str, members: int = 1) -> list[services.Service]:
        """The default shard (`name` "default") or a named one; a cluster when members > 1."""
        services.ensure_binaries()
        if members == 1:
            self.ports[name] = (services.free_port(), services.free_port())
            group = [self._single(name)]
        else:
            group = services.start_etcd_cluster(self.tmp / f"etcd-{name}", members)
        if name == "default":
            self.default = group
        else:
            self.shards[name] = group
        self._configure()
        return group

    def _single(self, name: str) -> services.Service:
        port, peer = self.ports[name]
        return services.start_etcd(self.tmp / f"etcd-{name}", port=port, peer_port=peer, name=name)

    def stop_shard(self, name: str) -> None:
        for member in self.shards[name]:
            member.kill()

    def restart_shard(self, name: str) -> None:
        """A one-member shard comes back on its ports and data directory."""
        self.shards[name] = [self._single(name)]

    def _configure(self) -> None:
        self.settings.ETCD_ENDPOINTS = [m.url for m in self.default]
        self.settings.ETCD_SHARDS = {n: [m.url for m in g] for n, g in self.shards.items()}
        etcd_client.reset()

    # --- Redis, workers, gateways --------------------------------------------------------
    def start_redis(self) -> services.Service:
        self.redis = services.start_redis(self.tmp / "redis")
        self.settings.CELERY_BROKER_URL = self.redis.url
        point_producer_at(self.redis.url)
        return self.redis

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "ETCD_PREFIX": self.root,
            "ETCD_TIMEOUT": "1s",
            "ETCD_SHARDS": shard_spec(self.shards),
            "TELEMETRY_WRITE_AUTH": "false",
            **extra,
        }

    def endpoints(self) -> str:
        return ",".join(m.url for m in self.default)

    def start_worker(self, concurrency: int = 1, **env: str) -> services.Service:
        assert self.redis is not None
        worker = start_worker(
            self.tmp, self.endpoints(), self.redis.url, concurrency, **self.env(**env)
        )
        self.started.append(worker)
        return worker

    def start_gateway(self, **env: str) -> services.Service:
        assert self.redis is not None
        gateway = start_gateway(self.tmp, self.endpoints(), self.redis.url, **self.env(**env))
        self.started.append(gateway)
        return gateway

    def child_env(self) -> dict[str, str]:
        assert self.redis is not None
        return service_env(self.endpoints(), self.redis.url, **self.env())

    def close(self) -> None:
        for svc in self.started:
            svc.kill()
        if self.redis is not None:
            self.redis.kill()
        for member in [*self.default, *(m for g in self.shards.values() for m in g)]:
            member.kill()
        etcd_client.reset()
