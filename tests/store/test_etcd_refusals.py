"""A request etcd refuses as invalid (over its size limit) is `Refused`, not an outage:
`StoreUnavailable` is retried by the workers forever, and no retry can make it pass.
On real etcd."""

from __future__ import annotations

import pytest

from store import kv
from store.errors import Refused, StoreUnavailable


def test_a_request_over_etcds_size_limit_is_refused_not_unavailable(etcd_root):
    with pytest.raises(Refused, match="request is too large") as info:
        kv.put(f"{etcd_root}/big", b"x" * 2_000_000)  # etcd's limit: 1.5 MiB
    assert not isinstance(info.value, StoreUnavailable)
    assert isinstance(info.value, ValueError)  # what the chunk task records, never retries
    assert kv.get(f"{etcd_root}/big") is None
    kv.put(f"{etcd_root}/small", b"x")  # etcd is fine
    assert kv.get(f"{etcd_root}/small").value == b"x"
