"""The storage package: the only code that talks to etcd (see docs/STORAGE.md)."""

from __future__ import annotations

from django.conf import settings

from store.keys import Keys


def default_keys() -> Keys:
    """Keys under the configured root (ETCD_PREFIX), read at call time."""
    return Keys(settings.ETCD_PREFIX)


def window_ms() -> int:
    """The longest time span of one block (BLOCK_WINDOW_SECONDS)."""
    return int(settings.BLOCK_WINDOW_SECONDS) * 1000
