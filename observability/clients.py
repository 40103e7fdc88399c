"""Redis clients kept per process, URL and timeout: made after a fork, never inherited (a
connection shared across a fork would interleave two processes' commands)."""

from __future__ import annotations

import os
import threading

import redis

_lock = threading.Lock()
_held: dict[tuple[int, str, float], redis.Redis] = {}


def redis_client(url: str, timeout: float) -> redis.Redis:
    """This process's client of `url`, whose commands and connects time out after `timeout`."""
    key = (os.getpid(), url, timeout)
    with _lock:
        client = _held.get(key)
        if client is None:
            if any(pid != key[0] for pid, _, _ in _held):
                _held.clear()  # the parent's, before a fork: dropped, not closed
            client = _held[key] = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        return client
