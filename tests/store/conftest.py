"""Fixtures of the store tests that read through the block cache."""

from __future__ import annotations

import pytest

from store import cache, kv
from store.keys import Keys
from store.registry import known
from tests.helpers import spy_calls


@pytest.fixture
def cached_keys(etcd_root: str, settings) -> Keys:
    """Keys of a fresh etcd root, read through an empty 64 MiB block cache."""
    settings.READ_CACHE_BYTES = 64 * 1024 * 1024
    cache.shared().clear()
    known.clear()
    return Keys(etcd_root)


@pytest.fixture
def gets(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the value-carrying etcd reads made from now on (still made for real)."""
    return spy_calls(monkeypatch, kv, ("get_many", "get_range"))
